"""The `timer` primitive, end to end: after, every, cancel, and what they refuse.

Timing is asserted through order and counts, never elapsed time. To prove a timer did *not*
fire again, a later one-shot timer acts as the flush marker: by the time it fires, every tick
due before it has had its turn.
"""

from __future__ import annotations

from tests.lua_prelude import PRELUDE

TIMERS = (
    PRELUDE
    + r"""
-- after(0) runs on a later loop turn: after the code that scheduled it has finished.
local seq = {}
timer.after(0, function()
  seq[#seq + 1] = "timer"
  report("after_zero", seq)
end)
seq[#seq + 1] = "sync"
seq[#seq + 1] = "still sync"

-- One-shots fire in due order, whatever the order they were created in.
local fired = {}
local function mark(name) return function() fired[#fired + 1] = name end end
timer.after(0.03, mark("c"))
timer.after(0.01, mark("a"))
timer.after(0.02, mark("b"))
local dropped = timer.after(0.015, mark("cancelled"))
report("cancel_live", {timer.cancel(dropped), timer.cancel(dropped)})
timer.after(0.05, function() report("after_order", fired) end)

-- every: cancelled from inside its own callback on the third tick; then never again.
local ticks, every_id = 0, nil
every_id = timer.every(0.01, function()
  ticks = ticks + 1
  if ticks == 3 then
    report("cancel_inside", {timer.cancel(every_id), timer.cancel(every_id)})
    -- Flush: due five intervals after the cancel, so any further tick would come first.
    timer.after(0.05, function() report("every_ticks", ticks) end)
  end
end)

-- A one-shot cannot be cancelled once it fired, nor from inside its own callback.
local shot
shot = timer.after(0, function()
  local inside = timer.cancel(shot)
  timer.after(0, function()
    report("fired_cancel", {inside = inside, later = timer.cancel(shot)})
  end)
end)

report("ids", {type(every_id), every_id ~= shot, timer.cancel("timer_999999")})

report("errors", {
  negative = raised(function() local v = timer.after(-1, print); return v end),
  nan = raised(function() local v = timer.after(0/0, print); return v end),
  inf = raised(function() local v = timer.after(math.huge, print); return v end),
  every_zero = raised(function() local v = timer.every(0, print); return v end),
  every_negative = raised(function() local v = timer.every(-0.5, print); return v end),
  string_seconds = raised(function() local v = timer.after("1", print); return v end),
  no_fn = raised(function() local v = timer.after(1); return v end),
  fn_table = raised(function() local v = timer.every(1, {}); return v end),
  cancel_nil = raised(function() local v = timer.cancel(); return v end),
  wrong_door = raised(function() local v = timer.set_timeout; return v end),
})
"""
)

# every() never runs a callback twice at once: each callback here spans several intervals
# (it yields, busy, until 30 ms of CPU time passed), so without the guard ticks would overlap.
NO_PILE_UP = (
    PRELUDE
    + r"""
local running, overlaps, starts, id = false, 0, 0, nil
id = timer.every(0.005, function()
  if running then overlaps = overlaps + 1 end
  running = true
  starts = starts + 1
  local t0, turns = os.clock(), 0
  repeat
    coroutine.yield()
    turns = turns + 1
  until os.clock() - t0 > 0.03
  running = false
  if starts == 4 then
    timer.cancel(id)
    report("pile_up", {overlaps = overlaps, starts = starts, many_turns = turns > 1})
  end
end)
"""
)


async def test_after_every_cancel_and_errors(hub):
    proc = await hub(plugins={"tm": TIMERS, "tm_pile": NO_PILE_UP})
    assert await proc.result("after_zero") == ["sync", "still sync", "timer"]
    assert await proc.result("cancel_live") == [True, False]
    assert await proc.result("ids") == ["string", True, False]
    assert await proc.result("fired_cancel") == {"inside": False, "later": False}
    assert await proc.result("cancel_inside") == [True, False]
    assert await proc.result("after_order") == ["a", "b", "c"]
    # The flush timer is due five intervals after the cancel: still exactly three ticks.
    assert await proc.result("every_ticks") == 3

    errors = await proc.result("errors")
    assert errors["negative"].endswith(
        "timer.after: seconds: expected a non-negative number, got -1"
    )
    assert errors["nan"].endswith("timer.after: seconds: expected a non-negative number, got nan")
    assert errors["inf"].endswith("timer.after: seconds: expected a non-negative number, got inf")
    assert errors["every_zero"].endswith("timer.every: seconds: expected a positive number, got 0")
    assert errors["every_negative"].endswith(
        "timer.every: seconds: expected a positive number, got -0.5"
    )
    assert errors["string_seconds"].endswith("timer.after: seconds: expected number, got string")
    assert errors["no_fn"].endswith("timer.after: fn: expected function, got nil")
    assert errors["fn_table"].endswith("timer.every: fn: expected function, got table")
    assert errors["cancel_nil"].endswith("timer.cancel: id: expected string, got nil")
    assert errors["wrong_door"].endswith(
        "timer.set_timeout does not exist; use timer.after(seconds, fn)"
    )
    for key, msg in errors.items():
        assert "tm/init.lua:" in msg, (key, msg)  # raised at the plugin's own line

    assert await proc.result("pile_up") == {"overlaps": 0, "starts": 4, "many_turns": True}


async def test_timer_callbacks_run_as_their_plugin_and_errors_are_contained(hub):
    proc = await hub(
        plugins={
            "tm_owner": PRELUDE
            + r"""
            timer.after(0, function() error("timer callback failed") end)
            local n, id = 0, nil
            -- A failing tick does not stop the repeating timer.
            id = timer.every(0.005, function()
              n = n + 1
              if n == 1 then error("first tick failed") end
              if n == 3 then
                timer.cancel(id)
                log.info("tagged from a timer")
                report("survived", n)
              end
            end)
            """
        }
    )
    proc.expect_log(r"ERROR plugin \[tm_owner\] error in timer timer_\d+: .*timer callback failed")
    proc.expect_log(r"ERROR plugin \[tm_owner\] error in timer timer_\d+: .*first tick failed")
    assert await proc.result("survived") == 3
    await proc.wait_for(r"INFO\s+plugin \[tm_owner\] tagged from a timer")
    await proc.wait_for(r"ERROR plugin \[tm_owner\] error in timer timer_\d+: .*callback failed")
