"""Hot reload: plugins follow their files within 500 ms, releasing all they owned first."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.conftest import write_plugin

TICKER = """
local n = 0
timer.every(0.02, function()
  n = n + 1
  log.info("RESULT {tag} " .. n)
end)
"""


async def test_edit_reloads_within_500ms_and_releases_old_timers(hub, git_repo: Path):
    proc = await hub(plugins={"tick": TICKER.format(tag="v1")})
    assert await proc.result("v1") == 1
    mark = proc.mark()
    t0 = time.monotonic()
    write_plugin(git_repo, "tick", TICKER.format(tag="v2"))
    await proc.wait_for(r"plugin 'tick' reloaded", since=mark)
    assert time.monotonic() - t0 < 0.5
    # Both timers tick every 20 ms and v1 ticks on every call: by v2's fifth tick, a v1 timer
    # that survived the reload would have logged after the "reloaded" line several times.
    await proc.wait_for(r"RESULT v2 5$", since=mark)
    reloaded = next(
        i for i in range(mark, proc.mark()) if "plugin 'tick' reloaded" in proc.lines[i]
    )
    assert not any("RESULT v1" in line for line in proc.lines[reloaded:])


async def test_syntax_error_keeps_old_version_running_and_names_file_line(hub, git_repo: Path):
    proc = await hub(
        plugins={
            "keep": """
        timer.every(0.02, function() log.info("RESULT alive v1") end)
    """
        }
    )
    await proc.result("alive")
    proc.expect_log(r"plugin 'keep' reload failed, keeping the running version: .*init.lua:3:")
    mark = proc.mark()
    write_plugin(git_repo, "keep", "local x = 1\nlocal y = 2\nthis is not lua\n")
    m = await proc.wait_for(
        r"plugin 'keep' reload failed, keeping the running version: "
        r"(.*init.lua):3: (.*)",
        since=mark,
    )
    assert m.group(1).endswith("keep/init.lua")
    mark2 = proc.mark()
    assert await proc.result("alive", since=mark2) == "v1"


async def test_runtime_error_in_new_version_rolls_back(hub, git_repo: Path):
    proc = await hub(
        plugins={
            "rb": """
        mcp.tool("rb_tool", {description = "v1"}, function() return "v1" end)
        timer.every(0.02, function() log.info("RESULT rb " .. mcp.list_tools()[1].description) end)
    """
        }
    )
    assert await proc.result("rb") == "v1"
    proc.expect_log(r"plugin 'rb' reload failed, restoring the previous version: .*boom in v2")
    mark = proc.mark()
    write_plugin(
        git_repo,
        "rb",
        """
        mcp.tool("rb_tool", {description = "v2"}, function() return "v2" end)
        timer.every(0.02, function() log.info("RESULT rb v2-timer") end)
        error("boom in v2")
    """,
    )
    await proc.wait_for(r"reload failed, restoring the previous version", since=mark)
    after = proc.mark()
    assert await proc.result("rb", since=after) == "v1"
    # v2's half-registered timer and tool were released before the rollback.
    flush = await proc.result("rb", since=proc.mark())
    assert flush == "v1"
    assert not any("v2-timer" in line for line in proc.lines[after:])


async def test_new_plugin_directory_loads_and_deleted_one_unloads(hub, git_repo: Path):
    proc = await hub(plugins={"base": "log.info('RESULT base true')"})
    mark = proc.mark()
    write_plugin(
        git_repo,
        "fresh",
        """
        timer.every(0.02, function() log.info("RESULT fresh tick") end)
    """,
    )
    await proc.wait_for(r"plugin 'fresh' loaded", since=mark)
    await proc.result("fresh", since=mark)
    mark = proc.mark()
    shutil.rmtree(git_repo / ".botster" / "plugins" / "fresh")
    await proc.wait_for(r"plugin 'fresh' unloaded", since=mark)
    # Flush: a later event proves no tick of the unloaded plugin arrived meanwhile.
    write_plugin(git_repo, "marker", "log.info('RESULT marker true')")
    await proc.result("marker", since=mark)
    unload_line = next(
        i for i in range(mark, len(proc.lines)) if "plugin 'fresh' unloaded" in proc.lines[i]
    )
    marker_line = next(i for i in range(mark, len(proc.lines)) if "RESULT marker" in proc.lines[i])
    assert not any("RESULT fresh" in line for line in proc.lines[unload_line + 1 : marker_line])


async def test_rapid_saves_are_debounced_into_one_reload(hub, git_repo: Path):
    proc = await hub(plugins={"rapid": "log.info('RESULT version 0')"})
    await proc.result("version")
    mark = proc.mark()
    for i in range(1, 11):
        write_plugin(git_repo, "rapid", f"log.info('RESULT version {i}')")
    await proc.wait_for(r"plugin 'rapid' reloaded", since=mark)
    assert await proc.result("version", since=mark) == 10
    # Flush with a marker plugin; then count reloads of 'rapid'.
    write_plugin(git_repo, "flush", "log.info('RESULT flushed true')")
    await proc.result("flushed", since=mark)
    reloads = [line for line in proc.lines[mark:] if "plugin 'rapid' reloaded" in line]
    assert len(reloads) == 1, proc.log


async def test_module_file_of_a_plugin_reloads_it(hub, git_repo: Path):
    init = write_plugin(
        git_repo,
        "modular",
        """
        local util = require("util")
        log.info("RESULT modular " .. util.value)
    """,
    )
    (init.parent / "util.lua").write_text("return {value = 'one'}")
    proc = await hub()
    assert await proc.result("modular") == "one"
    mark = proc.mark()
    (init.parent / "util.lua").write_text("return {value = 'two'}")
    assert await proc.result("modular", since=mark) == "two"


async def test_reload_releases_everything_the_plugin_owned(hub, git_repo: Path, tmp_path: Path):
    watched = tmp_path / "watched"
    watched.mkdir()
    proc = await hub(
        plugins={
            "owner": f"""
            events.on("ping", function() log.info("RESULT pong old") end)
            hub.hooks.on("ping_hook", "owner", function() log.info("RESULT hooked old") end)
            watch.directory("{watched}", function(e) log.info("RESULT watched old") end)
            mcp.tool("owner_tool", {{description = "x"}}, function() return "x" end)
            timer.after(30, function() log.info("RESULT late old") end)
        """,
            "driver": """
            events.on("go", function()
              events.emit("ping")
              hub.hooks.notify("ping_hook")
              log.info("RESULT tools " .. mcp.count())
            end)
        """,
        }
    )
    mark = proc.mark()
    write_plugin(git_repo, "owner", "log.info('RESULT owner v2')")
    await proc.result("owner", since=mark)
    await proc.wait_for(r"plugin 'owner' reloaded", since=mark)
    mark = proc.mark()
    write_plugin(git_repo, "trigger", "events.emit('go')")
    (watched / "f.txt").write_text("x")
    assert await proc.result("tools", since=mark) == 0
    write_plugin(git_repo, "flush", "log.info('RESULT flushed true')")
    await proc.result("flushed", since=mark)
    tail = "\n".join(proc.lines[mark:])
    assert "old" not in tail.replace("hub.hooks", "")


async def test_user_init_loads_first_and_reloads(hub, git_repo: Path, isolated_env):
    user_init = Path(isolated_env["BOTSTER_HOME"]) / "lua" / "user" / "init.lua"
    user_init.parent.mkdir(parents=True)
    user_init.write_text("log.info('RESULT user v1')")
    proc = await hub(plugins={"after_user": "log.info('RESULT plugin true')"})
    assert await proc.result("user") == "v1"
    user_line = next(i for i, line in enumerate(proc.lines) if "RESULT user" in line)
    plugin_line = next(i for i, line in enumerate(proc.lines) if "RESULT plugin" in line)
    assert user_line < plugin_line
    assert "[user] RESULT user v1" in proc.lines[user_line]
    mark = proc.mark()
    user_init.write_text("log.info('RESULT user v2')")
    assert await proc.result("user", since=mark) == "v2"


async def test_core_module_override_reloads_and_protected_ones_cannot(hub, git_repo: Path):
    lua_dir = git_repo / ".botster" / "lua" / "lib"
    lua_dir.mkdir(parents=True)
    (lua_dir / "greeting.lua").write_text("return {text = 'hello v1'}")
    proc = await hub(
        plugins={
            "greeter": """
        local g = require("lib.greeting")
        timer.every(0.02, function() log.info("RESULT greeting " .. require("lib.greeting").text) end)
    """
        }
    )
    assert await proc.result("greeting") == "hello v1"
    mark = proc.mark()
    (lua_dir / "greeting.lua").write_text("return {text = 'hello v2'}")
    await proc.wait_for(r"module 'lib.greeting' reloaded", since=mark)
    assert await proc.result("greeting", since=proc.mark()) == "hello v2"
    # A file that would override a protected module is refused, loudly.
    proc.expect_log(r"hub\.state is protected")
    hub_dir = git_repo / ".botster" / "lua" / "hub"
    hub_dir.mkdir()
    (hub_dir / "state.lua").write_text("return {}")
    await proc.wait_for(r"WARNING .*hub\.state is protected", since=mark)


async def test_repo_layer_wins_by_name_and_device_plugins_load(hub, git_repo: Path, isolated_env):
    device = Path(isolated_env["BOTSTER_HOME"])
    write_plugin(git_repo, "shared", "log.info('RESULT shared device')", layer=device)
    write_plugin(git_repo, "devonly", "log.info('RESULT devonly yes')", layer=device)
    write_plugin(git_repo, "shared", "log.info('RESULT shared repo')")
    proc = await hub()
    assert await proc.result("shared") == "repo"
    assert await proc.result("devonly") == "yes"
    assert "RESULT shared device" not in proc.log
    await proc.wait_for("hub ready: 2 plugins loaded")


async def test_repo_plugin_dir_created_after_start_is_picked_up(hub, git_repo: Path):
    proc = await hub()
    mark = proc.mark()
    write_plugin(git_repo, "late", "log.info('RESULT late true')")
    assert await proc.result("late", since=mark, timeout=10) is True
