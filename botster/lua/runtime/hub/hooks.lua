-- hub.hooks: named observers and interceptors with priorities, owned by the plugin that
-- registered them. Protected (survives reloads).
--
-- Observers (`on`) are told that something happened; each runs as its own task, so a slow or
-- failing observer never holds up the others. Interceptors (`intercept`) run in turn, in the
-- caller's task, and may transform the arguments; returning nil blocks the action. An
-- interceptor that errors is logged and skipped (the previous value carries on).
-- Order: higher priority first (default 100); equal priorities in registration order.
local sched = require("hub.sched")
local check, start, call_as, current_owner = sched.check, sched.start, sched.call_as, sched.current_owner

local M = {}
local kinds = { observers = {}, interceptors = {} } -- kind -> event -> name -> entry
local sorted = { observers = {}, interceptors = {} } -- kind -> event -> array (cache)
local seq = 0

local function add(kind, fname, event, name, fn, opts)
  check(fname, "event", event, "string")
  check(fname, "name", name, "string")
  check(fname, "fn", fn, "function")
  check(fname, "opts", opts, "table", true)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "priority" and k ~= "enabled" then
      error(fname .. ": opts: unknown key '" .. tostring(k) .. "' (known: enabled, priority)", 3)
    end
  end
  if opts.priority ~= nil and math.type(opts.priority) == nil then
    error(fname .. ": opts.priority: expected number, got " .. type(opts.priority), 3)
  end
  seq = seq + 1
  local by_event = kinds[kind][event] or {}
  kinds[kind][event] = by_event
  by_event[name] = { name = name, fn = fn, priority = opts.priority or 100,
    enabled = opts.enabled ~= false, owner = current_owner(), seq = seq }
  sorted[kind][event] = nil
end

local function remove(kind, event, name)
  local by_event = kinds[kind][event]
  if not by_event or not by_event[name] then return false end
  by_event[name] = nil
  if next(by_event) == nil then kinds[kind][event] = nil end
  sorted[kind][event] = nil
  return true
end

local function ordered(kind, event)
  local list = sorted[kind][event]
  if list then return list end
  list = {}
  for _, e in pairs(kinds[kind][event] or {}) do
    if e.enabled then list[#list + 1] = e end
  end
  table.sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority > b.priority end
    return a.seq < b.seq
  end)
  sorted[kind][event] = list
  return list
end

--- hooks.on(event, name, fn, opts?): observe `event`; re-using a name replaces it.
--- opts: {priority = 100, enabled = true}
function M.on(event, name, fn, opts) add("observers", "hooks.on", event, name, fn, opts) end

--- hooks.off(event, name) -> bool
function M.off(event, name) return remove("observers", event, name) end

--- hooks.notify(event, ...) -> number of observers started.
function M.notify(event, ...)
  local list = ordered("observers", event)
  for i = 1, #list do
    local e = list[i]
    start(e.owner, "hook '" .. event .. "' observer '" .. e.name .. "'", e.fn, ...)
  end
  return #list
end

--- hooks.has_observers(event) -> bool
function M.has_observers(event) return #ordered("observers", event) > 0 end

--- hooks.intercept(event, name, fn, opts?): transform or block `event` (return nil to block).
function M.intercept(event, name, fn, opts) add("interceptors", "hooks.intercept", event, name, fn, opts) end

--- hooks.unintercept(event, name) -> bool
function M.unintercept(event, name) return remove("interceptors", event, name) end

--- hooks.call(event, ...) -> the transformed arguments, or nil if an interceptor blocked.
--- With no interceptors the arguments come back unchanged.
function M.call(event, ...)
  local args = table.pack(...)
  local list = ordered("interceptors", event)
  for i = 1, #list do
    local e = list[i]
    local r = table.pack(call_as(e.owner, "hook '" .. event .. "' interceptor '" .. e.name .. "'",
      e.fn, table.unpack(args, 1, args.n)))
    if not r[1] then
      log.error("interceptor '" .. e.name .. "' of '" .. event .. "' (" .. e.owner .. ") failed: "
        .. tostring(r[2]))
    elseif r[2] == nil then
      return nil
    else
      args = table.pack(table.unpack(r, 2, r.n))
    end
  end
  return table.unpack(args, 1, args.n)
end

--- hooks.has_interceptors(event) -> bool
function M.has_interceptors(event) return #ordered("interceptors", event) > 0 end

local function set_enabled(event, name, enabled)
  local found = false
  for kind, by_kind in pairs(kinds) do
    local e = by_kind[event] and by_kind[event][name]
    if e then
      e.enabled = enabled
      sorted[kind][event] = nil
      found = true
    end
  end
  return found
end

--- hooks.enable(event, name) -> bool / hooks.disable(event, name) -> bool
function M.enable(event, name) return set_enabled(event, name, true) end
function M.disable(event, name) return set_enabled(event, name, false) end

--- hooks.list(event) -> {{kind, name, priority, enabled, owner}...}
function M.list(event)
  local out = {}
  for kind, by_kind in pairs(kinds) do
    for _, e in pairs(by_kind[event] or {}) do
      out[#out + 1] = { kind = kind:sub(1, -2), name = e.name, priority = e.priority,
        enabled = e.enabled, owner = e.owner }
    end
  end
  table.sort(out, function(a, b) return a.kind .. a.name < b.kind .. b.name end)
  return out
end

-- Loader use: drops every hook an unloaded plugin registered.
function M.unregister_by_owner(owner)
  for kind, by_kind in pairs(kinds) do
    for event, by_event in pairs(by_kind) do
      for name, e in pairs(by_event) do
        if e.owner == owner then remove(kind, event, name) end
      end
    end
  end
end

return M
