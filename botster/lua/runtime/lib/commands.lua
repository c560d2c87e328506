-- lib.commands: the registry of commands clients can run (over the hub socket, and later
-- the terminal UI and other hubs). A command belongs to the plugin that registered it and
-- goes away when that plugin unloads. Handlers run as their owner, may wait (http.get...),
-- and return a result (any JSON-able value) or nil, err.
--
-- Every command passes the `before_hub_command` interceptors ({command, args, client_id});
-- returning nil blocks it. Every outcome is announced to `after_hub_command` observers.
local sched = require("hub.sched")
local state = require("hub.state")
local hooks = require("hub.hooks")
local check, call_as, current_owner = sched.check, sched.call_as, sched.current_owner

local M = {}
local registry = state.get("commands.registry", {}) -- name -> {name, fn, description, owner}

--- commands.register(name, fn(args, ctx), {description = "..."}?)
--- Registers (or replaces) a command. ctx = {client_id}.
function M.register(name, fn, opts)
  check("commands.register", "name", name, "string")
  check("commands.register", "fn", fn, "function")
  check("commands.register", "opts", opts, "table", true)
  registry[name] = { name = name, fn = fn, description = (opts or {}).description or "",
    owner = current_owner() }
end

--- commands.unregister(name) -> bool
function M.unregister(name)
  if registry[name] == nil then return false end
  registry[name] = nil
  return true
end

--- commands.list() -> {{name, description, owner}...} sorted by name
function M.list()
  local out = {}
  for _, c in pairs(registry) do
    out[#out + 1] = { name = c.name, description = c.description, owner = c.owner }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return json.array(out)
end

--- commands.run(name, args, ctx) -> ok, result_or_error
--- Runs a command through the interceptors, as its owner. Never raises.
function M.run(name, args, ctx)
  local request = hooks.call("before_hub_command", { command = name, args = args or {},
    client_id = ctx and ctx.client_id })
  local ok, result
  if request == nil then
    ok, result = false, "command '" .. tostring(name) .. "' was blocked by a before_hub_command interceptor"
  else
    name, args = request.command, request.args
    local c = registry[name]
    if not c then
      ok, result = false, "unknown command '" .. tostring(name) .. "'"
    else
      local r
      if c.owner == current_owner() then
        -- Same owner as the caller (the hub's own commands from the protocol task): no new
        -- coroutine is needed for attribution or budget, so run it in place.
        r = table.pack(xpcall(c.fn, debug.traceback, args or {}, ctx or {}))
      else
        r = table.pack(call_as(c.owner, "command '" .. name .. "'", c.fn, args or {}, ctx or {}))
      end
      if not r[1] then
        log.error("command '" .. name .. "' (" .. c.owner .. ") failed: " .. tostring(r[2]))
        ok, result = false, "command '" .. name .. "' failed: " .. tostring(r[2]):match("^[^\n]*")
      elseif r[2] == nil and r[3] ~= nil then
        ok, result = false, tostring(r[3])
      else
        ok, result = true, r[2]
      end
    end
  end
  hooks.notify("after_hub_command", { command = name, client_id = ctx and ctx.client_id,
    ok = ok, error = (not ok) and result or nil })
  return ok, result
end

function M._release(owner)
  for name, c in pairs(registry) do
    if c.owner == owner then registry[name] = nil end
  end
end

return M
