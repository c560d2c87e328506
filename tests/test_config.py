"""The ``config`` primitive through Lua plugins in a real hub: reading, persisting across a
restart (checked on disk), environment and paths, and wrong use."""

from __future__ import annotations

import json
from pathlib import Path

from botster.base.config import HUB_SETTINGS
from tests.lua_prelude import PRELUDE, strip_position


async def test_get_all_set_persist_across_restart(hub, isolated_env: dict[str, str]) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    initial = {"greeting": "hi", "n": 3, "nested": {"a": [1, 2.5, True, None], "b": {}}}
    proc = await hub(
        config=initial,
        plugins={
            "p": PRELUDE
            + """
report_all("get", config.get("greeting"), config.get("n"), config.get("missing"),
  config.get("nested"))
local all = config.all()
all.greeting = "changed locally"  -- a copy: changes nothing
report_all("all", config.all())
report_all("set", config.set("saved", {name = "x", list = {1, 2, 3}, flag = false,
  empty = json.array({}), text = "ü\\n"}))
report_all("set_more", config.set("count", 42), config.set("ratio", 0.5),
  config.set("greeting", nil), config.set("never_set", nil))
report_all("after", config.get("saved"), config.get("count"), config.get("ratio"),
  config.get("greeting"), math.type(config.get("count")))
""",
        },
    )
    assert await proc.result("get") == ["hi", 3, None, initial["nested"]]
    (everything,) = await proc.result("all")
    # The hub fixture adds hub settings of its own (a relaxed slow-step threshold).
    fixture_settings = {k: v for k, v in everything.items() if k not in initial}
    assert fixture_settings.keys() <= HUB_SETTINGS.keys()
    assert everything == {**fixture_settings, **initial}
    saved = {"name": "x", "list": [1, 2, 3], "flag": False, "empty": [], "text": "ü\n"}
    assert await proc.result("set") == [True]
    assert await proc.result("set_more") == [True, True, True, True]
    assert await proc.result("after") == [saved, 42, 0.5, None, "integer"]

    expected = {
        **fixture_settings,
        **{"n": 3, "nested": initial["nested"], "saved": saved, "count": 42, "ratio": 0.5},
    }
    on_disk = json.loads((home / "config.json").read_text())
    assert on_disk == expected
    assert [p.name for p in home.glob("config.tmp*")] == []
    await proc.stop_and_verify()

    proc2 = await hub(
        plugins={
            "p": PRELUDE
            + """
report_all("restarted", config.get("saved"), config.get("count"), config.get("greeting"),
  config.all())
""",
        }
    )
    assert await proc2.result("restarted") == [saved, 42, None, expected]
    # Stop it here: the fixture re-checks the first hub at teardown, and this one shares its
    # registry entry name (same repo).
    await proc2.stop_and_verify()


async def test_env_and_paths(hub, isolated_env: dict[str, str]) -> None:
    proc = await hub(
        env={"BOTSTER_TEST_VALUE": "hello wörld", "BOTSTER_TEST_EMPTY": ""},
        plugins={
            "p": PRELUDE
            + """
report_all("env", config.env("BOTSTER_TEST_VALUE"), config.env("BOTSTER_TEST_EMPTY"),
  config.env("BOTSTER_TEST_SURELY_UNSET"), config.env(""))
report_all("paths", config.lua_path(), config.data_dir())
""",
        },
    )
    assert await proc.result("env") == ["hello wörld", "", None, None]
    home = isolated_env["BOTSTER_HOME"]
    assert await proc.result("paths") == [f"{home}/lua", home]


async def test_set_refuses_to_overwrite_a_broken_file(hub, isolated_env: dict[str, str]) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    proc = await hub(
        config={"kept": 1},
        plugins={
            "p": PRELUDE
            + """
-- Someone breaks the file while the hub runs; config.set must not wipe it.
assert(fs.write(config.data_dir() .. "/config.json", "{broken"))
report_all("set", config.set("x", 1))
report_all("memory", config.get("x"), config.get("kept"))
""",
        },
    )
    result = await proc.result("set")
    assert result[0] is None
    assert result[1].startswith(f"config.set: {home}/config.json is not valid JSON (")
    assert result[1].endswith("; not overwriting it")
    assert await proc.result("memory") == [None, 1]
    assert (home / "config.json").read_text() == "{broken"


async def test_wrong_arguments_raise(hub, isolated_env: dict[str, str]) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    proc = await hub(
        plugins={
            "p": PRELUDE
            + """
report_all("positioned", raised(function() local v = config.get(nil); return v end),
  raised(function() local ok = config.set("k", print); return ok end))
report_all("types", raised(config.get, 5), raised(config.set, nil, 1), raised(config.set, "", 1),
  raised(config.set, "k", {f = print}), raised(config.set, "k", 0/0),
  raised(config.set, "k", {a = {1, math.huge}}), raised(config.set, "k", {[1] = "a", [3] = "c"}),
  raised(config.set, "k", {[true] = 1}), raised(config.env, nil), raised(config.env, {}),
  raised(config.all, 1), raised(config.lua_path, "x"))
report_all("settings", raised(config.set, "lua_step_budget", -1),
  raised(config.set, "reload_debounce_ms", "fast"), config.set("lua_step_budget", 2.5))
report_all("wrong_door", raised(function() local f = config.delete; return f end))
""",
        }
    )
    assert [strip_position(m) for m in await proc.result("positioned")] == [
        "config.get: key: expected string, got nil",
        "config.set: val: cannot convert a Lua function",
    ]
    assert await proc.result("types") == [
        "config.get: key: expected string, got number",
        "config.set: key: expected string, got nil",
        "config.set: key: expected a non-empty string, got an empty string",
        "config.set: val: cannot convert a Lua function",
        "config.set: val: expected JSON data (no NaN or infinity), got nan",
        "config.set: val.a[2]: expected JSON data (no NaN or infinity), got inf",
        "config.set: val: table keys must be strings (or 1..n for an array), got key 1",
        "config.set: val: table keys must be strings (or 1..n for an array), got key boolean",
        "config.env: name: expected string, got nil",
        "config.env: name: expected string, got table",
        "config.all: expected at most 0 arguments, got 1",
        "config.lua_path: expected at most 0 arguments, got 1",
    ]
    budget, debounce, ok = await proc.result("settings")
    assert budget == (
        "config.set: val: lua_step_budget must be CPU seconds one Lua step may use "
        "(a positive number), got -1"
    )
    assert debounce.startswith("config.set: val: reload_debounce_ms must be ")
    assert debounce.endswith(", got string")
    assert ok is True
    assert strip_position((await proc.result("wrong_door"))[0]) == (
        "config.delete does not exist; use config.set(key, nil)"
    )
    # Only the valid setting reached the file.
    on_disk = json.loads((home / "config.json").read_text())
    assert on_disk["lua_step_budget"] == 2.5
    assert "k" not in on_disk and "reload_debounce_ms" not in on_disk
