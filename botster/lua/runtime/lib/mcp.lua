-- mcp: the registry of tools that plugins offer to agents (served by `botster mcp-serve`).
--
-- A tool belongs to the plugin that registered it (its "source"); unloading or reloading the
-- plugin removes its tools. After any change settles, and only if the list agents see really
-- changed, the event `tools_list_changed` is emitted once ({count = n}).
-- The registry lives in hub.state, so reloading an override of this module keeps every tool.
local sched = require("hub.sched")
local state = require("hub.state")
local check, call_as, current_owner = sched.check, sched.call_as, sched.current_owner

local M = {}
local tools = state.get("mcp.tools", {})          -- name -> {name, description, input_schema, handler, source}
local status = state.get("mcp.status", { batch = 0, dirty = false, announced = "" })
local SETTLE_S = 0.05
local SPEC_KEYS = { description = true, input_schema = true, title = true, annotations = true }

local function signature()
  local names = {}
  for name in pairs(tools) do names[#names + 1] = name end
  table.sort(names)
  local parts = {}
  for _, name in ipairs(names) do
    local t = tools[name]
    local ok, schema = pcall(json.encode, t.input_schema)
    parts[#parts + 1] = name .. "\0" .. (t.description or "") .. "\0" .. (ok and schema or "?")
  end
  return table.concat(parts, "\1")
end

local function announce()
  local sig = signature()
  if sig == status.announced then return end
  status.announced = sig
  events.emit("tools_list_changed", { count = M.count() })
end

local function changed()
  if status.batch > 0 then
    status.dirty = true
    return
  end
  -- The settle timer belongs to the hub, not to whichever plugin caused the change.
  call_as("hub", "mcp change", function()
    if status.timer then timer.cancel(status.timer) end
    status.timer = timer.after(SETTLE_S, function()
      status.timer = nil
      announce()
    end)
  end)
end

--- mcp.tool(name, spec, handler)
--- Registers (or replaces) a tool. spec = {description, input_schema?, title?, annotations?};
--- input_schema defaults to {type = "object"}. handler(params, context) returns a string or a
--- table (sent JSON-encoded); an error becomes an error result. Arguments are checked against
--- input_schema (JSON Schema, its `$schema` draft or 2020-12) before the handler runs: a call
--- the schema refuses gets an error result naming the field ("argument name: 5 is not of
--- type 'string'") and never reaches the handler.
function M.tool(name, spec, handler)
  check("mcp.tool", "name", name, "string")
  if not name:match("^[%w_%.%-]+$") or #name > 128 then
    error("mcp.tool: name: expected 1-128 letters, digits, '_', '-' or '.', got '" .. name .. "'", 2)
  end
  check("mcp.tool", "spec", spec, "table")
  check("mcp.tool", "handler", handler, "function")
  for k in pairs(spec) do
    if not SPEC_KEYS[k] then
      error("mcp.tool: spec: unknown key '" .. tostring(k)
        .. "' (known: annotations, description, input_schema, title)", 2)
    end
  end
  check("mcp.tool", "spec.description", spec.description, "string", true)
  check("mcp.tool", "spec.input_schema", spec.input_schema, "table", true)
  check("mcp.tool", "spec.title", spec.title, "string", true)
  check("mcp.tool", "spec.annotations", spec.annotations, "table", true)
  local schema = spec.input_schema or { type = "object" }
  if type(schema.required) == "table" and next(schema.required) == nil then
    json.array(schema.required)
  end
  tools[name] = { name = name, description = spec.description or "", input_schema = schema,
    title = spec.title, annotations = spec.annotations, handler = handler, source = current_owner() }
  _botster.tool_registered()
  changed()
end

--- mcp.remove_tool(name) -> bool
function M.remove_tool(name)
  check("mcp.remove_tool", "name", name, "string")
  if not tools[name] then return false end
  tools[name] = nil
  changed()
  return true
end

-- "@<path to init.lua>" (the loader's chunk name) -> the plugin's name; anything else as is.
local function source_name(source)
  if source:sub(1, 1) ~= "@" then return source end
  local loader = package.loaded["hub.loader"]
  if type(loader) == "table" and loader.list_plugins then
    for _, p in ipairs(loader.list_plugins()) do
      if "@" .. p.init == source then return p.name end
    end
  end
  return source
end

--- mcp.reset(source) -> number of tools removed
--- Removes every tool `source` registered. `source` is a plugin name ("user" for the user
--- init); "@<path to init.lua>" (the loader's chunk name) is accepted too.
function M.reset(source)
  check("mcp.reset", "source", source, "string")
  source = source_name(source)
  local removed = 0
  for name, t in pairs(tools) do
    if t.source == source then
      tools[name] = nil
      removed = removed + 1
    end
  end
  if removed > 0 then changed() end
  return removed
end

--- mcp.list_tools() -> {{name, description, input_schema, source, title?, annotations?}...}
--- sorted by name; no handlers.
function M.list_tools()
  local out = {}
  for _, t in pairs(tools) do
    out[#out + 1] = { name = t.name, description = t.description, input_schema = t.input_schema,
      source = t.source, title = t.title, annotations = t.annotations }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return json.array(out)
end

--- mcp.call_tool(name, params, context) -> result, err
--- Runs the handler as its plugin. result is a string (tables are JSON-encoded); on failure
--- result is nil and err says why. The handler may wait (http.get) without blocking the hub.
function M.call_tool(name, params, context)
  check("mcp.call_tool", "name", name, "string")
  check("mcp.call_tool", "params", params, "table", true)
  check("mcp.call_tool", "context", context, "table", true)
  local t = tools[name]
  if not t then return nil, "unknown tool '" .. name .. "'" end
  local wrong = _botster.check_tool_arguments(t.input_schema, params or {})
  if wrong then return nil, "tool '" .. name .. "': " .. wrong end
  -- The handler sees the hub's id even when the caller did not pass one (spec: context is
  -- {agent_key, hub_id}); the caller's table is not modified.
  local ctx = { hub_id = hub.hub_id() }
  for k, v in pairs(context or {}) do ctx[k] = v end
  local ok, result = call_as(t.source, "mcp tool '" .. name .. "'", t.handler, params or {}, ctx)
  if not ok then
    log.error("mcp tool '" .. name .. "' (" .. t.source .. ") failed: " .. tostring(result))
    local first = tostring(result):match("^[^\n]*")
    return nil, "tool '" .. name .. "' failed: " .. first
  end
  local kind = type(result)
  if kind == "string" then return result end
  if kind == "nil" then return "" end
  if kind == "table" then
    local eok, encoded = pcall(json.encode, result)
    if not eok then return nil, "tool '" .. name .. "' returned a table that is not JSON: " .. encoded end
    return encoded
  end
  return tostring(result)
end

--- mcp.count() -> number of registered tools.
function M.count()
  local n = 0
  for _ in pairs(tools) do n = n + 1 end
  return n
end

-- Loader use: changes during a plugin load are announced once, when the load ends.
function M.begin_batch() status.batch = status.batch + 1 end
function M.end_batch()
  status.batch = math.max(0, status.batch - 1)
  if status.batch == 0 and status.dirty then
    status.dirty = false
    changed()
  end
end
function M._release(owner) return M.reset(owner) end

return M
