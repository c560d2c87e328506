"""Plugin loading: isolation, require, errors, hooks around reloads."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_plugin


async def test_plugin_globals_are_its_own(hub):
    proc = await hub(
        plugins={
            "a": "counter = 'from a'; shared_reader = function() return counter end",
            "b": "log.info('RESULT b_sees ' .. tostring(counter))",
        }
    )
    assert await proc.result("b_sees") == "nil"


async def test_plugin_require_finds_its_own_modules_first(hub, git_repo: Path):
    for name, value in (("one", "1"), ("two", "2")):
        init = write_plugin(
            git_repo,
            name,
            f"""
            log.info("RESULT {name} " .. require("helper").value)
        """,
        )
        (init.parent / "lua").mkdir()
        (init.parent / "lua" / "helper.lua").write_text(f"return {{value = '{value}'}}")
    proc = await hub()
    assert await proc.result("one") == 1
    assert await proc.result("two") == 2


async def test_missing_module_error_lists_where_it_looked(hub):
    proc = await hub(plugins={"needy": "require('does.not.exist')"})
    proc.expect_log(r"plugin 'needy' failed to load: .*module 'does.not.exist' not found")
    await proc.wait_for(r"plugin 'needy' failed to load: .*module 'does.not.exist' not found")
    await proc.wait_for("hub ready: 0 plugins loaded, 1 failed")


async def test_syntax_error_at_start_names_file_and_line(hub):
    proc = await hub(plugins={"bad": "local a = 1\nlocal = 2\n", "good": "log.info('RESULT ok 1')"})
    proc.expect_log(r"plugin 'bad' failed to load: .*bad/init.lua:2:")
    await proc.wait_for(r"plugin 'bad' failed to load: .*bad/init.lua:2: .*near '='")
    assert await proc.result("ok") == 1


async def test_before_and_after_reload_callbacks(hub, git_repo: Path):
    proc = await hub(
        plugins={
            "cb": """
        local M = {}
        function M._before_reload() log.info("RESULT before v1") end
        function M._after_reload() log.info("RESULT after_in_v1 true") end
        return M
    """
        }
    )
    await proc.wait_for("plugin 'cb' loaded")
    mark = proc.mark()
    write_plugin(
        git_repo,
        "cb",
        """
        local M = {}
        function M._after_reload() log.info("RESULT after v2") end
        return M
    """,
    )
    assert await proc.result("before", since=mark) == "v1"
    assert await proc.result("after", since=mark) == "v2"
    assert "after_in_v1" not in proc.log


async def test_plugin_reloaded_hook_and_list_plugins(hub, git_repo: Path):
    proc = await hub(
        plugins={
            "watcher": """
            hub.hooks.on("plugin_reloaded", "watcher", function(info)
              log.info("RESULT reloaded " .. info.name)
              local names = {}
              for _, p in ipairs(hub.loader.list_plugins()) do
                names[#names + 1] = p.name .. ":" .. p.status .. ":" .. p.reload_count
              end
              log.info("RESULT plugins " .. json.encode(names))
            end)
        """,
            "target": "log.info('RESULT target 1')",
        }
    )
    mark = proc.mark()
    write_plugin(git_repo, "target", "log.info('RESULT target 2')")
    assert await proc.result("reloaded", since=mark) == "target"
    assert await proc.result("plugins", since=mark) == ["target:loaded:1", "watcher:loaded:0"]


async def test_wrong_door_names_the_right_function(hub):
    proc = await hub(
        plugins={
            "door": """
        local ok, err = pcall(function() return timer.set_timeout(1, print) end)
        log.info("RESULT hint " .. json.encode(err))
        local ok2, err2 = pcall(function() return fs.nope end)
        log.info("RESULT list " .. json.encode(err2))
    """
        }
    )
    hint = await proc.result("hint")
    assert "timer.set_timeout does not exist; use timer.after(seconds, fn)" in hint
    assert "door/init.lua:2:" in hint
    listing = await proc.result("list")
    assert "fs.nope does not exist (fs has: " in listing


async def test_sync_http_style_wait_inside_plugin_coroutine_passes_through(hub):
    # A wait inside a plugin's own coroutine (coroutine.wrap) suspends the task, not the hub.
    proc = await hub(
        plugins={
            "nested": """
        timer.after(0, function()
          local gen = coroutine.wrap(function()
            coroutine.yield(1)
            local ok = hub.loader.list_plugins()  -- plain call inside
            coroutine.yield(2)
          end)
          log.info("RESULT gen " .. gen() .. gen())
        end)
    """
        }
    )
    assert await proc.result("gen") == 12
