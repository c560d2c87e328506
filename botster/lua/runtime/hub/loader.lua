-- hub.loader: finds, loads, reloads and unloads plugins, the user entry point and core Lua
-- modules. Protected (never reloaded itself).
--
-- A plugin is `<layer>/plugins/<name>/init.lua`; the repo layer (`<repo>/.botster`) wins over
-- the device layer (`$BOTSTER_HOME`) by name. Each plugin runs in its own environment (its
-- globals are its own; reads fall through to the shared globals) with its own `require`
-- that looks in the plugin's directory first. Everything a plugin registers is owned by it,
-- so unloading releases all of it. A reload compiles the new version first: a syntax error
-- keeps the old version untouched; a runtime error in the new init rolls back to the old.
local sched = require("hub.sched")
local hooks = require("hub.hooks")
local sandbox = require("hub.sandbox")
local call_as = sched.call_as

local M = {}
local plugins = {}   -- name -> record (see new_record)
local modules_owned = {} -- core module name -> true when loaded through M.reload
local USER = "user"

local function log_error(msg) log.error(msg) end

local function release(owner)
  events._release(owner)
  hooks.unregister_by_owner(owner)
  if mcp and mcp._release then mcp._release(owner) end
  require("lib.commands")._release(owner)
  _botster.release_owner(owner)
end
M._release = release -- internal: plugins never see `_` fields

-- The plugin's own `require`: its directory (and `lua/` below it) first, then the shared
-- chain (repo overrides, device overrides, embedded modules). Results are cached per plugin.
local function plugin_require(p, env, view)
  local cache = {}
  return function(name)
    if type(name) ~= "string" then
      error("require: name: expected string, got " .. type(name), 2)
    end
    local cached = cache[name]
    if cached ~= nil then return cached end
    local rel = name:gsub("%.", "/")
    for _, path in ipairs({ p.dir .. "/" .. rel .. ".lua", p.dir .. "/" .. rel .. "/init.lua",
      p.dir .. "/lua/" .. rel .. ".lua", p.dir .. "/lua/" .. rel .. "/init.lua" }) do
      local src = _botster.read_file(path)
      if src then
        local fn, err = load(src, "@" .. path, "t", env)
        if not fn then error(err, 0) end
        local result = fn(name, path)
        if result == nil then result = true end
        cache[name] = result
        return result
      end
    end
    if sandbox.INTERNAL[name] then error("require: '" .. name .. "' is internal to the hub", 2) end
    -- Standard libraries the sandbox replaces (debug, os, package) come from the sandbox.
    if sandbox.REPLACED[name] then return env[name] end
    local shared = require(name)
    -- Shared modules are read-only to plugins, like the globals.
    if type(shared) == "table" then return view(shared, name) end
    return shared
  end
end

-- Each plugin's environment: its own globals over read-only views of the shared ones.
local function new_env(p)
  return sandbox.new_env(function(env, view) return plugin_require(p, env, view) end)
end

local function compile(p, src)
  local env = new_env(p)
  local chunk, err = load(src, "@" .. p.init, "t", env)
  return chunk, err
end

-- Runs a compiled init as the plugin. Returns ok, err.
local function run_init(p, chunk, src, label)
  local was = rawget(_G, "_loading_plugin_source")
  _G._loading_plugin_source = "@" .. p.init
  if mcp and mcp.begin_batch then mcp.begin_batch() end
  local ok, result = call_as(p.name, label, chunk)
  _G._loading_plugin_source = was
  if ok then
    p.module = type(result) == "table" and result or nil
    p.source_text = src
    p.status, p.error, p.loaded_at = "loaded", nil, os.time()
  end
  if mcp and mcp.end_batch then mcp.end_batch() end
  return ok, result
end

local function call_module_hook(p, module, fname)
  if module and type(module[fname]) == "function" then
    local ok, err = call_as(p.name, fname, module[fname])
    if not ok then log_error("plugin '" .. p.name .. "': " .. fname .. " failed: " .. tostring(err)) end
  end
end

local function new_record(info)
  return { name = info.name, dir = info.dir, init = info.init, source = info.source,
    status = "pending", reload_count = 0 }
end

--- loader.load_plugin(info) -> ok, err. `info` = {name, dir, init, source}.
function M.load_plugin(info)
  local p = plugins[info.name] or new_record(info)
  p.dir, p.init, p.source = info.dir, info.init, info.source
  plugins[p.name] = p
  local why = _botster.quarantined(p.name, p.dir)
  if why then
    p.status, p.error = "quarantined", why
    log.warn("plugin '" .. p.name .. "' is quarantined, not loading it: " .. why
      .. " (edit it, or run the plugins.enable command)")
    return false, why
  end
  local src, rerr = _botster.read_file(p.init)
  if not src then
    p.status, p.error = "errored", "cannot read " .. p.init .. ": " .. tostring(rerr)
    log_error("plugin '" .. p.name .. "' failed to load: " .. p.error)
    return false, p.error
  end
  local chunk, cerr = compile(p, src)
  if not chunk then
    p.status, p.error = "errored", cerr
    log_error("plugin '" .. p.name .. "' failed to load: " .. cerr)
    return false, cerr
  end
  local ok, err = run_init(p, chunk, src, "load")
  if not ok then
    release(p.name)
    p.status, p.error = "errored", err
    log_error("plugin '" .. p.name .. "' failed to load: " .. err)
    return false, err
  end
  log.info("plugin '" .. p.name .. "' loaded from " .. p.source .. " layer")
  return true
end

--- loader.reload_plugin(name) -> ok, err
--- Reloads a plugin from disk. A syntax error keeps the running version untouched; an error
--- while running the new init releases what it registered and restores the old version.
function M.reload_plugin(name)
  local p = plugins[name]
  if not p or p.status ~= "loaded" then
    -- Never loaded, or its last load failed: a plain load (nothing to roll back to).
    for _, info in ipairs(_botster.discover_plugins()) do
      if info.name == name then
        if p then release(name) end
        local ok, err = M.load_plugin(info)
        if p then p.reload_count = p.reload_count + 1 end
        return ok, err
      end
    end
    return false, "no plugin named '" .. name .. "'"
  end
  local src, rerr = _botster.read_file(p.init)
  if not src then
    return false, "cannot read " .. p.init .. ": " .. tostring(rerr)
  end
  local chunk, cerr = compile(p, src)
  if not chunk then
    p.error = cerr
    log_error("plugin '" .. name .. "' reload failed, keeping the running version: " .. cerr)
    return false, cerr
  end
  local old_module, old_src = p.module, p.source_text
  call_module_hook(p, old_module, "_before_reload")
  release(name)
  local ok, err = run_init(p, chunk, src, "reload")
  if not ok then
    release(name)
    log_error("plugin '" .. name .. "' reload failed, restoring the previous version: " .. err)
    local old_chunk = compile(p, old_src)
    local rok, rerr2 = run_init(p, old_chunk, old_src, "rollback")
    if not rok then
      release(name)
      p.status = "errored"
      log_error("plugin '" .. name .. "' rollback failed too: " .. rerr2)
    end
    p.error = err
    return false, err
  end
  p.reload_count = p.reload_count + 1
  call_module_hook(p, p.module, "_after_reload")
  log.info("plugin '" .. name .. "' reloaded")
  hooks.notify("plugin_reloaded", { name = name, source = p.source })
  return true
end

--- loader.unload_plugin(name) -> bool: releases everything the plugin owns.
function M.unload_plugin(name)
  local p = plugins[name]
  if not p then return false end
  hooks.notify("plugin_unloading", { name = name })
  if p.status == "loaded" then call_module_hook(p, p.module, "_before_unload") end
  release(name)
  plugins[name] = nil
  -- What only the plugin referenced is garbage now; give it back at once rather than
  -- whenever the collector next gets round to it (a plugin may have held hundreds of MB).
  collectgarbage()
  log.info("plugin '" .. name .. "' unloaded")
  return true
end

--- loader.list_plugins() -> {{name, dir, init, source, status, error, loaded_at, reload_count}}
function M.list_plugins()
  local out = {}
  for _, p in pairs(plugins) do
    out[#out + 1] = { name = p.name, dir = p.dir, init = p.init, source = p.source,
      status = p.status, error = p.error, loaded_at = p.loaded_at, reload_count = p.reload_count }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- loader.sync(name): brings one plugin in line with the disk after a change: loads a new
--- one, reloads a changed one, switches layers when one now shadows the other, unloads a
--- deleted one.
function M.sync(name)
  local found
  for _, info in ipairs(_botster.discover_plugins()) do
    if info.name == name then found = info end
  end
  local p = plugins[name]
  if not found then
    if p then M.unload_plugin(name) end
    return
  end
  if p and p.init ~= found.init then
    M.unload_plugin(name)
    p = nil
  end
  if p then
    M.reload_plugin(name)
  else
    M.load_plugin(found)
  end
end

--- loader.load_all() -> loaded, failed: every discovered plugin, by name.
function M.load_all()
  local loaded, failed = 0, 0
  for _, info in ipairs(_botster.discover_plugins()) do
    if M.load_plugin(info) then loaded = loaded + 1 else failed = failed + 1 end
  end
  return loaded, failed
end

--- loader.load_user_init(): runs `$BOTSTER_HOME/lua/user/init.lua` (owner "user"), if any.
function M.load_user_init()
  local path = _botster.paths().user_init
  local info = { name = USER, dir = path:match("^(.*)/[^/]*$"), init = path, source = "user" }
  if not _botster.read_file(path) then return end
  if plugins[USER] then return M.reload_plugin(USER) end
  return M.load_plugin(info)
end

--- loader.reload(module) -> ok, err: reloads a core Lua module (e.g. an override of `lib.mcp`).
--- Calls the old module's `_before_reload`, re-requires it, then the new `_after_reload`. On
--- failure the old module stays in place. hub.state, hub.hooks and hub.loader are protected.
function M.reload(module)
  if type(module) ~= "string" then
    error("hub.loader.reload: module: expected string, got " .. type(module), 2)
  end
  if M.is_protected(module) then
    return false, module .. " is protected and cannot be reloaded"
  end
  local old = package.loaded[module]
  if type(old) == "table" and type(old._before_reload) == "function" then
    local ok, err = pcall(old._before_reload)
    if not ok then log_error("module '" .. module .. "': _before_reload failed: " .. tostring(err)) end
  end
  package.loaded[module] = nil
  local ok, new = pcall(require, module)
  if not ok then
    package.loaded[module] = old
    log_error("module '" .. module .. "' reload failed, keeping the running version: " .. tostring(new))
    return false, tostring(new)
  end
  if type(new) == "table" and type(new._after_reload) == "function" then
    local aok, err = pcall(new._after_reload, old)
    if not aok then log_error("module '" .. module .. "': _after_reload failed: " .. tostring(err)) end
  end
  modules_owned[module] = true
  log.info("module '" .. module .. "' reloaded")
  return true
end

local PROTECTED = { ["hub.state"] = true, ["hub.hooks"] = true, ["hub.loader"] = true,
  ["hub.sched"] = true, ["hub.sandbox"] = true }
function M.is_protected(module) return PROTECTED[module] == true end

-- Hot reload ---------------------------------------------------------------------------------

local pending = {} -- key -> timer id (debounce)

local function debounce(key, fn)
  if pending[key] then timer.cancel(pending[key]) end
  pending[key] = timer.after(_botster.setting("reload_debounce_ms") / 1000, function()
    pending[key] = nil
    fn()
  end)
end

local function relative(path, root)
  if path:sub(1, #root + 1) == root .. "/" then return path:sub(#root + 2) end
end

-- Files editors write beside the one being saved: swap and lock files (.x.swp, .#x, vim's
-- write test "4913"), backups (x~, x.bak, x.orig), autosaves (#x#) and temporaries (x.tmp,
-- JetBrains' x___jb_tmp___). They are not the plugin: a change to one reloads nothing.
local function editor_file(path)
  local base = path:match("([^/]*)$")
  return base:sub(1, 1) == "." or base:sub(-1) == "~" or base == "4913"
    or base:match("^#.*#$") ~= nil or base:match("%.sw[a-z]$") ~= nil
    or base:match("%.tmp$") ~= nil or base:match("%.bak$") ~= nil
    or base:match("%.orig$") ~= nil or base:match("___jb_%a+___$") ~= nil
end

local function on_plugin_change(root, ev)
  for _, path in ipairs({ ev.path, ev.old_path }) do
    local rel = relative(path, root)
    local name = rel and rel:match("^([^/]+)")
    if name and name:sub(1, 1) ~= "." and not editor_file(rel) then
      debounce("plugin:" .. name, function() M.sync(name) end)
    end
  end
end

local function on_override_change(root, ev)
  local rel = relative(ev.path, root)
  if not rel or not rel:match("%.lua$") then return end
  local stem = rel:gsub("%.lua$", "")
  local module = stem:gsub("/init$", ""):gsub("/", ".")
  if stem == "user/init" then
    debounce("user", function() M.load_user_init() end)
  elseif M.is_protected(module) then
    log.warn(module .. " is protected: " .. ev.path .. " is ignored")
  elseif package.loaded[module] ~= nil then
    debounce("module:" .. module, function() M.reload(module) end)
  end
end

-- Watches a directory that may not exist yet: checks for it every second until it does.
local function watch_when_present(dir, on_change)
  local function try()
    if _botster.is_dir(dir) then
      watch.directory(dir, { recursive = true }, function(ev) on_change(dir, ev) end)
      return true
    end
    return false
  end
  if try() then return end
  local id
  id = timer.every(1, function()
    if try() then
      timer.cancel(id)
      -- Anything created before the watch started is picked up now.
      for _, info in ipairs(_botster.discover_plugins()) do
        if info.dir:sub(1, #dir + 1) == dir .. "/" and not plugins[info.name] then
          M.sync(info.name)
        end
      end
    end
  end)
end

--- loader.start_watching(): reload plugins, the user init and overrides when files change.
function M.start_watching()
  local paths = _botster.paths()
  for _, layer in ipairs(paths.plugin_dirs) do
    watch_when_present(layer.dir, on_plugin_change)
  end
  for _, dir in ipairs(paths.override_dirs) do
    watch_when_present(dir, on_override_change)
  end
end

return M
