-- hub.state: a key/value store that survives plugin and module reloads (not hub restarts).
-- Protected: it can be neither overridden nor reloaded, so what it holds outlives both.
-- Keys are shared by everyone; prefix yours with your plugin's name.
local M = {}
local store = {}

local function check_key(fname, key)
  if type(key) ~= "string" then
    error("hub.state." .. fname .. ": key: expected string, got " .. type(key), 3)
  end
end

--- hub.state.get(key, default?) -> value
--- The stored value; if absent and `default` is given, stores and returns `default`.
function M.get(key, default)
  check_key("get", key)
  local v = store[key]
  if v == nil and default ~= nil then
    store[key] = default
    v = default
  end
  return v
end

--- hub.state.set(key, value): stores `value` (nil clears the key).
function M.set(key, value)
  check_key("set", key)
  store[key] = value
end

--- hub.state.clear(key): forgets `key`.
function M.clear(key)
  check_key("clear", key)
  store[key] = nil
end

--- hub.state.keys() -> sorted array of keys.
function M.keys()
  local out = {}
  for k in pairs(store) do out[#out + 1] = k end
  table.sort(out)
  return json.array(out)
end

return M
