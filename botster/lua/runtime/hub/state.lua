-- hub.state: a key/value store that survives plugin and module reloads (not hub restarts).
-- Protected: it can be neither overridden nor reloaded, so what it holds outlives both.
-- Keys are shared by everyone; prefix yours with your plugin's name.
local M = {}
local store = {}

--- hub.state.get(key, default?) -> value
--- The stored value; if absent and `default` is given, stores and returns `default`.
function M.get(key, default)
  if type(key) ~= "string" then error("hub.state.get: key: expected string, got " .. type(key), 2) end
  local v = store[key]
  if v == nil and default ~= nil then
    store[key] = default
    v = default
  end
  return v
end

--- hub.state.set(key, value): stores `value` (nil clears the key).
function M.set(key, value)
  if type(key) ~= "string" then error("hub.state.set: key: expected string, got " .. type(key), 2) end
  store[key] = value
end

--- hub.state.clear(key): forgets `key`.
function M.clear(key)
  store[key] = nil
end

--- hub.state.keys() -> sorted array of keys.
function M.keys()
  local out = {}
  for k in pairs(store) do out[#out + 1] = k end
  table.sort(out)
  return out
end

return M
