"""Hostile input against the Lua runtime (issue 10, items 2-4): a real hub must survive it.

Each test is a reproduction from the issue: it panicked, froze or reached across plugins on
the hub before the fix. Every test ends by checking that a socket client connected before
the attack still gets its `ping` answered and the hub process is alive.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botster.transports.client import HubConnection, RequestFailed
from tests.test_mcp_serve import mcp_client
from tests.test_socket import socket_of

BUDGET = {"lua_step_budget": 0.3}
PING_TIMEOUT = 15.0


async def witness(proc) -> HubConnection:
    """A client connected before the attack: its pings must stay answered."""
    conn = await HubConnection.connect(socket_of(proc), "witness")
    assert await conn.request("ping", {"echo": "before"}) == {"pong": True, "echo": "before"}
    return conn


async def assert_alive(proc, conn: HubConnection) -> None:
    answer = await asyncio.wait_for(conn.request("ping", {"echo": "after"}), PING_TIMEOUT)
    assert answer == {"pong": True, "echo": "after"}
    assert proc.proc.returncode is None, "the hub died"
    assert "PANIC" not in proc.log
    await conn.close()


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# Item 2: no PANIC ----------------------------------------------------------------------------


async def test_huge_deeply_nested_request_is_refused_before_conversion(hub):
    proc = await hub()
    conn = await witness(proc)
    attacker = await HubConnection.connect(socket_of(proc), "attacker")
    # ~15.9 MiB: a wide array of strings under 150 levels of nesting (issue 10: a PANIC).
    leaf = ["x" * 100] * 150_000
    with pytest.raises(RequestFailed, match=r"over the limit of 4194304 \(socket_max_message_kb\)"):
        await asyncio.wait_for(attacker.request("ping", {"echo": nested(150, leaf)}), 60)
    # Within the size limit but too deep.
    with pytest.raises(RequestFailed, match=r"nested deeper than 64 levels"):
        await asyncio.wait_for(attacker.request("ping", {"echo": nested(150, leaf[:5000])}), 60)
    # Flat but over the size limit.
    with pytest.raises(RequestFailed, match=r"over the limit of 4194304 \(socket_max_message_kb\)"):
        await asyncio.wait_for(attacker.request("ping", {"echo": leaf}), 60)
    await attacker.close()
    await proc.wait_for(r"nested deeper than 64 levels")
    await assert_alive(proc, conn)


async def test_deep_arguments_through_mcp_serve_get_an_error(hub, git_repo: Path, isolated_env):
    proc = await hub(
        plugins={"tools": "mcp.tool('echo', {description = 'e'}, function(p) return 'ok' end)"}
    )
    conn = await witness(proc)
    notes: list[str] = []
    async with mcp_client(git_repo, isolated_env, notes) as session:
        assert (await session.call_tool("echo", arguments={"a": 1})).content[0].text == "ok"
        with pytest.raises(Exception, match="nested deeper than 64 levels"):
            await session.call_tool("echo", arguments={"deep": nested(200, "x")})
    await assert_alive(proc, conn)


json_values = st.recursive(
    st.integers(-(2**53), 2**53)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
    | st.booleans(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=4)
    ),
    max_leaves=60,
)


def json_depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((json_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((json_depth(x) for x in v.values()), default=0)
    return 0


async def test_open_ended_request_args_are_answered_or_refused_never_dropped(hub):
    proc = await hub(config={"socket_max_json_depth": 8, "socket_max_message_kb": 4})
    conn = await witness(proc)
    examples: list[Any] = []

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 12), json_values)
    def collect(extra_depth, value):
        examples.append(nested(extra_depth, value))

    collect()
    examples.append(["y" * 100] * 60)  # about 6 KB: over the byte limit
    client = await HubConnection.connect(socket_of(proc), "fuzz")
    for value in examples:
        # The message is {args = {echo = value}}: two levels above the value.
        deep = 2 + json_depth(value) > 8
        big = len(json.dumps(value)) > 2 * 4096
        try:
            answer = await asyncio.wait_for(client.request("ping", {"echo": value}), 20)
        except RequestFailed as e:
            assert deep or len(json.dumps(value)) > 4096 // 2, f"refused {value!r}: {e}"
            continue
        assert not deep and not big, f"accepted {value!r}"
        assert answer == {"pong": True, "echo": value}
    await client.close()
    await assert_alive(proc, conn)


async def test_big_read_when_lua_memory_is_full_fails_that_call_only(hub, tmp_path: Path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (40 << 20))
    proc = await hub(
        plugins={
            "hog": f"""
                timer.after(0, function()
                  local hog = {{}}
                  local filled = pcall(function()
                    for i = 1, 1e9 do hog[i] = string.rep("x", 4096) .. i end
                  end)
                  local ok, err = pcall(fs.read, {json.dumps(str(big))})
                  hog = nil
                  collectgarbage()
                  log.info("RESULT read " .. json.encode({{filled = filled, ok = ok,
                    err = tostring(err)}}))
                end)
            """
        },
        config={"lua_memory_limit_mb": 64},
    )
    proc.expect_log(r"slow Lua step")  # filling 64 MiB, on a loaded machine
    conn = await witness(proc)
    result = await proc.result("read", timeout=60)
    assert result["filled"] is False  # the fill stopped at the cap
    assert result["ok"] is False
    assert "fs.read: a value of about 40.0 MiB does not fit in Lua memory" in result["err"]
    assert "lua_memory_limit_mb" in result["err"]
    await assert_alive(proc, conn)


async def test_unloaded_plugin_gives_its_memory_back(hub):
    proc = await hub(
        plugins={
            "a_hog": """
                local data = {}
                for i = 1, 4 do data[i] = string.rep(tostring(i), 24 << 20) end
                -- Held by a repeating timer and by a one-shot timer that has already fired.
                timer.every(3600, function() return #data end)
                timer.after(0, function() log.info("RESULT hog_fired " .. #data) end)
            """,
            "b_meter": """
                timer.after(0.2, function()
                  collectgarbage()
                  local before = collectgarbage("count")
                  hub.loader.unload_plugin("a_hog")
                  local after = collectgarbage("count")
                  log.info("RESULT mem " .. json.encode({before = before, after = after}))
                end)
            """,
        },
    )
    proc.expect_log(r"slow Lua step")  # allocating ~100 MiB, on a loaded machine
    conn = await witness(proc)
    assert await proc.result("hog_fired") == 4
    mem = await proc.result("mem")
    held_mb = 4 * 24
    assert mem["before"] / 1024 > held_mb
    assert mem["after"] / 1024 < mem["before"] / 1024 - 0.9 * held_mb, mem
    await assert_alive(proc, conn)


# Item 3: the CPU budget has no holes ----------------------------------------------------------

BUDGET_HOLES = {
    "xpcall_handler": """
        xpcall(function() error("boom") end, function(e) while true do end end)
    """,
    "sethook_cleared": """
        debug.sethook()
        while true do end
    """,
    "sethook_via_require": """
        require("debug").sethook()
        while true do end
    """,
    "gc_finalizer": """
        setmetatable({}, {__gc = function() while true do end end})
        collectgarbage()
    """,
    "error_tostring": """
        error(setmetatable({}, {__tostring = function() while true do end end}))
    """,
    "backtracking_pattern": """
        string.find(("a"):rep(30) .. "b", ("a*"):rep(30) .. "c")
    """,
    "backtracking_method": """
        local s = ("a"):rep(5000)
        for _ in s:gmatch("a-a-a-b") do end
    """,
}


@pytest.mark.parametrize("case", sorted(BUDGET_HOLES))
async def test_runaway_code_is_cut(hub, case):
    proc = await hub(
        plugins={
            "runaway": f"""
                timer.after(0.05, function()
                  log.info("RESULT started true")
                  {BUDGET_HOLES[case]}
                  log.info("RESULT escaped true")
                end)
            """,
            "ticker": """
                local n = 0
                timer.every(0.02, function()
                  n = n + 1
                  if n == 40 then log.info("RESULT ticks 40") end
                end)
            """,
        },
        config=BUDGET,
    )
    proc.expect_log(r"\[runaway\] error in timer")
    proc.expect_log(r"slow Lua step")
    conn = await witness(proc)
    assert await proc.result("started") is True
    line = await proc.wait_for(r"ERROR .*\[runaway\] error in timer timer_\d+: (.*)", timeout=30)
    reason = line.group(1)
    expected = {
        "xpcall_handler": "exceeded its CPU budget",
        "sethook_cleared": "attempt to call a nil value (field 'sethook')",
        "sethook_via_require": "attempt to call a nil value (field 'sethook')",
        "gc_finalizer": "__gc finalizers are not available to plugins",
        "backtracking_pattern": "exceeded its CPU budget",
        "error_tostring": "(error object is a table value)",
        "backtracking_method": "exceeded its CPU budget",
    }[case]
    assert expected in reason
    assert await proc.result("ticks", timeout=30) == 40
    assert "RESULT escaped" not in proc.log
    await assert_alive(proc, conn)


# Item 4: plugins cannot reach each other or the hub's internals -------------------------------

VICTIM = """
    local n = 0
    timer.every(0.02, function()
      n = n + 1
      if n == 30 then
        log.info("RESULT victim " .. json.encode({upper = string.upper("ok"),
          encoded = json.encode({1}), ticks = n}))
      end
    end)
"""

ATTACKS = {
    "call_as": 'require("hub.sched").call_as("victim", "x", function() end)',
    "release_owner": '_botster.release_owner("victim")',
    "release_via_load": "load(\"_botster.release_owner('victim')\")()",
    "release_via_env": 'getmetatable(_ENV).__index._botster.release_owner("victim")',
    "events_release": 'events._release("victim")',
    "loader_release": '(hub.loader._release or hub.loader.release)("victim")',
    "package_loaded": 'package.loaded["hub.sched"].call_as("victim", "x", print)',
    "patch_log": "log.info = function() end",
    "patch_json": "json.encode = function() return 'pwned' end",
    "patch_string": "string.upper = function() return 'pwned' end",
    "patch_string_meta": "getmetatable('').__index.upper = function() return 'pwned' end",
    "python_object": "local g = json.null.__class__.__repr__.__globals__",
    "binary_chunk": 'load(string.dump(function() end), "x", "b")',
}


@pytest.mark.parametrize("case", sorted(ATTACKS))
async def test_a_plugin_cannot_reach_another_or_the_hub(hub, case):
    proc = await hub(
        plugins={
            "attacker": f"""
                local ok, err = pcall(function() {ATTACKS[case]} end)
                -- A patch kept in a raw field of its own view stays its own.
                pcall(rawset, log, "warn", function() end)
                log.info("RESULT attack " .. json.encode({{ok = ok, err = tostring(err)}}))
            """,
            "victim": VICTIM,
        },
    )
    conn = await witness(proc)
    attack = await proc.result("attack")
    assert attack["ok"] is False, attack
    victim = await proc.result("victim")
    assert victim == {"upper": "OK", "encoded": "[1]", "ticks": 30}
    await assert_alive(proc, conn)


async def test_read_only_views_still_work_like_the_tables(hub):
    proc = await hub(
        plugins={
            "reader": """
                local names = {}
                for k in pairs(string) do names[#names + 1] = k end
                table.sort(names)
                local my_encode = function(v) return "mine" end
                local env_sees = {}
                for k, v in pairs(json) do env_sees[#env_sees + 1] = k end
                log.info("RESULT views " .. json.encode({
                  has_upper = string.upper ~= nil, method = ("ab"):upper(),
                  n_string = #names, first = names[1], mine = my_encode({}),
                  json_internal = (function()
                    for _, k in ipairs(env_sees) do if k:sub(1, 1) == "_" then return k end end
                    return false
                  end)(),
                  own_global = (function() my_global = 5; return my_global end)(),
                  loaded = type(require("lib.mcp")), gc = collectgarbage("count") > 0,
                  debug_sethook = debug.sethook == nil, version = _VERSION,
                }))
            """
        }
    )
    views = await proc.result("views")
    assert views["has_upper"] is True and views["method"] == "AB"
    assert views["n_string"] >= 15 and views["first"] == "byte"
    assert views["mine"] == "mine" and views["own_global"] == 5
    assert views["json_internal"] is False
    assert views["loaded"] == "table" and views["gc"] is True
    assert views["debug_sethook"] is True and views["version"] == "Lua 5.4"


async def test_large_allowed_message_is_converted_while_others_are_answered(hub):
    proc = await hub(
        plugins={
            "order": """
                socket.on_message(function(id, msg)
                  if msg.type == "request" and msg.command == "ping" and msg.args then
                    local e = msg.args.big or msg.args.echo
                    log.info("RESULT seen_" .. msg.id .. " " .. json.encode(type(e) == "table" and #e or e))
                  end
                end)
            """
        }
    )
    conn = await witness(proc)
    client = await HubConnection.connect(socket_of(proc), "big")
    big = [{"k": i} for i in range(60_000)]  # ~0.8 MiB: allowed, converted in slices
    answers: list[str] = []

    async def ask(what: str, c: HubConnection, args: dict) -> Any:
        result = await asyncio.wait_for(c.request("ping", args), 60)
        answers.append(what)
        return result

    big_call = asyncio.ensure_future(ask("big", client, {"big": big}))
    small_call = asyncio.ensure_future(ask("small", client, {"echo": "after"}))
    assert (await ask("witness", conn, {"echo": 1}))["echo"] == 1
    assert await big_call == {"pong": True}
    assert (await small_call)["echo"] == "after"
    # The witness was answered while the big message was still being converted, and the
    # client's later message still reached Lua after its big one.
    assert answers.index("witness") < answers.index("big")
    await proc.wait_for(r'RESULT seen_\d+ "after"')
    seen = [ln.split()[-1] for ln in proc.lines if "RESULT seen_" in ln]
    assert seen.index("60000") < seen.index('"after"'), seen
    await client.close()
    await assert_alive(proc, conn)
