-- The task scheduler: every entry into Lua runs as a coroutine ("task") started here.
--
-- Owns: the task table, the per-step CPU budget (a count hook on every coroutine), the
-- slow-step report, plugin ownership of the running coroutine, and the yield protocol by
-- which a Lua call waits on a Python awaitable without stalling the event loop.
-- Leaves to Python (botster/lua/scheduler.py): awaiting, resuming, logging, cancellation.
--
-- Loaded once with the bridge table `py`:
--   py.now()                         wall clock in seconds
--   py.on_await(id, owner, awaitable) a task is suspended until `awaitable` is done
--   py.on_yield(id, owner)           a task yielded plainly; resume it soon
--   py.on_error(owner, label, msg)   a task failed; msg carries the Lua traceback
--   py.on_slow(owner, label, ms)     a step took longer than py.slow_s
--   py.on_release(id)                a fenced task ran on past its creating calls
--   py.budget, py.slow_s             seconds

local py = ...

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_isyieldable = coroutine.status, coroutine.isyieldable
local raw_pcall, raw_xpcall = pcall, xpcall
local pack, unpack = table.pack, table.unpack
local sethook, traceback = debug.sethook, debug.traceback
local clock = os.clock
local now = py.now
local HOOK_COUNT = 10000

local M = {}

-- Yielded as the first value when a task waits on Python; nothing else can produce it.
local AWAIT = setmetatable({}, { __tostring = function() return "botster.await" end })
-- Returned by a Python primitive as its first value to raise a Lua error at the caller's line.
local RAISE = setmetatable({}, { __tostring = function() return "botster.raise" end })
M.AWAIT, M.RAISE = AWAIT, RAISE

local owner_of = setmetatable({}, { __mode = "k" }) -- coroutine -> owner key
local tasks = {}                                     -- task id -> {id, co, owner, label}
local next_id = 0
local frame = nil -- the innermost running step: {owner, label, deadline, aborting, parent}
-- Owner of the coroutine running now. Kept in a variable, not derived from
-- coroutine.running(): Python's calls into Lua run on the main thread, not the task's.
local current = nil -- nil between steps
local running_task = nil -- id of the task whose step runs now (nil between steps)
-- Creation fences (see Scheduler.fence): task id -> true while events about objects the
-- task created are held; `creating[id]` marks a step that ended waiting in a creating call.
local fenced, creating = {}, {}

--- The owner of the Lua code running now ("hub" outside any task).
function M.current_owner()
  return current or "hub"
end

--- The owner of the running step, or nil between steps (Python then knows the caller).
function M.running_owner()
  return current
end

function M.set_budget(seconds) py.budget = seconds end

-- Runs inside every task coroutine every HOOK_COUNT instructions. Past the deadline the step
-- is aborted; the flag makes pcall/xpcall/coroutine.resume rethrow so the abort cannot be
-- swallowed by the plugin's own error handling.
local function hook()
  local f = frame
  if f and clock() > f.deadline then
    f.aborting = true
    error(string.format("%s exceeded its CPU budget of %g s (%s)", f.owner, py.budget, f.label), 2)
  end
end

local function new_coroutine(fn, owner)
  local co = co_create(fn)
  sethook(co, hook, "", HOOK_COUNT)
  owner_of[co] = owner
  return co
end

-- Resumes `co` as one step with its own budget; nested steps don't count against the parent.
local function run_step(co, owner, label, ...)
  local parent = frame
  local f = { owner = owner, label = label, parent = parent, aborting = false, nested = 0 }
  local c0, t0 = clock(), now()
  f.deadline = c0 + py.budget
  frame = f
  local was = current
  current = owner
  local r = pack(co_resume(co, ...))
  current = was
  frame = parent
  local elapsed = now() - t0
  if parent then
    parent.deadline = parent.deadline + (clock() - c0)
    parent.nested = parent.nested + elapsed
  end
  local own = elapsed - f.nested -- nested steps report for themselves
  if own > py.slow_s then py.on_slow(owner, label, own * 1000) end
  return r
end

local settle_status

local function release_fence(id, status)
  if not fenced[id] then return end
  -- A wait inside a creating primitive (pty.spawn) counts as part of the step that called
  -- it, as if the call had returned at once; any other wait or the end releases the fence.
  if status == "await" and creating[id] then
    creating[id] = nil
    return
  end
  fenced[id], creating[id] = nil, nil
  py.on_release(id)
end

--- Marks the running task as waiting in a creating call; returns its id (nil outside tasks).
function M.fence_current()
  local id = running_task
  if id then fenced[id], creating[id] = true, true end
  return id
end

local function settle(t, r)
  local status = settle_status(t, r)
  release_fence(t.id, status)
  return status
end

settle_status = function(t, r)
  if not r[1] then
    tasks[t.id] = nil
    py.on_error(t.owner, t.label, traceback(t.co, tostring(r[2])))
    return "error"
  end
  if co_status(t.co) == "dead" then
    tasks[t.id] = nil
    return "done"
  end
  if r[2] == AWAIT then
    py.on_await(t.id, t.owner, r[3])
    return "await"
  end
  py.on_yield(t.id, t.owner)
  return "yield"
end

--- Starts fn(...) as a new task owned by `owner`; runs it until it first waits or ends.
--- Returns the status ("done", "await", "yield" or "error") and the task id.
function M.start(owner, label, fn, ...)
  next_id = next_id + 1
  local t = { id = next_id, co = new_coroutine(fn, owner), owner = owner, label = label }
  tasks[t.id] = t
  local was = running_task
  running_task = t.id
  local r = run_step(t.co, owner, label, ...)
  running_task = was
  return settle(t, r), t.id
end

--- Resumes a suspended task with the values it waited for. Returns its new status.
function M.step(id, ...)
  local t = tasks[id]
  if not t then return "gone" end
  local was = running_task
  running_task = t.id
  local r = run_step(t.co, t.owner, t.label, ...)
  running_task = was
  return settle(t, r)
end

--- Forgets a suspended task (its owner was unloaded); it is never resumed.
function M.drop(id)
  tasks[id] = nil
  release_fence(id, "gone")
end

--- Runs fn(...) inside the current task but as `owner`, with its own budget, passing any
--- wait up to the enclosing task. Returns true, results... or false, message-with-traceback.
function M.call_as(owner, label, fn, ...)
  local co = new_coroutine(fn, owner)
  local r = run_step(co, owner, label, ...)
  while true do
    if not r[1] then return false, traceback(co, tostring(r[2])) end
    if co_status(co) == "dead" then return true, unpack(r, 2, r.n) end
    if not co_isyieldable() then
      return false, label .. ": cannot wait here (not inside a hub task)"
    end
    local back = pack(co_yield(unpack(r, 2, r.n)))
    r = run_step(co, owner, label, unpack(back, 1, back.n))
  end
end

--- Suspends the calling task until the Python awaitable is done; returns its results.
function M.await(awaitable)
  return co_yield(AWAIT, awaitable)
end

--- Argument check for Lua-written primitives, with the same message shape as Python ones:
--- "events.on: event: expected string, got nil". Raises at the primitive's caller.
function M.check(fname, arg, value, expected, optional)
  local t = type(value)
  if t == expected or (optional and value == nil) then return value end
  error(string.format("%s: %s: expected %s, got %s", fname, arg, expected, t), 3)
end

-- Shims that make Python functions behave like Lua ones: a RAISE first value becomes a Lua
-- error at the caller's line, and an awaitable suspends only the calling task.
function M.bind_sync(pyfn)
  return function(...)
    local r = pack(pyfn(...))
    if r[1] == RAISE then error(r[2], 2) end
    return unpack(r, 1, r.n)
  end
end

function M.bind_async(name, pyfn)
  return function(...)
    if not co_isyieldable() then
      error(name .. ": cannot wait here (not inside a hub task)", 2)
    end
    local r = pack(pyfn(...))
    if r[1] == RAISE then error(r[2], 2) end
    r = pack(co_yield(AWAIT, r[1]))
    if r[1] == RAISE then error(r[2], 2) end
    return unpack(r, 1, r.n)
  end
end

-- Plugins keep the standard coroutine and pcall API; these versions add what the hub needs:
-- new coroutines inherit the creator's owner and budget hook, a wait inside a plugin's own
-- coroutine is passed up to the task, and a budget abort cannot be caught.
local function rethrow_abort(ok, ...)
  if not ok and frame and frame.aborting then error((...), 0) end
  return ok, ...
end

function pcall(f, ...) return rethrow_abort(raw_pcall(f, ...)) end
function xpcall(f, handler, ...) return rethrow_abort(raw_xpcall(f, handler, ...)) end

function coroutine.create(fn)
  return new_coroutine(fn, M.current_owner())
end

local function resume_as_owner(co, ...)
  local was = current
  current = owner_of[co] or was
  local r = pack(co_resume(co, ...))
  current = was
  return r
end

function coroutine.resume(co, ...)
  local r = resume_as_owner(co, ...)
  while r[1] and r[2] == AWAIT and co_status(co) == "suspended" do
    if not co_isyieldable() then break end
    local back = pack(co_yield(AWAIT, r[3]))
    r = resume_as_owner(co, unpack(back, 1, back.n))
  end
  return rethrow_abort(unpack(r, 1, r.n))
end

function coroutine.wrap(fn)
  local co = coroutine.create(fn)
  return function(...)
    local r = pack(coroutine.resume(co, ...))
    if not r[1] then error(r[2], 0) end
    return unpack(r, 2, r.n)
  end
end

return M
