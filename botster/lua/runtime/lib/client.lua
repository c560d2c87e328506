-- lib.client: the client protocol spoken over the hub socket (docs/protocol.md).
--
-- Messages (JSON objects with a `type`):
--   request      {type="request", id, command, args?}  -> {type="response", id, ok, result|error}
--   subscribe    {type="subscribe", channel, params?}  -> {type="subscribed", channel}
--   unsubscribe  {type="unsubscribe", channel}         -> {type="unsubscribed", channel}
--   ping         {type="ping", id?}                    -> {type="pong", id} (the socket answers
--                                                         these itself; other carriers here)
-- The hub pushes {type="event", channel, event, data} to subscribers of a channel.
-- Channels: "hub" (plugin and hub changes), "mcp" (tools_list_changed), and "terminal"
-- (params {session_id, rows?, cols?}: the session's screen, then its live output, as binary
-- frames routed in Python; the client may type into it). A subscription's params are kept
-- per client; the "mcp" channel's params.context is the context MCP tool handlers receive
-- (with hub_id added).
local commands = require("lib.commands")
local hooks = require("hub.hooks")
local state = require("hub.state")

local M = {}
local clients = state.get("client.clients", {}) -- client id -> {id, subs = {channel -> params}}
local CHANNELS = { hub = true, mcp = true, terminal = true }

-- A client is a socket client (or a TUI on the socket) or a WebRTC peer ("webrtc:..."); the
-- protocol is the same, only the carrier's functions differ.
local function carrier(id)
  if id:sub(1, 7) == "webrtc:" then return webrtc, "peer_id" end
  return socket, "client_id"
end

local send_encoded, encode = _botster.send_encoded, json.encode
local BIG = 64 * 1024 -- a string this long is quoted faster by Python's encoder (12 MiB: 5x)

-- Whether msg (a reply) or its result, one level down, holds a long string.
local function holds_big_string(msg)
  for _, v in pairs(msg) do
    if type(v) == "string" and #v > BIG then return true end
  end
  if type(msg.result) == "table" then
    for _, v in pairs(msg.result) do
      if type(v) == "string" and #v > BIG then return true end
    end
  end
  return false
end

local function reply(id, msg)
  -- The socket's fast path: encoded here, framed and queued in Python with no table
  -- conversion. What json.encode refuses (NaN, bytes that are not UTF-8...) goes the general
  -- way, whose rules (convert.py) decide; so do replies holding long strings.
  if id:sub(1, 7) == "socket:" and not holds_big_string(msg) then
    local encoded, text = pcall(encode, msg)
    if encoded and send_encoded(id, text) then return end
  end
  local ok, err = carrier(id).send(id, msg)
  if not ok then log.debug("reply to " .. id .. " dropped: " .. tostring(err)) end
end

local function fail(id, code, message)
  reply(id, { type = "error", code = code, message = message })
end

--- client.broadcast(channel, event, data): pushes an event to every subscriber of `channel`.
function M.broadcast(channel, event, data)
  for id, c in pairs(clients) do
    if c.subs[channel] then
      reply(id, { type = "event", channel = channel, event = event, data = data })
    end
  end
end

--- client.subscription(client_id, channel) -> params table or nil
function M.subscription(client_id, channel)
  local c = clients[client_id]
  return c and c.subs[channel]
end

--- client.viewers(session_id) -> integer: how many clients watch that session's terminal.
function M.viewers(session_id)
  local n = 0
  for _, c in pairs(clients) do
    if c.terminals[session_id] then n = n + 1 end
  end
  return n
end

local handlers = {}

function handlers.request(id, msg)
  if type(msg.command) ~= "string" then
    return fail(id, "bad_message", "request: command: expected string, got " .. type(msg.command))
  end
  if msg.args ~= nil and type(msg.args) ~= "table" then
    return reply(id, { type = "response", id = msg.id, ok = false,
      error = "request: args: expected object, got " .. type(msg.args) })
  end
  local ok, result = commands.run(msg.command, msg.args, { client_id = id })
  if ok then
    reply(id, { type = "response", id = msg.id, ok = true, result = result })
  else
    reply(id, { type = "response", id = msg.id, ok = false, error = result })
  end
end

local function subscribe_terminal(id, params)
  local sid = params.session_id
  if type(sid) ~= "string" then
    return fail(id, "bad_message", "subscribe terminal: params.session_id: expected string, got "
      .. type(sid))
  end
  local handle = pty.get(sid)
  if not handle then return fail(id, "bad_message", "subscribe terminal: no session " .. sid) end
  if math.type(params.rows) == "integer" and math.type(params.cols) == "integer" then
    handle:resize(params.rows, params.cols) -- the last client to size a terminal wins
  end
  local via, id_key = carrier(id)
  local fwd, err = via.create_pty_forwarder({ [id_key] = id, session_id = sid })
  if not fwd then return fail(id, "bad_message", "subscribe terminal: " .. err) end
  clients[id].terminals[sid] = true
  reply(id, { type = "subscribed", channel = "terminal", session_id = sid })
end

-- A carrier that does not answer protocol-level pings itself (the socket does) gets them here.
function handlers.ping(id, msg)
  reply(id, { type = "pong", id = msg.id })
end

function handlers.subscribe(id, msg)
  if msg.channel == "terminal" then
    return subscribe_terminal(id, type(msg.params) == "table" and msg.params or {})
  end
  if not CHANNELS[msg.channel] then
    local known = {}
    for name in pairs(CHANNELS) do known[#known + 1] = name end
    table.sort(known)
    return fail(id, "bad_message", "subscribe: unknown channel " .. json.encode(msg.channel)
      .. " (known: " .. table.concat(known, ", ") .. ")")
  end
  clients[id].subs[msg.channel] = type(msg.params) == "table" and msg.params or {}
  reply(id, { type = "subscribed", channel = msg.channel })
  hooks.notify("client_subscribed", { client_id = id, channel = msg.channel })
end

function handlers.unsubscribe(id, msg)
  if msg.channel == "terminal" then
    local sid = type(msg.params) == "table" and msg.params.session_id
    if type(sid) == "string" then
      carrier(id).stop_pty_forwarder(id, sid)
      clients[id].terminals[sid] = nil
    end
    return reply(id, { type = "unsubscribed", channel = "terminal", session_id = sid or nil })
  end
  clients[id].subs[msg.channel] = nil
  reply(id, { type = "unsubscribed", channel = msg.channel })
end

local function transport(id)
  return carrier(id) == webrtc and "webrtc" or "socket"
end

function M.on_connected(id)
  clients[id] = { id = id, subs = {}, terminals = {} }
  hooks.notify("client_connected", { client_id = id, transport = transport(id) })
end

function M.on_disconnected(id)
  clients[id] = nil
  hooks.notify("client_disconnected", { client_id = id, transport = transport(id) })
end

function M.on_message(id, msg)
  if not clients[id] then M.on_connected(id) end
  -- {type = "tui", data} messages belong to the tui primitive (tui.on_message), not here.
  if msg.type == "tui" then return end
  local handler = handlers[msg.type]
  if not handler then
    return fail(id, "bad_message", "unknown message type " .. json.encode(msg.type)
      .. " (known: request, subscribe, unsubscribe, ping)")
  end
  handler(id, msg)
end

function M.install()
  socket.on_client_connected(M.on_connected)
  socket.on_client_disconnected(M.on_disconnected)
  socket.on_message(M.on_message)
  webrtc.on_peer_connected(M.on_connected)
  webrtc.on_peer_disconnected(M.on_disconnected)
  webrtc.on_message(M.on_message)
  events.on("tools_list_changed", function(data)
    M.broadcast("mcp", "tools_list_changed", data)
  end)
  hooks.on("plugin_reloaded", "client.broadcast", function(info)
    M.broadcast("hub", "plugin_reloaded", info)
  end)
end

return M
