"""The ``hub_client`` primitive end to end: real hubs talking over their real sockets.

Two hubs share one runtime dir (so each sees the other in ``hub_discovery.list()``) and serve
two git repos. Plugins report with ``RESULT <tag> <json>``; nothing is mocked and nothing
sleeps: every wait is on a log line or a loopback server's own event.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from botster.transports.client import HubConnection
from botster.transports.handshake import PROTOCOL_VERSION
from tests.conftest import write_plugin
from tests.servers import http_server, lua_str

PRELUDE = """
local function report(tag, value) log.info("RESULT " .. tag .. " " .. json.encode(value)) end
local function pack(value, err) return {value = value, err = err} end
-- The message of a Lua error raised by f(...), without the "file:line: " prefix.
local function raises(f, ...)
  local args = table.pack(...)
  local ok, e = pcall(function() return f(table.unpack(args, 1, args.n)) end)
  if ok then return "no error" end
  return (tostring(e):gsub("^[^:]*:%d+: ", ""))
end
"""


def plugin(body: str, **values: str) -> str:
    consts = "".join(f"local {k} = {lua_str(v)}\n" for k, v in values.items())
    return PRELUDE + consts + body


@pytest.fixture
def second_repo(tmp_path: Path, isolated_env: dict[str, str]) -> Path:
    """Another real git repository, for a second hub."""
    repo = tmp_path / "repo_b"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README.md").write_text("second repo\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo


def socket_of(proc: Any) -> Path:
    """The socket of `proc` (a hub alone in its runtime dir)."""
    entry = next((Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "hubs").glob("*.json"))
    return Path(json.loads(entry.read_text())["socket"])


B_TOOLS = """
mcp.tool("b_double", {
  description = "doubles n",
  input_schema = {type = "object", properties = {n = {type = "number"}}, required = {"n"}},
}, function(params, context)
  return string.format("%d from %s", params.n * 2, context.hub_id:sub(1, 8))
end)
"""

A_PEER = """
timer.after(0, function()
  local me, other = hub.hub_id(), nil
  local hubs = hub_discovery.list()
  for _, h in ipairs(hubs) do if h.id ~= me then other = h end end
  report("found", {count = #hubs, repo = other.repo_path, id = other.id})
  local conn = hub_client.connect(other.socket)
  -- Sent while the connection is being set up: queued, then sent first.
  assert(hub_client.send(conn, {type = "subscribe", channel = "hub"}) == true)
  local seen = {}
  hub_client.on_message(conn, function(msg, id)
    assert(id == conn, "on_message got " .. tostring(id))
    seen[#seen + 1] = msg.type .. (msg.event and (":" .. msg.event) or "")
    if msg.type == "hello_ack" then
      report("hello", {hub_id = msg.hub_id, protocol = msg.protocol})
    elseif msg.type == "subscribed" then
      report("subscribed", msg)
    elseif msg.type == "event" then
      report("event", msg)
    elseif msg.type == "disconnected" then
      report("disconnected", {
        reason = msg.reason,
        seen = seen,
        request = pack(hub_client.request(conn, "ping")),
        send = pack(hub_client.send(conn, {type = "subscribe", channel = "hub"})),
        close = hub_client.close(conn),
      })
    else
      report("other", msg)
    end
  end)
  -- Issued while the connection is still being set up: waits for it.
  report("ping", pack(hub_client.request(conn, "ping", {echo = "x"})))
  report("tool", pack(hub_client.request(conn, "mcp.call_tool",
    {name = "b_double", arguments = {n = 21}})))
  report("nope", pack(hub_client.request(conn, "nope")))
  -- B reloads a plugin and pushes plugin_reloaded to its "hub" subscribers: us.
  report("reload", pack(hub_client.request(conn, "plugins.reload", {name = "b_tools"})))
end)
"""


async def test_two_hubs_find_each_other_and_talk(hub: Any, second_repo: Path) -> None:
    b = await hub(plugins={"b_tools": B_TOOLS}, repo=second_repo)
    a = await hub(plugins={"peer": plugin(A_PEER)})

    found = await a.result("found")
    assert found["count"] == 2 and found["repo"] == str(second_repo.resolve())
    hello = await a.result("hello")
    assert hello == {"hub_id": found["id"], "protocol": PROTOCOL_VERSION}
    assert await a.result("ping") == {"value": {"pong": True, "echo": "x"}}
    tool = await a.result("tool")
    assert tool == {
        "value": {
            "is_error": False,
            "content": [{"type": "text", "text": f"42 from {found['id'][:8]}"}],
        }
    }
    assert await a.result("nope") == {"err": "hub_client.request: nope: unknown command 'nope'"}
    assert await a.result("subscribed") == {"type": "subscribed", "channel": "hub"}
    event = await a.result("event")
    assert event == {
        "type": "event",
        "channel": "hub",
        "event": "plugin_reloaded",
        "data": {"name": "b_tools", "source": "repo"},
    }
    assert await a.result("reload") == {"value": {"reloaded": "b_tools"}}

    # A hub that goes away gives its clients a disconnect.
    b.signal(signal.SIGTERM)
    assert await b.wait_exit() == 0
    assert not (Path(b.env["BOTSTER_RUNTIME_DIR"]) / "hubs" / f"{found['id']}.json").exists()
    assert await a.result("other") == {
        "type": "error",
        "code": "shutdown",
        "message": "hub is shutting down",
    }
    gone = await a.result("disconnected")
    reason = "the hub closed the connection (hub is shutting down)"
    assert gone == {
        "reason": reason,
        "seen": ["hello_ack", "subscribed", "event:plugin_reloaded", "error", "disconnected"],
        "request": {"err": f"hub_client.request: hub_conn_1: disconnected: {reason}"},
        "send": {"err": f"hub_client.send: hub_conn_1: disconnected: {reason}"},
        "close": False,
    }


async def test_failed_connect_queues_until_on_message(hub: Any, isolated_env: dict) -> None:
    missing = f"{isolated_env['BOTSTER_RUNTIME_DIR']}/nobody-here.sock"
    source = plugin(
        """
timer.after(0, function()
  local conn = hub_client.connect(MISSING)
  local queued = hub_client.send(conn, {type = "subscribe", channel = "hub"})
  local r, err = hub_client.request(conn, "ping")   -- waits for the connection, which fails
  report("request", {queued = queued, value = r, err = err})
  -- Registered only now: the disconnected message was kept for it.
  hub_client.on_message(conn, function(msg, id)
    report("late", {msg = msg, id = id == conn})
    report("after", {
      on_message = pack(hub_client.on_message(conn, function() end)),
      request = pack(hub_client.request(conn, "ping")),
      close = hub_client.close(conn),
    })
  end)
end)
""",
        MISSING=missing,
    )
    proc = await hub(plugins={"lonely": source})
    reason = f"cannot connect to {missing}: no such file or directory (ENOENT)"
    assert await proc.result("request") == {
        "queued": True,
        "err": f"hub_client.request: hub_conn_1: disconnected: {reason}",
    }
    assert await proc.result("late") == {
        "msg": {"type": "disconnected", "reason": reason},
        "id": True,
    }
    ended = f"hub_client.%s: hub_conn_1: disconnected: {reason}"
    assert await proc.result("after") == {
        "on_message": {"err": ended % "on_message"},
        "request": {"err": ended % "request"},
        "close": False,
    }


async def test_wrong_use_raises_and_unknown_ids_fail(hub: Any) -> None:
    source = plugin(
        """
timer.after(0, function()
  local own = hub_discovery.socket_path(hub.hub_id())
  local conn = hub_client.connect(own)
  report("errors", {
    raises(hub_client.request, nil, "ping"),
    raises(hub_client.request, conn, 5),
    raises(hub_client.request, conn, ""),
    raises(hub_client.request, conn, "ping", "args"),
    raises(hub_client.request, conn, "ping", {1, 2}),
    raises(hub_client.request, conn, "ping", {}, {timeout = -1}),
    raises(hub_client.request, conn, "ping", {}, {wait = 1}),
    raises(hub_client.connect, nil),
    raises(hub_client.connect, "relative.sock"),
    raises(hub_client.on_message, conn, "not a function"),
    raises(hub_client.send, conn, "text"),
    raises(hub_client.send, conn, nil),
    raises(hub_client.send, conn, {[1.5] = "x"}),
    raises(hub_client.send, conn, {x = 0/0}),
    raises(hub_client.close, 5),
    raises(function() return hub_client.subscribe end),
  })
  report("unknown", {
    request = pack(hub_client.request("hub_conn_999", "ping")),
    send = pack(hub_client.send("hub_conn_999", {type = "x"})),
    on_message = pack(hub_client.on_message("hub_conn_999", function() end)),
    close = hub_client.close("hub_conn_999"),
  })
  -- The connection to our own hub works, and close is final and idempotent.
  require("lib.commands").register("nothing", function() end)
  local pong = hub_client.request(conn, "ping", {echo = "self"})
  report("closing", {
    pong = pong,
    nothing = hub_client.request(conn, "nothing") == json.null,
    close = hub_client.close(conn),
    again = hub_client.close(conn),
    request = pack(hub_client.request(conn, "ping")),
  })
end)
"""
    )
    proc = await hub(plugins={"misuse": source})
    fn = "hub_client"
    assert await proc.result("errors") == [
        f"{fn}.request: conn_id: expected string, got nil",
        f"{fn}.request: command: expected string, got number",
        f"{fn}.request: command: expected a command name, got an empty string",
        f"{fn}.request: args: expected table, got string",
        f"{fn}.request: args: expected a table with string keys (a JSON object), got an array",
        f"{fn}.request: opts.timeout: expected a positive number of seconds, got -1",
        f"{fn}.request: opts: unknown key 'wait' (known: timeout)",
        f"{fn}.connect: socket_path: expected string, got nil",
        f"{fn}.connect: socket_path: expected an absolute path, got 'relative.sock' "
        "(hub_discovery.socket_path(hub_id) gives one)",
        f"{fn}.on_message: fn: expected function, got string",
        f"{fn}.send: message: expected table, got string",
        f"{fn}.send: message: expected table, got nil",
        f"{fn}.send: message: keys must be strings, got 1.5",
        f"{fn}.send: message: cannot be sent as JSON: NaN and infinities have no JSON form",
        f"{fn}.close: conn_id: expected string, got number",
        f'{fn}.subscribe does not exist; use hub_client.send(conn_id, {{type = "subscribe", '
        'channel = "hub"})',
    ]
    unknown = "hub_client.%s: hub_conn_999: no such connection"
    assert await proc.result("unknown") == {
        "request": {"err": unknown % "request"},
        "send": {"err": unknown % "send"},
        "on_message": {"err": unknown % "on_message"},
        "close": False,
    }
    assert await proc.result("closing") == {
        "pong": {"pong": True, "echo": "self"},
        "nothing": True,
        "close": True,
        "again": False,
        "request": {"err": "hub_client.request: hub_conn_1: closed with hub_client.close"},
    }


async def test_timeout_close_wakes_waiters_and_unload_is_silent(hub: Any) -> None:
    async with http_server() as server:
        # A command of this hub that answers when the loopback server does: /hang never
        # (until the server stops), /hold when the test releases it.
        slow = """
require("lib.commands").register("slow", function(args)
  local resp = http.get(BASE .. args.path)
  return {body = resp and resp.body}
end)
"""
        peer = """
local own = hub_discovery.socket_path(hub.hub_id())
local conn = hub_client.connect(own)
hub_client.on_message(conn, function(msg)
  if msg.type == "disconnected" then report("v1_disconnected", msg) end
end)
require("lib.commands").register("peer.close", function()
  return {closed = hub_client.close(conn)}
end)
timer.after(0, function()
  report("timeout", pack(hub_client.request(conn, "slow", {path = "/hang"}, {timeout = 0.2})))
  report("waiter", pack(hub_client.request(conn, "slow", {path = "/hold"})))
end)
-- A second connection, left open: unloading the plugin closes it without a callback.
local keep = hub_client.connect(own)
hub_client.on_message(keep, function(msg)
  if msg.type == "hello_ack" then report("keep_open", msg.client_id) end
  if msg.type == "disconnected" then report("v1_disconnected", msg) end
end)
"""
        proc = await hub(
            plugins={
                "a_slow": plugin(slow, BASE=server.url("")),  # loads before "peer"
                "peer": plugin(peer),
            }
        )
        client_id = await proc.result("keep_open")
        assert await proc.result("timeout") == {
            "err": "hub_client.request: slow: no answer within 0.2 s"
        }
        # The second request reached the command: it is waiting. Closing wakes it.
        await server.wait_seen("/hold")
        conn = await HubConnection.connect(socket_of(proc), "test")
        assert await conn.request("peer.close") == {"closed": True}
        assert await proc.result("waiter") == {
            "err": "hub_client.request: hub_conn_1: closed with hub_client.close"
        }
        server.release.set()

        mark = proc.mark()
        write_plugin(proc.repo, "peer", PRELUDE + 'report("v2", true)\n')
        assert await conn.request("plugins.reload", {"name": "peer"}) == {"reloaded": "peer"}
        await proc.result("v2", since=mark)
        await proc.wait_for(
            rf"client {re.escape(client_id)} \(.*\) disconnected: client closed", since=mark
        )
        # A round trip through the same socket: anything v1 could still have said is logged.
        assert await conn.request("ping") == {"pong": True}
        await conn.close()
        assert "v1_disconnected" not in proc.log
