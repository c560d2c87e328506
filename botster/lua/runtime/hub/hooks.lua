-- hub.hooks: named observers and interceptors with priorities, owned by the plugin that
-- registered them. Protected (survives reloads).
--
-- Observers (`on`) are told that something happened; each runs as its own task, so a slow or
-- failing observer never holds up the others. Interceptors (`intercept`) run in turn, in the
-- caller's task, and may transform the arguments; returning nil blocks the action. An
-- interceptor that errors is logged and skipped (the previous value carries on).
-- Order: higher priority first (default 100); equal priorities in registration order.
local sched = require("hub.sched")
local start, call_as, current_owner = sched.start, sched.call_as, sched.current_owner

local M = {}
local kinds = { observers = {}, interceptors = {} } -- kind -> event -> name -> entry
local sorted = { observers = {}, interceptors = {} } -- kind -> event -> array (cache)
local seq = 0

-- Argument errors are returned, not raised, so each public function raises them itself at
-- level 2: the plugin's line, not a line in this file.
local function bad(fname, arg, value, expected, optional)
  local t = type(value)
  if t == expected or (optional and value == nil) then return nil end
  return string.format("hub.hooks.%s: %s: expected %s, got %s", fname, arg, expected, t)
end

local function add(kind, fname, event, name, fn, opts)
  local err = bad(fname, "event", event, "string") or bad(fname, "name", name, "string")
    or bad(fname, "fn", fn, "function") or bad(fname, "opts", opts, "table", true)
  if err then return err end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "priority" and k ~= "enabled" then
      return "hub.hooks." .. fname .. ": opts: unknown key '" .. tostring(k)
        .. "' (known: enabled, priority)"
    end
  end
  if opts.priority ~= nil and math.type(opts.priority) == nil then
    return "hub.hooks." .. fname .. ": opts.priority: expected number, got " .. type(opts.priority)
  end
  err = bad(fname, "opts.enabled", opts.enabled, "boolean", true)
  if err then return err end
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

--- hooks.on(event, name, fn, opts?): observe `event`; re-using a name replaces it (the new
--- registration takes a new place in registration order).
--- opts: {priority = 100, enabled = true}
function M.on(event, name, fn, opts)
  local err = add("observers", "on", event, name, fn, opts)
  if err then error(err, 2) end
end

--- hooks.off(event, name) -> bool
function M.off(event, name)
  local err = bad("off", "event", event, "string") or bad("off", "name", name, "string")
  if err then error(err, 2) end
  return remove("observers", event, name)
end

-- Whether `e` is still registered and enabled: an earlier hook of the same notify or call
-- may have removed, replaced or disabled it (the sorted list is a snapshot).
local function live(kind, event, e)
  local by_event = kinds[kind][event]
  return by_event ~= nil and by_event[e.name] == e and e.enabled
end

--- hooks.notify(event, ...) -> number of observers started.
--- An observer removed or disabled by an earlier one of the same notify is not started.
function M.notify(event, ...)
  if type(event) ~= "string" then error(bad("notify", "event", event, "string"), 2) end
  local list = ordered("observers", event)
  local started = 0
  for i = 1, #list do
    local e = list[i]
    if live("observers", event, e) then
      started = started + 1
      start(e.owner, "hook '" .. event .. "' observer '" .. e.name .. "'", e.fn, ...)
    end
  end
  return started
end

--- hooks.has_observers(event) -> bool
function M.has_observers(event)
  if type(event) ~= "string" then error(bad("has_observers", "event", event, "string"), 2) end
  return #ordered("observers", event) > 0
end

--- hooks.intercept(event, name, fn, opts?): transform or block `event` (return nil to block).
function M.intercept(event, name, fn, opts)
  local err = add("interceptors", "intercept", event, name, fn, opts)
  if err then error(err, 2) end
end

--- hooks.unintercept(event, name) -> bool
function M.unintercept(event, name)
  local err = bad("unintercept", "event", event, "string")
    or bad("unintercept", "name", name, "string")
  if err then error(err, 2) end
  return remove("interceptors", event, name)
end

--- hooks.call(event, ...) -> the transformed arguments, or nil if an interceptor blocked.
--- With no interceptors the arguments come back unchanged.
function M.call(event, ...)
  if type(event) ~= "string" then error(bad("call", "event", event, "string"), 2) end
  local args = table.pack(...)
  local list = ordered("interceptors", event)
  for i = 1, #list do
    local e = list[i]
    if live("interceptors", event, e) then -- an earlier one of this call may have removed it
      local label = "hook '" .. event .. "' interceptor '" .. e.name .. "'"
      local r = table.pack(call_as(e.owner, label, e.fn, table.unpack(args, 1, args.n)))
      if not r[1] then
        log.error("interceptor '" .. e.name .. "' of '" .. event .. "' (" .. e.owner .. ") failed: "
          .. tostring(r[2]))
      elseif r[2] == nil then
        return nil
      else
        args = table.pack(table.unpack(r, 2, r.n))
      end
    end
  end
  return table.unpack(args, 1, args.n)
end

--- hooks.has_interceptors(event) -> bool
function M.has_interceptors(event)
  if type(event) ~= "string" then error(bad("has_interceptors", "event", event, "string"), 2) end
  return #ordered("interceptors", event) > 0
end

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
--- True if an observer or interceptor of that name exists (both are switched).
function M.enable(event, name)
  local err = bad("enable", "event", event, "string") or bad("enable", "name", name, "string")
  if err then error(err, 2) end
  return set_enabled(event, name, true)
end

function M.disable(event, name)
  local err = bad("disable", "event", event, "string") or bad("disable", "name", name, "string")
  if err then error(err, 2) end
  return set_enabled(event, name, false)
end

--- hooks.list(event) -> {{kind, name, priority, enabled, owner}...}
function M.list(event)
  if type(event) ~= "string" then error(bad("list", "event", event, "string"), 2) end
  local out = {}
  for kind, by_kind in pairs(kinds) do
    for _, e in pairs(by_kind[event] or {}) do
      out[#out + 1] = { kind = kind:sub(1, -2), name = e.name, priority = e.priority,
        enabled = e.enabled, owner = e.owner }
    end
  end
  table.sort(out, function(a, b)
    if a.kind ~= b.kind then return a.kind < b.kind end
    return a.name < b.name
  end)
  return json.array(out)
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
