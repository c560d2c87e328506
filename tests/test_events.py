"""The `events` bus, end to end: order, counts, isolation of failing listeners, removal.

Plugins load in name order, so `ev_a` subscribes before `ev_b`. Emits carry a shared table that
each listener appends to; listeners run as their own tasks but synchronously up to their first
wait, so the order is visible as soon as `events.emit` returns.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_plugin
from tests.lua_prelude import PRELUDE

EV_A = (
    PRELUDE
    + r"""
events.on("order", function(seen) seen[#seen + 1] = "a1" end)
events.on("boom", function() error("listener a exploded") end)
events.on("hub_ready", function(data)
  report("ready_a", data)
end)
"""
)

EV_B = (
    PRELUDE
    + r"""
events.on("order", function(seen) seen[#seen + 1] = "b1" end)
events.on("order", function(seen) seen[#seen + 1] = "b2" end)
events.on("boom", function(seen) seen[#seen + 1] = "after boom" end)

events.on("hub_ready", function()
  -- Registration order across plugins: a (loaded first), then b's two, in order.
  local seen = {}
  local n = events.emit("order", seen)
  report("order", {n = n, seen = seen})

  -- An erroring listener is logged with its plugin; the next one still runs.
  local after = {}
  report("boom", {n = events.emit("boom", after), after = after})

  -- Nobody listens: 0, and the data is not touched.
  report("nobody", {n = events.emit("nobody_listens", {}), has = events.has("nobody_listens")})
  report("has", {order = events.has("order"), ready = events.has("hub_ready")})

  -- off() during dispatch: a later listener removed by an earlier one does not run and is
  -- not counted; a listener added during dispatch waits for the next emit.
  local calls, later_id = {}, nil
  events.on("dispatch", function()
    calls[#calls + 1] = "first"
    report("off_inside", events.off(later_id))
    events.on("dispatch", function() calls[#calls + 1] = "added" end)
  end)
  later_id = events.on("dispatch", function() calls[#calls + 1] = "removed" end)
  local n1 = events.emit("dispatch")
  local first_round = table.concat(calls, ",")
  calls = {}
  local n2 = events.emit("dispatch")
  report("dispatch", {n1 = n1, first = first_round, n2 = n2, second = table.concat(calls, ",")})

  -- off returns true once, then false; unknown ids are false too.
  local id = events.on("once", function() end)
  report("off", {events.off(id), events.off(id), events.off("evt_999999"),
                 events.has("once")})

  -- A listener that waits does not hold up the next one.
  local steps = {}
  events.on("waits", function()
    steps[#steps + 1] = "slow start"
    coroutine.yield()
    steps[#steps + 1] = "slow end"
    report("waits", steps)
  end)
  events.on("waits", function() steps[#steps + 1] = "fast" end)
  events.emit("waits")

  -- Listeners get exactly the data emitted (the same table, or nothing).
  local payload = {k = "v"}
  events.on("data", function(d, extra) report("data", {same = d == payload, extra = extra}) end)
  events.emit("data", payload, "ignored")
  events.on("nodata", function(d) report("nodata", d == nil) end)
  events.emit("nodata")

  report("errors", {
    on_nil = raised(function() local v = events.on(nil, print); return v end),
    on_fn = raised(function() local v = events.on("x", 5); return v end),
    emit_nil = raised(function() local v = events.emit(nil); return v end),
    emit_num = raised(function() local v = events.emit(5, {}); return v end),
    off_num = raised(function() local v = events.off(5); return v end),
    has_nil = raised(function() local v = events.has(nil); return v end),
    wrong_door = raised(function() local v = events.subscribe; return v end),
  })
end)
"""
)


async def test_events_order_counts_failures_and_removal(hub):
    proc = await hub(plugins={"ev_a": EV_A, "ev_b": EV_B})
    proc.expect_log(r"ERROR plugin \[ev_a\] error in event 'boom': .*listener a exploded")

    ready = await proc.result("ready_a")
    assert ready == {"plugins_loaded": 2, "plugins_failed": 0}

    assert await proc.result("order") == {"n": 3, "seen": ["a1", "b1", "b2"]}
    assert await proc.result("boom") == {"n": 2, "after": ["after boom"]}
    await proc.wait_for(r"ERROR plugin \[ev_a\] error in event 'boom': .*listener a exploded")
    assert await proc.result("nobody") == {"n": 0, "has": False}
    assert await proc.result("has") == {"order": True, "ready": True}

    assert await proc.result("off_inside") is True
    assert await proc.result("dispatch") == {
        "n1": 1,
        "first": "first",
        "n2": 2,
        "second": "first,added",
    }
    assert await proc.result("off") == [True, False, False, False]
    assert await proc.result("waits") == ["slow start", "fast", "slow end"]
    assert await proc.result("data") == {"same": True}
    assert await proc.result("nodata") is True

    errors = await proc.result("errors")
    assert errors["on_nil"].endswith("events.on: event: expected string, got nil")
    assert errors["on_fn"].endswith("events.on: fn: expected function, got number")
    assert errors["emit_nil"].endswith("events.emit: event: expected string, got nil")
    assert errors["emit_num"].endswith("events.emit: event: expected string, got number")
    assert errors["off_num"].endswith("events.off: id: expected string, got number")
    assert errors["has_nil"].endswith("events.has: event: expected string, got nil")
    assert errors["wrong_door"].endswith(
        "events.subscribe does not exist; use events.on(event, fn)"
    )
    for key, msg in errors.items():
        assert "ev_b/init.lua:" in msg, (key, msg)  # raised at the plugin's own line


async def test_listeners_belong_to_their_plugin_across_reload(hub, git_repo: Path):
    listener = 'events.on("ping", function(d) d[#d + 1] = "{version}" end)\n'
    proc = await hub(
        plugins={
            "ev_owner": PRELUDE + listener.format(version="v1"),
            "ev_other": PRELUDE
            + r"""
            events.on("ping", function(d) d[#d + 1] = "other" end)
            """,
        }
    )
    mark = proc.mark()
    write_plugin(git_repo, "ev_owner", PRELUDE + listener.format(version="v2"))
    await proc.wait_for(r"plugin 'ev_owner' reloaded", since=mark)
    # The reloaded plugin's new listener replaced its old one; the other plugin's stays.
    write_plugin(
        git_repo,
        "ev_probe",
        PRELUDE
        + r"""
        local seen = {}
        report("after_reload", {n = events.emit("ping", seen), seen = seen})
        """,
    )
    assert await proc.result("after_reload", since=mark) == {
        "n": 2,
        "seen": ["other", "v2"],
    }
