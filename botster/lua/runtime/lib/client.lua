-- lib.client: the client protocol (docs/protocol.md), spoken over every transport of the hub's
-- client channel (the hub socket, the terminal UIs on it, WebRTC peers): it sees every client
-- through _botster (hub/internals.py), never through one transport's face, so a new transport
-- needs nothing here.
--
-- Messages (JSON objects with a `type`):
--   request      {type="request", id, command, args?}  -> {type="response", id, ok, result|error}
--   subscribe    {type="subscribe", channel, params?}  -> {type="subscribed", channel}
--   unsubscribe  {type="unsubscribe", channel}         -> {type="unsubscribed", channel}
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
-- client id -> {id, name, transport, subs = {channel -> params}, terminals = {session id -> true}}
local clients = state.get("client.clients", {})
local CHANNELS = { hub = true, mcp = true, terminal = true }

local function reply(id, msg)
  local ok, err = _botster.client_send(id, msg)
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
  local fwd, err = _botster.client_attach(id, sid)
  if not fwd then return fail(id, "bad_message", "subscribe terminal: " .. err) end
  clients[id].terminals[sid] = true
  reply(id, { type = "subscribed", channel = "terminal", session_id = sid })
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
      _botster.client_detach(id, sid)
      clients[id].terminals[sid] = nil
    end
    return reply(id, { type = "unsubscribed", channel = "terminal", session_id = sid or nil })
  end
  clients[id].subs[msg.channel] = nil
  reply(id, { type = "unsubscribed", channel = msg.channel })
end

--- client.list() -> the connected clients, each {id, name, transport, subscriptions, terminals}
--- (sorted by id; the `clients.list` command), whatever transport carries them.
function M.list()
  local out = {}
  for _, info in ipairs(_botster.clients()) do
    local c = clients[info.id] or { subs = {}, terminals = {} }
    local subs, terms = {}, {}
    for channel in pairs(c.subs) do subs[#subs + 1] = channel end
    for sid in pairs(c.terminals) do terms[#terms + 1] = sid end
    table.sort(subs)
    table.sort(terms)
    out[#out + 1] = { id = info.id, name = info.name, transport = info.transport,
      subscriptions = json.array(subs), terminals = json.array(terms) }
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return json.array(out)
end

function M.on_connected(id, info)
  info = info or {}
  clients[id] = { id = id, name = info.name, transport = info.transport, subs = {},
    terminals = {} }
  hooks.notify("client_connected", { client_id = id, transport = info.transport })
end

function M.on_disconnected(id, info)
  clients[id] = nil
  hooks.notify("client_disconnected", { client_id = id, transport = (info or {}).transport })
end

function M.on_message(id, msg)
  if not clients[id] then
    -- A message raced ahead of its connected listener (each runs as its own task).
    for _, info in ipairs(_botster.clients()) do
      if info.id == id then M.on_connected(id, info) end
    end
    if not clients[id] then return end -- gone already
  end
  -- {type = "tui", data} messages belong to the tui primitive (tui.on_message), not here.
  if msg.type == "tui" then return end
  local handler = handlers[msg.type]
  if not handler then
    return fail(id, "bad_message", "unknown message type " .. json.encode(msg.type)
      .. " (known: request, subscribe, unsubscribe)")
  end
  handler(id, msg)
end

function M.install()
  _botster.on_client_connected(M.on_connected)
  _botster.on_client_disconnected(M.on_disconnected)
  _botster.on_client_message(M.on_message)
  events.on("tools_list_changed", function(data)
    M.broadcast("mcp", "tools_list_changed", data)
  end)
  hooks.on("plugin_reloaded", "client.broadcast", function(info)
    M.broadcast("hub", "plugin_reloaded", info)
  end)
end

return M
