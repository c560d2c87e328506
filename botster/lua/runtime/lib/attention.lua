-- lib.attention: an agent that needs its human becomes a web push when nobody is looking.
--
-- Trigger: the `pty_notification` event of an agent's session (a bell, OSC 9 or OSC 777; lib.agents
-- marks the agent `attention`). After a short delay (so a client that is looking can clear the
-- mark first), if the agent still wants attention and no client is subscribed to its terminal,
-- it sends `push.send({title, body, url, agent_key, hub_id, kind}, {urgency = "high"})`. Bursts
-- are coalesced: one push per agent per delay, and at most one per agent per interval.
-- Every decision is announced as hook `attention_push` {agent_key, queued = n} or
-- {agent_key, skipped = reason}.
--
-- Settings (config.json): `push_attention` (default true; false turns it off),
-- `push_attention_delay_ms` (default 3000), `push_attention_interval_s` (default 60).
-- Overridable: put a `lib/attention.lua` in `<repo>/.botster/lua` or `$BOTSTER_HOME/lua`.
local state = require("hub.state")
local hooks = require("hub.hooks")
local client = require("lib.client")

local M = {}
local pending = state.get("attention.pending", {}) -- agent key -> latest notification
local last_sent = state.get("attention.last_sent", {}) -- agent key -> os.time() of the last push

local function setting(name, default, check)
  local v = config.get(name)
  if v ~= nil and check(v) then return v end
  return default
end

local function nonneg_int(v) return math.type(v) == "integer" and v >= 0 end

local function escape(s)
  return (tostring(s):gsub("[^%w%-_.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- attention.agent_url(agent_key) -> string | nil
--- Where the browser app shows this agent: `<relay public url>/hubs/<server id>?agent=<key>`
--- (a path when the relay's URL is not known; nil before the hub is registered with a relay).
function M.agent_url(key)
  local sid = hub.server_id()
  if sid == nil then return nil end
  local path = "/hubs/" .. escape(sid) .. "?agent=" .. escape(key)
  local base = config.env("BOTSTER_SERVER_URL") or config.get("server_url")
  if type(base) == "string" and base:match("^https?://") then
    return (base:gsub("/+$", "")) .. path
  end
  return path
end

--- attention.payload(agent_info, notification) -> the table given to push.send.
function M.payload(a, d)
  local label = a.title ~= nil and a.title ~= "" and a.title or a.agent_key
  local title = d.title ~= nil and d.title ~= "" and d.title or (label .. " needs you")
  local body = d.body
  if body == nil or body == "" then
    body = d.kind == "bell" and ("Agent " .. a.agent_key .. " rang the bell")
      or ("Agent " .. a.agent_key .. " is waiting for you")
  end
  return { title = title, body = body, url = M.agent_url(a.agent_key), agent_key = a.agent_key,
    hub_id = hub.hub_id(), kind = d.kind }
end

local function agent(key)
  for _, a in ipairs(require("lib.agents").list()) do
    if a.agent_key == key then return a end
  end
end

local function decided(key, result)
  result.agent_key = key
  hooks.notify("attention_push", result)
end

--- attention.flush(agent_key): sends the push for a pending notification, if still due.
function M.flush(key)
  local d = pending[key]
  pending[key] = nil
  if d == nil then return end
  local a = agent(key)
  if a == nil then return decided(key, { skipped = "agent gone" }) end
  if not a.attention then return decided(key, { skipped = "seen" }) end
  if a.session_id and client.viewers(a.session_id) > 0 then
    return decided(key, { skipped = "viewed" })
  end
  local interval = setting("push_attention_interval_s", 60, nonneg_int)
  local now = os.time()
  if last_sent[key] and now - last_sent[key] < interval then
    return decided(key, { skipped = "rate limited" })
  end
  local n, err = push.send(M.payload(a, d), { urgency = "high" })
  if n == nil then
    log.warn("attention push for '" .. key .. "': " .. tostring(err))
    return decided(key, { skipped = "failed", error = err })
  end
  if n > 0 then last_sent[key] = now end
  decided(key, { queued = n })
end

function M.on_notification(d)
  if config.get("push_attention") == false then return end
  local key = d.agent_key
  if type(key) ~= "string" or key == "" then return end
  local first = pending[key] == nil
  pending[key] = d -- the latest words win
  if not first then return end
  local delay = setting("push_attention_delay_ms", 3000, nonneg_int)
  timer.after(math.max(delay, 1) / 1000, function() M.flush(key) end)
end

function M.install()
  events.on("pty_notification", function(d) M.on_notification(d) end)
end

return M
