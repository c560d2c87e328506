"""Runaway Lua is cut, not waited for: CPU budget, memory cap, slow steps, errors."""

from __future__ import annotations

import signal


async def test_infinite_loop_is_cut_while_another_plugins_timer_keeps_firing(hub):
    proc = await hub(
        plugins={
            "ticker": """
                local n = 0
                timer.every(0.01, function()
                  n = n + 1
                  if n == 50 then log.info("RESULT ticks 50") end
                end)
            """,
            "spin": """
                timer.after(0.05, function()
                  log.info("RESULT spinning true")
                  while true do end
                end)
            """,
        },
        config={"lua_step_budget": 0.3, "lua_slow_step_ms": 50},
    )
    proc.expect_log(
        r"\[spin\] error in timer timer_\d+: .*init.lua:4: spin exceeded its CPU budget of 0.3 s"
    )
    proc.expect_log(r"slow Lua step: timer timer_\d+ took")
    assert await proc.result("spinning") is True
    await proc.wait_for(r"ERROR .*\[spin\] error in timer .*exceeded its CPU budget")
    assert await proc.result("ticks") == 50


async def test_budget_abort_cannot_be_swallowed_by_pcall(hub):
    proc = await hub(
        plugins={
            "sneaky": """
                timer.after(0, function()
                  local caught = 0
                  while true do
                    local ok = pcall(function() while true do end end)
                    caught = caught + 1
                    local ok2 = xpcall(function() while true do end end, debug.traceback)
                    local co = coroutine.create(function() while true do end end)
                    coroutine.resume(co)
                    log.info("RESULT escaped " .. caught)
                  end
                end)
                timer.after(0.5, function() log.info("RESULT alive true") end)
            """,
        },
        config={"lua_step_budget": 0.2},
    )
    proc.expect_log(r"\[sneaky\] error in timer .*exceeded its CPU budget")
    proc.expect_log(r"slow Lua step")
    assert await proc.result("alive") is True
    assert "RESULT escaped" not in proc.log


async def test_loop_at_load_time_fails_that_plugin_only(hub):
    proc = await hub(
        plugins={"aaa_spin": "while true do end", "bbb_fine": "log.info('RESULT fine true')"},
        config={"lua_step_budget": 0.2},
    )
    proc.expect_log(r"plugin 'aaa_spin' failed to load: .*exceeded its CPU budget")
    proc.expect_log(r"slow Lua step: load")
    assert await proc.result("fine") is True
    await proc.wait_for(r"hub ready: 1 plugin loaded, 1 failed")


async def test_memory_bomb_is_stopped_and_hub_recovers(hub):
    proc = await hub(
        plugins={
            "bomb": """
                timer.after(0, function()
                  local t = {}
                  for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
                end)
            """,
            "after": """
                timer.after(0.3, function()
                  local t = {}
                  for i = 1, 1000 do t[i] = string.rep("y", 1024) end
                  log.info("RESULT allocated " .. #t)
                end)
            """,
        },
        config={"lua_memory_limit_mb": 64, "lua_step_budget": 5},
    )
    proc.expect_log(r"\[bomb\] error in timer .*not enough memory")
    proc.expect_log(r"slow Lua step")
    await proc.wait_for(r"\[bomb\] error in timer .*not enough memory")
    assert await proc.result("allocated") == 1000


# Each bomb fills the Lua state to the cap with strings of another size, so what room is left
# when it fails differs; with little enough left, the hub's own glue around the step (after
# the plugin's coroutine failed, the cap still on) used to fail too: that escaped to Python
# with the cap in force and the dead task (and all it held) still referenced, and every later
# task start failed with LuaMemoryError.
BOMBS = """
local sizes, i = {}, 0
for s = 1, 1200, 37 do sizes[#sizes + 1] = s end
local function next_bomb()
  i = i + 1
  if i > #sizes then
    local t = {}
    for k = 1, 1000 do t[k] = string.rep("y", 1024) end
    log.info("RESULT survived " .. #t)
    return
  end
  timer.after(0, next_bomb) -- scheduled before this task runs out of memory
  local t = {}
  for k = 1, 1e9 do t[k] = string.rep("x", sizes[i]) .. k end
end
timer.after(0, next_bomb)
"""


async def test_memory_bombs_of_any_size_leave_the_other_tasks_running(hub):
    proc = await hub(
        plugins={
            "bombs": BOMBS,
            "later": "timer.after(0, function() log.info('RESULT later true') end)",
        },
        config={"lua_memory_limit_mb": 16, "lua_step_budget": 5},
    )
    proc.expect_log(r"\[bombs\] error in timer .*not enough memory")
    proc.expect_log(r"slow Lua step")
    assert await proc.result("survived", timeout=60) == 1000
    assert await proc.result("later") is True
    await proc.wait_ready()
    assert not [
        line for line in proc.lines if "could not start" in line or "failed; task dropped" in line
    ]


async def test_error_is_logged_with_plugin_traceback_and_hub_carries_on(hub):
    proc = await hub(
        plugins={
            "broken": """
            local function inner() error("kaboom") end
            timer.after(0, function() inner() end)
            timer.after(0.05, function() log.info("RESULT still true") end)
        """,
        }
    )
    proc.expect_log(r"\[broken\] error in timer")
    m = await proc.wait_for(r"\[broken\] error in timer timer_\d+: .*init.lua:2: kaboom")
    assert m
    idx = proc.lines.index(m.string)
    assert "stack traceback:" in proc.lines[idx + 1]
    assert "in upvalue 'inner'" in "\n".join(
        proc.lines[idx : idx + 6]
    ) or "in local 'inner'" in "\n".join(proc.lines[idx : idx + 6])
    assert await proc.result("still") is True


async def test_slow_step_is_logged_with_plugin_and_callback(hub):
    proc = await hub(
        config={"lua_slow_step_ms": 50},
        plugins={
            "slowpoke": """
            timer.after(0, function()
              local t0 = os.clock()
              while os.clock() - t0 < 0.08 do end
              log.info("RESULT done true")
            end)
        """,
        },
    )
    proc.expect_log(r"\[slowpoke\] slow Lua step: timer timer_\d+ took \d+ ms")
    assert await proc.result("done") is True
    await proc.wait_for(r"WARNING .*\[slowpoke\] slow Lua step: timer timer_\d+ took \d+ ms")
    proc.signal(signal.SIGTERM)
