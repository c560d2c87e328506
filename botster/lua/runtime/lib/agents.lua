-- lib.agents: the agent lifecycle. An agent is a program started from a definition
-- (`<layer>/agents/<name>/initialization`, the repo layer winning by name) in its own git
-- worktree, in a PTY session that outlives the hub. Accessories are plain sessions beside it
-- (`<layer>/accessories/<name>/initialization`, with a `port_forward` file for a $PORT).
--
-- create:  before_agent_create (interceptor; nil blocks) -> worktree (async) -> include
--          patterns copied -> filter_agent_env (interceptor) -> session spawned ->
--          after_agent_create, agent_created (hooks) + agent_created (event)
-- close:   before_agent_delete (interceptor) -> before_agent_close -> sessions closed ->
--          worktree deleted if asked (refused, and said, when work would be lost) ->
--          after_agent_close, agent_deleted (hooks) + agent_deleted (event)
-- Every stage is also announced as hook `agent_lifecycle` {agent_key, stage, error?}.
-- Agents are rebuilt from their sessions' labels when the hub restarts (`recover`).
-- Overridable: put a `lib/agents.lua` in `<repo>/.botster/lua` or `$BOTSTER_HOME/lua`.
local state = require("hub.state")
local hooks = require("hub.hooks")
local client = require("lib.client")

local M = {}
local agents = state.get("agents.registry", {})     -- agent key -> record
local pending = state.get("agents.pending", {})     -- worktree request id -> agent key
local handles = state.get("agents.handles", {})     -- agent key -> {handle...}
local DEFAULT_MAX_SESSIONS = 20

local function lifecycle(key, stage, err)
  hooks.notify("agent_lifecycle", { agent_key = key, stage = stage, error = err })
end

local function changed(key)
  client.broadcast("hub", "agents_changed", { agent_key = key })
end

--- agents.info(record) -> the shape clients and hooks see.
function M.info(a)
  return { agent_key = a.key, agent = a.agent, branch = a.branch, worktree = a.worktree,
    prompt = a.prompt, issue = a.issue, status = a.status, exit_code = a.exit_code,
    title = a.title, cwd = a.cwd, attention = a.attention or false, session_id = a.session_id,
    accessories = a.accessories, error = a.error, created_at = a.created_at }
end

--- agents.list() -> array of agent infos, by key.
function M.list()
  local out = {}
  for _, a in pairs(agents) do out[#out + 1] = M.info(a) end
  table.sort(out, function(x, y) return x.agent_key < y.agent_key end)
  return json.array(out)
end

local function definitions(kind)
  local defs = {}
  for _, d in ipairs(_botster.discover_definitions(kind)) do defs[d.name] = d end
  return defs
end

-- Running sessions plus agents still on their way to one, so that concurrent creates are
-- counted before any of them has a session.
local function session_count()
  local n = 0
  for _, s in ipairs(pty.list()) do
    if s.running then n = n + 1 end
  end
  for _, a in pairs(agents) do
    if a.session_id == nil and (a.status == "creating_worktree" or a.status == "spawning") then
      n = n + 1
    end
  end
  return n
end

local function max_sessions()
  local v = config.get("max_sessions")
  return math.type(v) == "integer" and v > 0 and v or DEFAULT_MAX_SESSIONS
end

local function resolve_definition(name)
  local defs = definitions("agents")
  if name then
    if defs[name] then return defs[name] end
  else
    local only, count = nil, 0
    for _, d in pairs(defs) do only, count = d, count + 1 end
    if count == 1 then return only end
  end
  local names = {}
  for n in pairs(defs) do names[#names + 1] = n end
  table.sort(names)
  if #names == 0 then
    return nil, "no agent definitions: create .botster/agents/<name>/initialization"
  end
  if name then
    return nil, "no agent definition '" .. name .. "' (have: " .. table.concat(names, ", ") .. ")"
  end
  return nil, "several agent definitions; say which: " .. table.concat(names, ", ")
end

-- A key from the branch name; another branch that maps to the same key ("a/b" and "a-b")
-- gets a numbered one, so keys stay distinct.
local function key_for(branch)
  local base = branch:gsub("[^%w%-_.]", "-")
  local key, n = base, 1
  while agents[key] and agents[key].branch ~= branch do
    n = n + 1
    key = base .. "-" .. n
  end
  return key
end

--- agents.create({agent?, branch?, issue?, prompt?, base?}) -> {agent_key, status} | nil, err
--- Starts creating an agent; it runs once its worktree exists (status "pending" until then).
function M.create(params)
  params = hooks.call("before_agent_create", params or {})
  if params == nil then return nil, "agent creation was blocked by a before_agent_create interceptor" end
  local issue = params.issue
  if issue ~= nil and not (math.type(issue) == "integer" and issue > 0) then
    return nil, "create_agent: issue: expected a positive integer, got " .. json.encode(issue)
  end
  local def, derr = resolve_definition(params.agent)
  if not def then return nil, derr end
  local branch = params.branch
  if branch == nil and issue ~= nil then branch = "botster/issue-" .. tostring(issue) end
  if type(branch) ~= "string" or branch == "" then
    return nil, "create_agent: give a branch or an issue number"
  end
  local valid, verr = worktree.check_branch(branch)
  if not valid then return nil, "create_agent: " .. verr end
  -- No wait from here to the registration below: concurrent creates count each other.
  if session_count() >= max_sessions() then
    return nil, "max_sessions (" .. max_sessions() .. ") reached: close an agent first, or raise "
      .. "max_sessions in config.json"
  end
  local key = key_for(branch)
  local existing = agents[key]
  if existing and existing.status ~= "failed" and existing.status ~= "exited" then
    return nil, "agent '" .. key .. "' already exists (" .. existing.status .. ")"
  end
  local a = { key = key, agent = def.name, definition = def, branch = branch,
    prompt = params.prompt, issue = params.issue, status = "creating_worktree",
    created_at = os.time(), accessories = {} }
  local ok, req = pcall(worktree.create_async, { branch = branch, base = params.base,
    prompt = params.prompt, issue_number = issue, metadata = { agent_key = key } })
  if not ok then return nil, "create_agent: " .. tostring(req) end
  agents[key] = a
  lifecycle(key, "creating_worktree")
  pending[req] = key
  changed(key)
  return { agent_key = key, status = "pending" }
end

local function fail(a, err)
  a.status, a.error = "failed", err
  lifecycle(a.key, "failed", err)
  log.warn("agent '" .. a.key .. "' failed: " .. err)
  events.emit("agent_create_failed", { agent_key = a.key, error = err })
  changed(a.key)
end

local function agent_env(a)
  return {
    BOTSTER_AGENT_KEY = a.key,
    BOTSTER_AGENT = a.agent,
    BOTSTER_HUB_ID = hub.hub_id(),
    BOTSTER_HUB_SOCKET = hub_discovery.socket_path(hub.hub_id()),
    BOTSTER_REPO = _botster.repo_path(),
    BOTSTER_WORKTREE = a.worktree,
    BOTSTER_BRANCH = a.branch,
    BOTSTER_PROMPT = a.prompt or "",
    BOTSTER_ISSUE = a.issue and tostring(a.issue) or "",
  }
end

function M._spawn(a)
  local repo = _botster.repo_path()
  local include = repo .. "/.botster/workspace_include"
  if fs.exists(include) and a.worktree ~= repo then
    local ok, err = worktree.copy_from_patterns(repo, a.worktree, include)
    if not ok then log.warn("agent '" .. a.key .. "': include patterns: " .. tostring(err)) end
  end
  local env = agent_env(a)
  env = hooks.call("filter_agent_env", env, M.info(a)) or env
  a.status = "spawning"
  lifecycle(a.key, "spawning")
  local h, err = pty.spawn({ cmd = "bash", args = { a.definition.initialization }, cwd = a.worktree,
    env = env, labels = { kind = "agent", agent_key = a.key, agent = a.agent, branch = a.branch,
      worktree = a.worktree, prompt = a.prompt or "", issue = env.BOTSTER_ISSUE } })
  if not h then return fail(a, err) end
  a.session_id, a.status = h:id(), "running"
  M.register_agent(a.key, { h })
  lifecycle(a.key, "running")
  local info = M.info(a)
  hooks.notify("after_agent_create", info)
  hooks.notify("agent_created", info)
  events.emit("agent_created", info)
  changed(a.key)
end

--- agents.close(agent_key, {delete_worktree = false}?) -> {closed, worktree_deleted, warning?} | nil, err
--- Closes the agent's sessions; deletes its worktree only if asked and nothing would be lost.
function M.close(key, opts)
  opts = opts or {}
  local a = agents[key]
  if not a then return nil, "no agent '" .. tostring(key) .. "'" end
  local req = hooks.call("before_agent_delete", { agent_key = key, delete_worktree = opts.delete_worktree == true })
  if req == nil then return nil, "closing '" .. key .. "' was blocked by a before_agent_delete interceptor" end
  local info = M.info(a)
  hooks.notify("before_agent_close", info)
  lifecycle(key, "stopping")
  local sessions = { a.session_id }
  for _, sid in ipairs(a.accessories or {}) do sessions[#sessions + 1] = sid end
  for _, sid in pairs(sessions) do
    local h = pty.get(sid)
    if h then h:close() end
  end
  local result = { closed = key, worktree_deleted = false }
  if req.delete_worktree and a.worktree and a.worktree ~= _botster.repo_path() then
    lifecycle(key, "removing_worktree")
    local ok, err = worktree.delete(a.worktree, a.branch)
    if ok then
      result.worktree_deleted = true
    else
      result.warning = "worktree kept: " .. tostring(err)
      log.warn("agent '" .. key .. "': " .. result.warning)
    end
  end
  agents[key] = nil
  M.unregister_agent(key)
  hooks.notify("after_agent_close", info)
  hooks.notify("agent_deleted", { agent_key = key })
  events.emit("agent_deleted", { agent_key = key })
  changed(key)
  return result
end

--- agents.create_accessory({name, agent_key?}) -> {session_id, port?} | nil, err
--- Starts an accessory (a plain session, e.g. a dev server) in the agent's worktree (or the
--- repo); it gets $PORT when its definition has a `port_forward` file.
function M.create_accessory(params)
  local defs = definitions("accessories")
  local def = defs[params.name]
  if not def then return nil, "no accessory definition '" .. tostring(params.name) .. "'" end
  if session_count() >= max_sessions() then
    return nil, "max_sessions (" .. max_sessions() .. ") reached"
  end
  local a = params.agent_key and agents[params.agent_key]
  if params.agent_key and not a then return nil, "no agent '" .. params.agent_key .. "'" end
  local cwd = a and a.worktree or _botster.repo_path()
  local h, err = pty.spawn({ cmd = "bash", args = { def.initialization }, cwd = cwd,
    port_forward = def.port_forward, env = a and agent_env(a) or {},
    labels = { kind = "accessory", accessory = def.name, agent_key = a and a.key or "" } })
  if not h then return nil, err end
  if a then table.insert(a.accessories, h:id()) end
  changed(a and a.key)
  return { session_id = h:id(), port = h:port() }
end

--- hub.register_agent(key, handles): records an agent's PTY handles (used by plugins that
--- start agents their own way).
function M.register_agent(key, hs)
  if type(key) ~= "string" then error("hub.register_agent: key: expected string, got " .. type(key), 2) end
  if type(hs) ~= "table" then error("hub.register_agent: handles: expected table, got " .. type(hs), 2) end
  handles[key] = hs
end

--- hub.unregister_agent(key) -> bool
function M.unregister_agent(key)
  local had = handles[key] ~= nil
  handles[key] = nil
  return had
end

--- agents.session_at(agent_index, pty_index) -> session id | nil, err: the original's way of
--- naming a terminal (webrtc.create_pty_forwarder): the agent at 0-based `agent_index` in
--- agents.list() order, its 0-based `pty_index`-th PTY among the handles given to
--- hub.register_agent, then its accessories.
function M.session_at(agent_index, pty_index)
  local a = M.list()[agent_index + 1]
  if not a then return nil, "no agent at index " .. agent_index end
  local ptys = {}
  for _, h in ipairs(handles[a.agent_key] or {}) do ptys[#ptys + 1] = h:id() end
  for _, sid in ipairs(a.accessories or {}) do ptys[#ptys + 1] = sid end
  local sid = ptys[pty_index + 1]
  if not sid then
    return nil, "agent " .. a.agent_key .. " has no pty at index " .. pty_index
  end
  return sid
end

local function by_session(data)
  return data.agent_key and agents[data.agent_key]
end

--- agents.recover(): rebuilds the registry from sessions that survived a hub restart.
function M.recover()
  for _, s in ipairs(pty.list()) do
    local l = s.labels or {}
    if l.kind == "agent" and l.agent_key and not agents[l.agent_key] then
      agents[l.agent_key] = { key = l.agent_key, agent = l.agent, branch = l.branch,
        worktree = l.worktree, prompt = l.prompt, issue = tonumber(l.issue) or nil,
        session_id = s.id, status = s.running and "running" or "exited", exit_code = s.exit_code,
        title = s.title, cwd = s.cwd, attention = s.missed_attention or false,
        accessories = {}, created_at = os.time() }
      M.register_agent(l.agent_key, { pty.get(s.id) })
    end
  end
  for _, s in ipairs(pty.list()) do
    local l = s.labels or {}
    if l.kind == "accessory" and agents[l.agent_key] then
      table.insert(agents[l.agent_key].accessories, s.id)
    end
  end
end

function M.install()
  local commands = require("lib.commands")
  hub.register_agent, hub.unregister_agent = M.register_agent, M.unregister_agent
  events.on("worktree_created", function(d)
    local key = pending[d.request_id]
    if not key then return end
    pending[d.request_id] = nil
    local a = agents[key]
    if not a then return end
    a.worktree = d.path
    hooks.notify("worktree_created", d)
    M._spawn(a)
  end)
  events.on("worktree_create_failed", function(d)
    local key = pending[d.request_id]
    if not key then return end
    pending[d.request_id] = nil
    if agents[key] then fail(agents[key], d.error) end
  end)
  events.on("process_exited", function(d)
    local a = by_session(d)
    if a and a.session_id == d.session_id then
      a.status, a.exit_code = "exited", d.exit_code
      changed(a.key)
    end
  end)
  events.on("pty_title_changed", function(d)
    local a = by_session(d)
    if a then a.title = d.title; changed(a.key) end
  end)
  events.on("pty_cwd_changed", function(d)
    local a = by_session(d)
    if a then a.cwd = d.cwd end
  end)
  events.on("pty_notification", function(d)
    local a = by_session(d)
    if a then
      a.attention = true
      client.broadcast("hub", "agent_attention", { agent_key = a.key, kind = d.kind,
        title = d.title, body = d.body })
      changed(a.key)
    end
  end)
  commands.register("list_agents", function() return M.list() end,
    { description = "Every agent: key, definition, branch, worktree, status, title, attention" })
  commands.register("create_agent", function(args) return M.create(args) end,
    { description = "Creates an agent: args {agent?, branch? | issue?, prompt?, base?}" })
  commands.register("close_agent", function(args)
    return M.close(args.agent_key, { delete_worktree = args.delete_worktree })
  end, { description = "Closes an agent: args {agent_key, delete_worktree?}" })
  commands.register("create_accessory", function(args) return M.create_accessory(args) end,
    { description = "Starts an accessory: args {name, agent_key?}" })
  commands.register("clear_attention", function(args)
    local a = agents[args.agent_key]
    if not a then return nil, "no agent '" .. tostring(args.agent_key) .. "'" end
    a.attention = false
    changed(a.key)
    return true
  end, { description = "Marks an agent's notifications as seen: args {agent_key}" })
  commands.register("agent_definitions", function()
    local out = {}
    for name, d in pairs(definitions("agents")) do out[#out + 1] = { name = name, source = d.source } end
    table.sort(out, function(x, y) return x.name < y.name end)
    return json.array(out)
  end, { description = "Agent definitions available in both layers" })
  M.recover()
end

return M
