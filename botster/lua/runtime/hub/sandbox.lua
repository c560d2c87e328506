-- hub.sandbox: the environment plugin code runs in. Protected (never reloaded or overridden).
--
-- A plugin sees the shared globals, but through read-only views: it can call `log.info` and
-- `string.upper`, not replace them for everyone (a plugin that wants another `json.encode`
-- keeps it in a local). It does not see the hub's internals (`_botster`, the scheduler,
-- fields starting with `_` such as `events._release`), cannot load binary chunks or reach
-- the shared global table through `load`, cannot touch the CPU budget's hook (`debug` is
-- reduced to `traceback` and `getinfo`), and cannot set `__gc` finalizers, which Lua runs
-- with hooks off, so the budget could not stop a slow one. What a plugin writes goes into its
-- own environment and its own views, so nothing it does outlives its unload.
--
-- Not a security boundary against a hostile plugin (plugins can read any file the user can,
-- see docs/security.md): it stops one plugin's mistakes from reaching the others and the hub.

local raw_setmetatable, raw_getmetatable = setmetatable, getmetatable
local raw_load, raw_loadfile, raw_type, raw_error = load, loadfile, type, error
local raw_rawget, raw_next, raw_select, raw_pcall = rawget, next, select, pcall
local raw_collect, raw_tostring = collectgarbage, tostring
local traceback, getinfo, dbg_getmetatable = debug.traceback, debug.getinfo, debug.getmetatable

local M = {}

-- Globals plugins do not see at all.
local HIDDEN = { _botster = true, python = true, _loading_plugin_source = true }
-- Modules a plugin's `require` refuses.
local INTERNAL = { ["hub.sched"] = true, ["hub.sandbox"] = true }
M.INTERNAL = INTERNAL
-- Standard modules whose plugin version is the sandbox's (`require` returns that one).
M.REPLACED = { debug = true, os = true, package = true, _G = true }

local sbyte = string.byte

local function internal_key(k)
  return raw_type(k) == "string" and sbyte(k, 1) == 95 and k ~= "_VERSION" -- "_"
end

-- The real table's own __index (a primitive's wrong-door hint) raises at our line; the
-- message is re-raised at the plugin's line instead.
local function index_real(real, k) return real[k] end

local function strip_position(msg)
  if raw_type(msg) ~= "string" then return msg end
  return (msg:gsub("^embedded:[^:]*:%d+: ", ""))
end

local view

-- Always reached through a tail call from __index, so level 2 is the plugin's line.
local function lookup(cache, real, name, k)
  local value = raw_rawget(real, k)
  local tv = raw_type(value)
  if tv == "function" and not internal_key(k) then return value end -- the common case
  if internal_key(k) then raw_error(name .. "." .. k .. " is internal to the hub", 2) end
  if value == nil and raw_getmetatable(real) ~= nil then
    local ok, r = raw_pcall(index_real, real, k)
    if not ok then raw_error(strip_position(r), 2) end
    value = r
  end
  if raw_type(value) == "table" then return view(cache, value, name .. "." .. raw_tostring(k)) end
  return value
end

--- A read-only view of `real` for one plugin (`cache` is that plugin's, so a `rawset` on a
--- view reaches no other plugin). Nested tables are viewed too.
function view(cache, real, name)
  local v = cache[real]
  if v then return v end
  v = raw_setmetatable({}, {
    __index = function(_, k) return lookup(cache, real, name, k) end,
    __newindex = function(_, k)
      raw_error(name .. " is read-only to plugins (to use your own " .. raw_tostring(k)
        .. ", keep it in a local)", 2)
    end,
    __pairs = function()
      local function iter(_, k)
        local nk, nv = raw_next(real, k)
        while nk ~= nil and internal_key(nk) do nk, nv = raw_next(real, nk) end
        if raw_type(nv) == "table" then nv = view(cache, nv, name .. "." .. raw_tostring(nk)) end
        return nk, nv
      end
      return iter, nil, nil
    end,
    __len = function() return #real end,
    __metatable = "read-only",
  })
  cache[real] = v
  return v
end

local GC_OPTIONS = { collect = true, count = true, step = true, isrunning = true }

local function plugin_collectgarbage(opt, ...)
  if opt ~= nil and not GC_OPTIONS[opt] then
    raw_error("collectgarbage: option '" .. raw_tostring(opt)
      .. "' is not available to plugins (the collector is shared); use collect, count or step", 2)
  end
  return raw_collect(opt, ...)
end

local function plugin_setmetatable(t, mt)
  if raw_type(mt) == "table" and raw_rawget(mt, "__gc") ~= nil then
    raw_error("setmetatable: __gc finalizers are not available to plugins (Lua runs them "
      .. "where the CPU budget cannot stop them); release resources in _before_unload", 2)
  end
  return raw_setmetatable(t, mt)
end

local function plugin_getinfo(...)
  local info = getinfo(...)
  -- Functions up the stack may be the hub's own; a plugin gets their description only.
  if raw_type(info) == "table" then info.func = nil end
  return info
end

local PLUGIN_DEBUG = { traceback = traceback, getinfo = plugin_getinfo }

local function loaders(env)
  local function check_mode(fname, mode)
    if mode ~= nil and mode ~= "t" then
      raw_error(fname .. ": mode: plugins load text chunks only ('t'), got " .. raw_tostring(mode), 3)
    end
  end
  local function pick_env(n, e)
    if n >= 4 then return e end
    return env
  end
  local function plugin_load(chunk, chunkname, mode, ...)
    check_mode("load", mode)
    return raw_load(chunk, chunkname, "t", pick_env(raw_select("#", ...) + 3, ...))
  end
  local function plugin_loadfile(filename, mode, ...)
    check_mode("loadfile", mode)
    if raw_select("#", ...) >= 1 then return raw_loadfile(filename, "t", (...)) end
    return raw_loadfile(filename, "t", env)
  end
  local function plugin_dofile(filename)
    local fn, err = raw_loadfile(filename, "t", env)
    if not fn then raw_error(err, 2) end
    return fn()
  end
  return plugin_load, plugin_loadfile, plugin_dofile
end

local OS_EXIT_HINT = "os.exit would stop the hub for everyone; use hub.quit() to stop it cleanly"

--- sandbox.new_env(require_fn) -> env: a fresh environment for one plugin.
function M.new_env(make_require)
  local cache = {}
  local env = {}
  local overrides = {
    _G = env,
    collectgarbage = plugin_collectgarbage,
    setmetatable = plugin_setmetatable,
    debug = view(cache, PLUGIN_DEBUG, "debug"),
  }
  overrides.load, overrides.loadfile, overrides.dofile = loaders(env)
  -- os.exit would end the hub with no shutdown; the rest of os stays.
  local plugin_os = raw_setmetatable({ exit = function() raw_error(OS_EXIT_HINT, 2) end },
    { __index = os })
  overrides.os = view(cache, plugin_os, "os")
  -- package.loaded would hand out every module, the hub's own and the full debug library.
  overrides.package = view(cache, { config = package.config, path = package.path }, "package")
  raw_setmetatable(env, {
    __index = function(_, k)
      local o = overrides[k]
      if o ~= nil then return o end
      if HIDDEN[k] then return nil end
      local v = raw_rawget(_G, k)
      if raw_type(v) == "table" then return view(cache, v, k) end
      return v
    end,
    __metatable = false,
  })
  env.require = make_require(env, function(real, name) return view(cache, real, name) end)
  return env
end

-- Shared metatables plugins could otherwise reach with getmetatable and change for everyone:
-- the strings' (its __index is the real `string` table) and the one lupa gives Python objects
-- (json.null, handles).
do
  raw_getmetatable("").__metatable = "read-only"
  local python_mt = json and dbg_getmetatable(json.null)
  if python_mt then python_mt.__metatable = "read-only" end
end

return M
