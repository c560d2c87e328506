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
--   py.on_enter(owner)               optional: a step of `owner` starts ("" when the outermost
--                                    one ends); the supervisor learns who wedged or crashed it
--   py.on_release(id)                a fenced task ran on past its creating calls
--   py.budget, py.slow_s             seconds
--   py.mem_enforce(), py.mem_lift()  put the Lua memory cap in force / lift it (see below)
--   py.mem_soft_kb                   below this much Lua memory, calls skip the switch
--
-- Memory: lupa's allocator fails at the cap, and an allocation that fails while Python is
-- pushing values into Lua (outside any protected call) aborts the process (Lua's PANIC). So
-- the cap is in force only while plugin code runs inside a step; Python, and the hub's glue
-- between steps, run with it lifted, and Python checks sizes before it converts (convert.py).

local py = ...

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_isyieldable = coroutine.status, coroutine.isyieldable
local raw_pcall, raw_xpcall = pcall, xpcall
local pack, unpack = table.pack, table.unpack
local sethook, traceback = debug.sethook, debug.traceback
local clock = os.clock
local now = py.now
local mem_enforce, mem_lift = py.mem_enforce, py.mem_lift
local enforced = false -- whether the memory cap is in force now
local function set_cap(on)
  if on ~= enforced then
    enforced = on
    if on then mem_enforce() else mem_lift() end
  end
end
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

local function restore_cap(was, ...)
  set_cap(was)
  return ...
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
  -- The supervisor's watchdog learns who runs (a call into Python: outside the cap).
  local on_enter = py.on_enter
  if on_enter then on_enter(owner) end
  local was_enforced = enforced
  set_cap(true)
  -- The cap goes back before `pack` allocates: an allocation failing out here would escape
  -- to Python with the cap still in force.
  local r = pack(restore_cap(was_enforced, co_resume(co, ...)))
  current = was
  frame = parent
  if on_enter then on_enter(parent and parent.owner or "") end
  local elapsed = now() - t0
  if parent then
    parent.deadline = parent.deadline + (clock() - c0)
    parent.nested = parent.nested + elapsed
  end
  local own = elapsed - f.nested -- nested steps report for themselves
  if own > py.slow_s then py.on_slow(owner, label, own * 1000) end
  return r
end

-- An error value as text without running its __tostring: that would be plugin code run
-- here, outside any step and its budget.
local function error_text(e)
  local te = type(e)
  if te == "string" or te == "number" then return tostring(e) end
  if te == "nil" or te == "boolean" then return "error " .. tostring(e) end
  return "(error object is a " .. te .. " value)"
end
M.error_text = error_text

-- The hub's glue around a step (run_step, after co_resume returns) runs with the cap still in
-- force until restore_cap; when a plugin has filled memory to the cap, the glue's own small
-- allocations (the main thread's stack and call frames, which a GC cycle may have shrunk) can
-- fail there. Such a fault is the task's: it is caught, the task is dropped and its coroutine
-- unreferenced before anything else allocates (so an emergency collection can free what
-- the plugin held), the cap and step state go back to what they were, and it is reported as the
-- task's error. Nothing escapes to Python with the cap in force or the garbage pinned.
local function guarded_step(t, ...)
  local parent, was, was_enforced = frame, current, enforced
  local ok, r = raw_pcall(run_step, t.co, t.owner, t.label, ...)
  if ok then return r end
  -- Assigning to existing keys allocates nothing; the next allocation that fails runs an
  -- emergency collection, which can now free the task's coroutine and all it held.
  tasks[t.id] = nil
  t.co = nil
  frame, current = parent, was
  enforced = true -- whether restore_cap ran is unknown: force the switch
  set_cap(was_enforced)
  local on_enter = py.on_enter
  if on_enter then on_enter(parent and parent.owner or "") end
  t.fault = error_text(r)
  return false
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
  if r == false then
    py.on_error(t.owner, t.label, t.fault .. " (in the hub's glue around the step; task dropped)")
    return "error"
  end
  if not r[1] then
    tasks[t.id] = nil
    py.on_error(t.owner, t.label, traceback(t.co, error_text(r[2])))
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
-- The task being started or stepped from outside, for M.fault_reset. Its fields `outer`,
-- `outer_frame`, `outer_current` exist from creation (false) so setting them allocates nothing.
local in_flight = false

local function enter(t)
  t.outer, t.outer_frame, t.outer_current = in_flight, frame or false, current or false
  in_flight = t
end

local function leave(t, ...)
  in_flight = t.outer
  return ...
end

function M.start(owner, label, fn, ...)
  next_id = next_id + 1
  local t = {
    id = next_id, co = new_coroutine(fn, owner), owner = owner, label = label,
    outer = false, outer_frame = false, outer_current = false,
  }
  tasks[t.id] = t
  enter(t)
  local was = running_task
  running_task = t.id
  local r = guarded_step(t, ...)
  running_task = was
  return leave(t, settle(t, r), t.id)
end

--- Resumes a suspended task with the values it waited for. Returns its new status.
function M.step(id, ...)
  local t = tasks[id]
  if not t then return "gone" end
  enter(t)
  local was = running_task
  running_task = t.id
  local r = guarded_step(t, ...)
  running_task = was
  return leave(t, settle(t, r))
end

-- Python's entries (scheduler.py). `token` tells Python, after a fault at the entry, whether
-- the call got as far as starting the task (see M.fault_reset).
local last_token = nil
function M.start_py(token, ...)
  last_token = token
  return M.start(...)
end

--- After a fault escaped to Python (which has lifted the cap itself): the cap is off, the
--- task that was in flight is dropped (it and what it holds become garbage) and the step
--- state is the one outside it. Says which start_py token ran last and whether task `id`
--- is still suspended here.
function M.fault_reset(id)
  enforced = false
  running_task = nil -- the step it named is gone
  local t = in_flight
  if t then
    tasks[t.id] = nil
    t.co = nil
    in_flight, frame, current = t.outer, t.outer_frame or nil, t.outer_current or nil
    release_fence(t.id, "gone")
  end
  return last_token, id ~= nil and tasks[id] ~= nil
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
    if not r[1] then return false, traceback(co, error_text(r[2])) end
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
--
-- The memory cap is lifted around the Python call: lupa converts arguments and results
-- outside Lua's protection, where a failed allocation would abort the process.
-- Far below the cap (under py.mem_soft_kb) nothing lupa pushes can reach it (values are
-- measured before conversion), so the common call skips the two switches.
local gc_count, soft_kb = collectgarbage, py.mem_soft_kb
local function call_py(pyfn, ...)
  if not enforced or gc_count("count") < soft_kb then return pack(true, pyfn(...)) end
  local was_enforced = enforced
  set_cap(false)
  local r = pack(raw_pcall(pyfn, ...))
  set_cap(was_enforced)
  return r
end

function M.bind_sync(pyfn)
  return function(...)
    local r = call_py(pyfn, ...)
    if not r[1] then error(r[2], 0) end
    if r[2] == RAISE then error(r[3], 2) end
    return unpack(r, 2, r.n)
  end
end

function M.bind_async(name, pyfn)
  return function(...)
    if not co_isyieldable() then
      error(name .. ": cannot wait here (not inside a hub task)", 2)
    end
    local r = call_py(pyfn, ...)
    if not r[1] then error(r[2], 0) end
    if r[2] == RAISE then error(r[3], 2) end
    r = pack(unpack(r, 2, r.n))
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
-- The plugin's message handler runs under the step's budget like any code; once the step is
-- being aborted it is not called again, so a handler that loops (or errors) cannot hold the
-- abort up.
function xpcall(f, handler, ...)
  return rethrow_abort(raw_xpcall(f, function(e)
    if frame and frame.aborting then return e end
    return handler(e)
  end, ...))
end

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
