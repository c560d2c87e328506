-- lib.remote: the hub's end of remote-access signalling (docs/protocol.md "WebRTC carrier").
--
-- Routes what a browser sends through the relay's HubCommandChannel to the hub's WebRTC
-- functions and sends their answers back:
--   bundle_request              -> hub.request_ratchet_restart -> {t = 2, b} (paired keys only)
--   signal, envelope.type offer -> hub.handle_webrtc_offer     -> {t = 1, b} (the answer)
--   signal, envelope.type ice   -> hub.handle_ice_candidate
--   signal, decrypt_failed      -> hub.request_ratchet_restart
-- The relay path uses action_cable with crypto = true (envelopes arrive decrypted), once
-- remote access is in use (a code shown, or a browser paired). The same
-- routing is offered as hub commands (`remote.signal`, `remote.bundle_request`) so signalling
-- also works over any client connection, e.g. the hub socket without a relay.
-- Also the pairing commands behind `botster pair` and the UI's pairing panel: connection.code,
-- .regenerate, .status, .paired, .revoke.
local commands = require("lib.commands")

local M = {}
local relay = { conn = nil, channel = nil, server_id = nil }

--- remote.route(identity, msg) -> {envelope...}: what to send back to that browser.
function M.route(identity, msg)
  if type(identity) ~= "string" then return {} end
  if msg.type == "bundle_request" or (msg.type == "signal" and msg.decrypt_failed) then
    local env, err = hub.request_ratchet_restart(identity)
    if not env then
      log.info("no bundle for " .. identity:sub(1, 12) .. "…: " .. tostring(err))
      return {}
    end
    return { env }
  end
  local payload = msg.type == "signal" and msg.envelope
  if type(payload) ~= "table" then return {} end
  if payload.type == "offer" and type(payload.sdp) == "string" then
    local env, err = hub.handle_webrtc_offer(identity, payload.sdp)
    if not env then
      log.info("offer from " .. identity:sub(1, 12) .. "… not answered: " .. tostring(err))
      return {}
    end
    return { env }
  elseif payload.type == "ice" and payload.candidate ~= nil then
    local ok, err = hub.handle_ice_candidate(identity, payload.candidate)
    if not ok then log.debug("ice from " .. identity:sub(1, 12) .. "…: " .. tostring(err)) end
  end
  return {}
end

local function on_relay_message(msg)
  if type(msg) ~= "table" then return end
  local identity = msg.browser_identity
  for _, env in ipairs(M.route(identity, msg)) do
    action_cable.perform(relay.channel, "signal", { browser_identity = identity, envelope = env })
  end
end

--- Subscribes to HubCommandChannel once the relay knows this hub (cable's action_cable).
local function connect_relay(server_id)
  if not action_cable or not server_id or relay.server_id == server_id then return end
  if relay.conn then action_cable.close(relay.conn) end
  local conn, err = action_cable.connect({ crypto = true })
  if not conn then
    log.info("remote access off: " .. tostring(err))
    return
  end
  local ch, serr = action_cable.subscribe(conn, "HubCommandChannel", { hub_id = server_id },
    on_relay_message)
  if not ch then
    log.warn("remote access: cannot subscribe to HubCommandChannel: " .. tostring(serr))
    action_cable.close(conn)
    return
  end
  relay.conn, relay.channel, relay.server_id = conn, ch, server_id
end

function M.install()
  commands.register("connection.code", function()
    return connection.generate()
  end, { description = "The hub's pairing code: {url, qr_ascii, hub_id}" })

  commands.register("connection.regenerate", function()
    return connection.regenerate()
  end, { description = "A fresh pairing code: {url, qr_ascii, hub_id}" })

  commands.register("connection.status", function()
    return _botster.remote_status()
  end, { description = "Remote access: {configured, why?, relay_url?, embedded, server_id?}" })

  commands.register("connection.paired", function()
    local list, err = connection.paired()
    if not list then return nil, err end
    return json.array(list)
  end, { description = "Paired browsers: [{browser_key, paired_at}]" })

  commands.register("connection.revoke", function(args)
    if type(args.browser_key) ~= "string" then
      return nil, "connection.revoke: args.browser_key: expected string"
    end
    local removed, err = connection.revoke(args.browser_key)
    if removed == nil then return nil, err end
    return { revoked = removed }
  end, { description = "Forgets a paired browser: args {browser_key}" })

  commands.register("remote.signal", function(args)
    if type(args.browser_identity) ~= "string" or type(args.envelope) ~= "table" then
      return nil, "remote.signal: args {browser_identity = string, envelope = table} expected"
    end
    local msg = { type = "signal", browser_identity = args.browser_identity }
    local plain = webrtc.decrypt_envelope(args.browser_identity, args.envelope)
    if plain then msg.envelope = plain else msg.decrypt_failed = true end
    return { envelopes = json.array(M.route(args.browser_identity, msg)) }
  end, { description = "Signalling without a relay: args {browser_identity, envelope}" })

  commands.register("remote.bundle_request", function(args)
    local msg = { type = "bundle_request" }
    return { envelopes = json.array(M.route(args.browser_identity, msg)) }
  end, { description = "A paired browser's bundle request: args {browser_identity}" })

  events.on("webrtc_ratchet_restart", function(data)
    if relay.channel then
      action_cable.perform(relay.channel, "signal", data)
    end
  end)
  -- The relay hears from this hub only once remote access is in use: a code was shown in
  -- this run, or a browser is paired. A hub nobody paired with opens no HubCommandChannel.
  local function in_use()
    if connection.get_url() then return true end
    local paired = connection.paired()
    return paired ~= nil and #paired > 0
  end
  events.on("relay_registered", function(data)
    -- A code shown before registration named the hub by its hub id: make one with the id.
    if connection.get_url() then connection.regenerate() end
    if in_use() then connect_relay(data.server_id) end
  end)
  events.on("hub_ready", function()
    if hub.server_id() and in_use() then connect_relay(hub.server_id()) end
  end)
  events.on("connection_code_ready", function()
    if hub.server_id() then connect_relay(hub.server_id()) end
  end)
end

return M
