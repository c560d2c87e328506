"""`hub.hooks`, `hub.state` and the `hub` primitive, end to end.

Observers and interceptors from several plugins share one hub; hot reload is driven by
rewriting a plugin's file and waiting for the loader's "reloaded" line.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tests.conftest import write_plugin

PRELUDE = r"""
local function report(tag, value) log.info("RESULT " .. tag .. " " .. json.encode(value)) end
local function raised(fn)
  local ok, err = pcall(fn)
  if ok then return "no error" end
  return tostring(err)
end
local H = hub.hooks
"""

# Loaded first (name order): its hooks are registered before hk_b's.
HK_A = (
    PRELUDE
    + r"""
H.on("seen", "a_default", function(log_) log_[#log_ + 1] = "a_default" end)
H.on("seen", "a_low", function(log_) log_[#log_ + 1] = "a_low" end, {priority = 10})
H.on("seen", "a_failing", function() error("observer a failed") end, {priority = 300})
H.intercept("shape", "a_double", function(n, s) return n * 2, s .. "a" end, {priority = 50})
H.intercept("shape", "a_broken", function() error("interceptor a broke") end, {priority = 60})
"""
)

HK_B = (
    PRELUDE
    + r"""
H.on("seen", "b_high", function(log_) log_[#log_ + 1] = "b_high" end, {priority = 200})
H.on("seen", "b_default", function(log_) log_[#log_ + 1] = "b_default" end)
H.intercept("shape", "b_plus", function(n, s) return n + 1, s .. "b" end, {priority = 70})

events.on("hub_ready", function()
  -- Observers: priority descending, then registration order (a's before b's); a failing
  -- observer is logged and the rest still run. The count includes every observer started.
  local seen = {}
  report("notify", {n = H.notify("seen", seen), seen = seen})

  -- Interceptors run in priority order, each transforming what the previous returned;
  -- one that errors is skipped (the value carries on).
  report("call", {H.call("shape", 5, "")})
  local same = table.pack(H.call("nobody", 1, nil, "x"))
  report("no_interceptors", {n = same.n, first = same[1], second = same[2], third = same[3]})

  -- Returning nil blocks: the call returns nil and later interceptors don't run.
  local later_ran = false
  H.intercept("gate", "first", function(v) if v == "stop" then return nil end return v end,
    {priority = 2})
  H.intercept("gate", "second", function(v) later_ran = true; return v .. "!" end,
    {priority = 1})
  local blocked = table.pack(H.call("gate", "stop"))
  report("block", {n = blocked.n, value = blocked[1], later_ran = later_ran,
                   passed = H.call("gate", "go")})

  -- A hook removed or disabled by an earlier one of the same notify/call does not run.
  local ran = {}
  H.on("cut", "first", function()
    ran[#ran + 1] = "first"
    H.off("cut", "second")
    H.disable("cut", "third")
  end, {priority = 3})
  H.on("cut", "second", function() ran[#ran + 1] = "second" end, {priority = 2})
  H.on("cut", "third", function() ran[#ran + 1] = "third" end, {priority = 1})
  report("cut", {n = H.notify("cut"), ran = ran})
  H.intercept("cut_call", "first", function(v)
    H.unintercept("cut_call", "second")
    return v .. "1"
  end, {priority = 2})
  H.intercept("cut_call", "second", function(v) return v .. "2" end, {priority = 1})
  report("cut_call", H.call("cut_call", "v"))

  -- disable / enable, has_observers / has_interceptors
  local r = {}
  r.has_before = {H.has_observers("seen"), H.has_interceptors("shape"),
                  H.has_observers("shape"), H.has_interceptors("seen")}
  r.disable = {H.disable("seen", "b_high"), H.disable("seen", "nope")}
  local s2 = {}
  H.notify("seen", s2)
  r.while_disabled = s2
  r.enable = H.enable("seen", "b_high")
  H.on("quiet", "off_at_start", function() end, {enabled = false})
  r.disabled_at_registration = H.has_observers("quiet")
  H.enable("quiet", "off_at_start")
  r.enabled_later = H.has_observers("quiet")
  H.disable("gate", "first"); H.disable("gate", "second")
  r.no_enabled_interceptors = {H.has_interceptors("gate"), H.call("gate", "stop")}
  report("switches", r)

  -- Re-registering a name replaces the hook (no duplicate), taking a new place in order.
  H.on("seen", "a_default", function(log_) log_[#log_ + 1] = "a_default v2" end)
  local s3 = {}
  report("replace", {n = H.notify("seen", s3), seen = s3})

  -- off / unintercept
  report("off", {H.off("seen", "b_default"), H.off("seen", "b_default"),
                 H.unintercept("shape", "b_plus"), H.unintercept("shape", "b_plus"),
                 H.off("never", "x")})

  -- Observers get every argument, nils included, each in its own task.
  H.on("args", "b_args", function(...)
    local a = table.pack(...)
    report("observer_args", {n = a.n, first = a[1], second = a[2], third = a[3]})
  end)
  H.notify("args", 1, nil, "three")

  -- list(event): kind, name, priority, enabled, owner
  report("list", H.list("shape"))
  report("list_empty", json.encode(H.list("never")))

  report("errors", {
    on_event = raised(function() H.on(nil, "n", print) end),
    on_name = raised(function() H.on("e", 5, print) end),
    on_fn = raised(function() H.on("e", "n", "f") end),
    on_opts = raised(function() H.on("e", "n", print, 5) end),
    on_key = raised(function() H.on("e", "n", print, {prio = 1}) end),
    on_priority = raised(function() H.on("e", "n", print, {priority = "high"}) end),
    on_enabled = raised(function() H.on("e", "n", print, {enabled = 1}) end),
    intercept_fn = raised(function() H.intercept("e", "n") end),
    notify_event = raised(function() H.notify(nil) end),
    call_event = raised(function() H.call(5) end),
    off_name = raised(function() H.off("e") end),
    has_event = raised(function() H.has_observers() end),
    state_get = raised(function() hub.state.get(1) end),
    state_set = raised(function() hub.state.set(nil, 1) end),
    state_clear = raised(function() hub.state.clear() end),
  })
end)
"""
)


async def test_observers_interceptors_switches_and_errors(hub):
    proc = await hub(plugins={"hk_a": HK_A, "hk_b": HK_B})
    proc.expect_log(r"ERROR plugin \[hk_a\] error in hook 'seen' observer 'a_failing': .*a failed")
    proc.expect_log(
        r"ERROR plugin \[hk_b\] interceptor 'a_broken' of 'shape' \(hk_a\) failed: .*a broke"
    )

    assert await proc.result("notify") == {
        "n": 5,
        "seen": ["b_high", "a_default", "b_default", "a_low"],
    }
    await proc.wait_for(r"ERROR plugin \[hk_a\] error in hook 'seen' observer 'a_failing'")
    # b_plus (70): 6, "b"; a_broken (60): skipped; a_double (50): 12, "ba".
    assert await proc.result("call") == [12, "ba"]
    await proc.wait_for(r"interceptor 'a_broken' of 'shape' \(hk_a\) failed")
    assert await proc.result("no_interceptors") == {"n": 3, "first": 1, "third": "x"}
    assert await proc.result("block") == {"n": 1, "later_ran": False, "passed": "go!"}

    assert await proc.result("cut") == {"n": 1, "ran": ["first"]}
    assert await proc.result("cut_call") == "v1"
    assert await proc.result("switches") == {
        "has_before": [True, True, False, False],
        "disable": [True, False],
        "while_disabled": ["a_default", "b_default", "a_low"],
        "enable": True,
        "disabled_at_registration": False,
        "enabled_later": True,
        "no_enabled_interceptors": [False, "stop"],
    }
    assert await proc.result("replace") == {
        "n": 5,
        "seen": ["b_high", "b_default", "a_default v2", "a_low"],
    }
    assert await proc.result("off") == [True, False, True, False, False]
    assert await proc.result("observer_args") == {"n": 3, "first": 1, "third": "three"}
    assert await proc.result("list") == [
        {"kind": "interceptor", "name": "a_broken", "priority": 60, "enabled": True,
         "owner": "hk_a"},
        {"kind": "interceptor", "name": "a_double", "priority": 50, "enabled": True,
         "owner": "hk_a"},
    ]  # fmt: skip
    assert await proc.result("list_empty") == "[]"

    errors = await proc.result("errors")
    expected = {
        "on_event": "hub.hooks.on: event: expected string, got nil",
        "on_name": "hub.hooks.on: name: expected string, got number",
        "on_fn": "hub.hooks.on: fn: expected function, got string",
        "on_opts": "hub.hooks.on: opts: expected table, got number",
        "on_key": "hub.hooks.on: opts: unknown key 'prio' (known: enabled, priority)",
        "on_priority": "hub.hooks.on: opts.priority: expected number, got string",
        "on_enabled": "hub.hooks.on: opts.enabled: expected boolean, got number",
        "intercept_fn": "hub.hooks.intercept: fn: expected function, got nil",
        "notify_event": "hub.hooks.notify: event: expected string, got nil",
        "call_event": "hub.hooks.call: event: expected string, got number",
        "off_name": "hub.hooks.off: name: expected string, got nil",
        "has_event": "hub.hooks.has_observers: event: expected string, got nil",
        "state_get": "hub.state.get: key: expected string, got number",
        "state_set": "hub.state.set: key: expected string, got nil",
        "state_clear": "hub.state.clear: key: expected string, got nil",
    }
    for key, message in expected.items():
        assert errors[key].endswith(message), (key, errors[key])
        assert "hk_b/init.lua:" in errors[key], (key, errors[key])  # the plugin's own line


STATEFUL = (
    PRELUDE
    + r"""
-- hub.state outlives the plugin; the plugin's own locals do not.
local loads = hub.state.get("stateful.loads", 0) + 1
hub.state.set("stateful.loads", loads)
local shared = hub.state.get("stateful.shared", {})
shared[#shared + 1] = "{version}"
H.on("probe", "{version}_observer", function(r) r[#r + 1] = "{version} observer" end)
H.intercept("probe_call", "{version}_interceptor", function(v) return v .. "+{version}" end)
events.on("probe", function(r) r[#r + 1] = "{version} listener" end)
report("loaded_{version}", {
  loads = loads, shared = shared,
  -- Reload released the previous version's hooks before this init ran.
  old_observer_gone = not H.has_observers("old_only"),
})
if "{version}" == "v1" then H.on("old_only", "x", function() end) end
"""
)

PROBE = (
    PRELUDE
    + r"""
local r = json.array({})
H.notify("probe", r)
events.emit("probe", r)
local default_stored = hub.state.get("probe.default", false)
report("probe_{n}", {
  seen = r, call = H.call("probe_call", "x"), old_only = H.has_observers("old_only"),
  keys = hub.state.keys(), loads = hub.state.get("stateful.loads"),
  default_stored = default_stored,
})
"""
)


async def test_reload_replaces_hooks_and_state_survives(hub, git_repo: Path):
    proc = await hub(plugins={"stateful": STATEFUL.replace("{version}", "v1")})
    assert await proc.result("loaded_v1") == {
        "loads": 1,
        "shared": ["v1"],
        "old_observer_gone": True,
    }
    mark = proc.mark()
    write_plugin(git_repo, "stateful", STATEFUL.replace("{version}", "v2"))
    await proc.wait_for(r"plugin 'stateful' reloaded", since=mark)
    assert await proc.result("loaded_v2", since=mark) == {
        "loads": 2,
        "shared": ["v1", "v2"],
        "old_observer_gone": True,
    }
    write_plugin(git_repo, "probe1", PROBE.replace("{n}", "1"))
    probe = await proc.result("probe_1", since=mark)
    assert probe["seen"] == ["v2 observer", "v2 listener"]
    assert probe["call"] == "x+v2"
    assert probe["old_only"] is False
    assert probe["loads"] == 2
    assert probe["default_stored"] is False
    assert {"stateful.loads", "stateful.shared", "probe.default"} <= set(probe["keys"])
    assert probe["keys"] == sorted(probe["keys"])

    # Unloading (the directory is deleted) drops every hook; the state stays.
    mark = proc.mark()
    shutil.rmtree(git_repo / ".botster" / "plugins" / "stateful")
    await proc.wait_for(r"plugin 'stateful' unloaded", since=mark)
    write_plugin(git_repo, "probe2", PROBE.replace("{n}", "2"))
    probe = await proc.result("probe_2", since=mark)
    assert probe["seen"] == []
    assert probe["call"] == "x"
    assert probe["loads"] == 2


async def test_hub_id_and_quit_deliver_shutdown_then_exit_zero(
    hub, git_repo: Path, isolated_env: dict[str, str]
):
    proc = await hub(
        plugins={
            "bye": PRELUDE
            + r"""
            report("hub_id", hub.hub_id())
            report("hub_errors", {
              extra_arg = raised(function() local v = hub.hub_id("x"); return v end),
              wrong_door = raised(function() local v = hub.id; return v end),
            })
            events.on("shutdown", function() log.info("RESULT shutdown_event true") end)
            H.on("shutdown", "bye", function() log.info("RESULT shutdown_hook true") end)
            """,
            "bye2": r"""
            events.on("shutdown", function() log.info("RESULT shutdown_event2 true") end)
            """,
        }
    )
    hub_id = hashlib.sha256(str(git_repo.resolve()).encode()).hexdigest()
    assert await proc.result("hub_id") == hub_id
    errors = await proc.result("hub_errors")
    assert errors["extra_arg"].endswith("hub.hub_id: expected at most 0 arguments, got 1")
    assert errors["wrong_door"].endswith("hub.id does not exist; use hub.hub_id()")
    entry = Path(isolated_env["BOTSTER_RUNTIME_DIR"]) / "hubs" / f"{hub_id}.json"
    assert entry.exists()

    mark = proc.mark()
    write_plugin(
        git_repo,
        "quitter",
        r"""
        hub.quit()
        log.info("RESULT after_quit_call true")  -- quit waits for the current code to finish
        """,
    )
    assert await proc.wait_exit() == 0
    assert await proc.result("after_quit_call", since=mark) is True
    assert await proc.result("shutdown_hook", since=mark) is True
    assert await proc.result("shutdown_event", since=mark) is True
    assert await proc.result("shutdown_event2", since=mark) is True
    await proc.wait_for(r"hub stopped", since=mark)
    assert not entry.exists()
