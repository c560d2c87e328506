-- The event bus (see events.py). Subscriptions belong to the plugin that made them.
local events, sched = ...
local check, start, current_owner = sched.check, sched.start, sched.current_owner

local lists = {}  -- event name -> array of subscriptions (replaced, never mutated, on change)
local by_id = {}  -- id -> subscription {id, event, fn, owner}
local next_id = 0

local function without(list, sub)
  local out = {}
  for i = 1, #list do
    if list[i] ~= sub then out[#out + 1] = list[i] end
  end
  return out
end

--- events.on(event, fn) -> id
--- Calls fn(data) whenever `event` is emitted, after earlier subscribers.
function events.on(event, fn)
  check("events.on", "event", event, "string")
  check("events.on", "fn", fn, "function")
  next_id = next_id + 1
  local sub = { id = "evt_" .. next_id, event = event, fn = fn, owner = current_owner(),
    label = "event '" .. event .. "'" }
  local list = lists[event] or {}
  local grown = table.move(list, 1, #list, 1, {})
  grown[#grown + 1] = sub
  lists[event] = grown
  by_id[sub.id] = sub
  return sub.id
end

--- events.off(id) -> bool: true if the subscription existed.
function events.off(id)
  check("events.off", "id", id, "string")
  local sub = by_id[id]
  if not sub then return false end
  by_id[id] = nil
  local list = without(lists[sub.event], sub)
  lists[sub.event] = #list > 0 and list or nil
  return true
end

--- events.emit(event, data) -> number of listeners started.
--- Listeners run in registration order, each as its own task; one removed by an earlier
--- listener of the same emit is not started (and not counted).
function events.emit(event, data)
  local list = lists[event]
  if list == nil then
    if type(event) ~= "string" then check("events.emit", "event", event, "string") end
    return 0
  end
  local started = 0
  for i = 1, #list do
    local sub = list[i]
    if by_id[sub.id] then
      started = started + 1
      start(sub.owner, sub.label, sub.fn, data)
    end
  end
  return started
end

--- events.has(event) -> bool: whether anyone listens.
function events.has(event)
  check("events.has", "event", event, "string")
  return lists[event] ~= nil
end

-- Loader use only: drops every subscription of an unloaded plugin.
function events._release(owner)
  for id, sub in pairs(by_id) do
    if sub.owner == owner then events.off(id) end
  end
end
