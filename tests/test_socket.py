"""The hub socket from a raw client: handshake, requests, subscriptions, fairness, hostile input."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botster.base.framing import FrameDecoder, encode_frame, encode_json
from botster.transports.client import HubConnection, RequestFailed
from botster.transports.handshake import PROTOCOL_VERSION, hello
from harness.sockets import raw_connection
from tests.conftest import write_plugin


def socket_of(proc) -> Path:
    entry = next((Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "hubs").glob("*.json"))
    return Path(json.loads(entry.read_text())["socket"])


async def test_handshake_and_builtin_requests(hub):
    proc = await hub(
        plugins={"tools": "mcp.tool('t1', {description = 'one'}, function() return 'x' end)"}
    )
    path = socket_of(proc)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = await HubConnection.connect(path, "test")
    assert conn.hub_id and conn.client_id.startswith("socket:")
    assert conn.hello_ack["protocol"] == PROTOCOL_VERSION
    assert await conn.request("ping", {"echo": "hi"}) == {"pong": True, "echo": "hi"}
    info = await conn.request("hub.info")
    assert info.pop("worktree_base") and info.pop("pid") > 0  # where things are (issue 12)
    assert info.pop("repo") and "log" not in info  # this hub logs to a pipe, not its file
    assert info == {"hub_id": conn.hub_id, "plugins": 1, "tools": 1}
    names = [c["name"] for c in await conn.request("commands.list")]
    assert {
        "ping",
        "hub.info",
        "plugins.list",
        "plugins.reload",
        "mcp.list_tools",
        "mcp.call_tool",
        "hub.stop",
    } <= set(names)
    plugins = await conn.request("plugins.list")
    assert [(p["name"], p["status"]) for p in plugins] == [("tools", "loaded")]
    with pytest.raises(RequestFailed, match="unknown command 'nope'"):
        await conn.request("nope")
    await conn.close()


async def test_protocol_errors_keep_the_connection_and_name_the_problem(hub):
    proc = await hub()
    messages: list[dict] = []
    conn = await HubConnection.connect(socket_of(proc), "test", on_message=messages.append)
    conn.send({"type": "wat"})
    conn.send({"type": "subscribe", "channel": "nowhere"})
    conn.send({"type": "request", "id": 9, "command": 5})
    assert await conn.request("ping") == {"pong": True}
    assert [m["message"] for m in messages] == [
        'unknown message type "wat" (known: request, subscribe, unsubscribe, ping)',
        'subscribe: unknown channel "nowhere" (known: hub, mcp, terminal)',
        "request: command: expected string, got number",
    ]
    await conn.close()


async def test_protocol_ping_is_answered_by_the_transport_not_by_plugins(hub):
    """Issue 11: {type = "ping"} is a protocol message: the socket answers pong with the id,
    and no plugin's socket.on_message (nor the command path) sees it."""
    proc = await hub(
        plugins={
            "spy": """
        socket.on_message(function(id, msg) log.info("RESULT seen " .. msg.type) end)
    """
        }
    )
    reader, writer = await asyncio.open_unix_connection(str(socket_of(proc)))
    writer.write(encode_json(hello("raw")))
    for message in (
        {"type": "ping", "id": 1},
        {"type": "ping", "id": {"any": ["json"]}},
        {"type": "ping"},
        {"type": "request", "id": 2, "command": "ping"},
    ):
        writer.write(encode_json(message))
    decoder, answers = FrameDecoder(), []
    async with asyncio.timeout(20):
        while len(answers) < 5:
            answers += [f.json() for f in decoder.feed(await reader.read(65536))]
    assert answers[0]["type"] == "hello_ack"
    assert answers[1:] == [
        {"type": "pong", "id": 1},
        {"type": "pong", "id": {"any": ["json"]}},
        {"type": "pong"},
        {"type": "response", "id": 2, "ok": True, "result": {"pong": True}},
    ]
    writer.close()
    await proc.wait_for(r"RESULT seen request")
    assert "RESULT seen ping" not in proc.log
    conn = await HubConnection.connect(socket_of(proc), "test")
    await conn.ping()
    await conn.close()


async def test_replies_json_encode_refuses_take_the_general_path(hub):
    """Issue 11: lib/client.lua encodes its replies itself (json.encode) and queues the text;
    what json.encode refuses (NaN, an array with holes) still reaches the client, by the
    general conversion's rules (NaN is null, integer keys become strings)."""
    proc = await hub(
        plugins={
            "odd": """
        local commands = require("lib.commands")
        commands.register("t.plain", function() return {list = json.array({}), n = 1.5, s = "é"} end)
        commands.register("t.nan", function() return {x = 0/0, y = 1} end)
        commands.register("t.holes", function() return {[1] = "a", [3] = "c"} end)
    """
        }
    )
    conn = await HubConnection.connect(socket_of(proc), "test")
    assert await conn.request("t.plain") == {"list": [], "n": 1.5, "s": "é"}
    assert await conn.request("t.nan") == {"x": None, "y": 1}
    assert await conn.request("t.holes") == {"1": "a", "3": "c"}
    await conn.close()


async def test_hello_is_required_and_versioned(hub):
    proc = await hub()
    path = socket_of(proc)
    async with raw_connection(path) as (reader, writer):
        writer.write(encode_json({"type": "hello", "protocol": 99}))
        data = await reader.read()
        assert json.loads(data[5:])["message"] == (
            f"protocol error: protocol 99 is not supported (hub speaks {PROTOCOL_VERSION})"
        )
    async with raw_connection(path) as (reader, writer):
        writer.write(encode_json({"type": "request", "id": 1, "command": "ping"}))
        data = await reader.read()  # everything until the hub closes
        assert json.loads(data[5:])["message"] == (
            "protocol error: expected hello first, got 'request'"
        )


async def test_socket_primitive_callbacks_and_send(hub):
    proc = await hub(
        plugins={
            "sock": """
        socket.on_client_connected(function(id) log.info("RESULT connected " .. json.encode(socket.clients())) end)
        socket.on_message(function(id, msg)
          if msg.type == "shout" then
            socket.send(id, {type = "shouted", text = msg.text:upper()})
            socket.send_binary(id, "\\0\\1\\2")
          end
        end)
        socket.on_client_disconnected(function(id) log.info("RESULT gone " .. id) end)
        events.on("probe", function()
          log.info("RESULT unknown " .. json.encode({socket.send("socket:nope", {})}))
        end)
    """
        }
    )
    got: list[dict] = []
    frames = []
    conn = await HubConnection.connect(
        socket_of(proc), "shouter", on_message=got.append, on_frame=frames.append
    )
    clients = await proc.result("connected")
    assert {"id": conn.client_id, "name": "shouter"} in clients
    conn.send({"type": "shout", "text": "hey"})
    for _ in range(100):  # each round trip flushes what the plugin sent before it
        if frames:
            break
        await conn.request("ping")
    assert {"type": "shouted", "text": "HEY"} in got
    assert frames[0].type == 6 and frames[0].payload == b"\x00\x01\x02"
    await conn.close()
    assert await proc.result("gone") == conn.client_id


async def test_interceptor_blocks_and_rewrites_commands_and_observer_sees_outcomes(hub):
    proc = await hub(
        plugins={
            "guard": """
        hub.hooks.intercept("before_hub_command", "guard", function(req)
          if req.command == "hub.stop" then return nil end
          if req.command == "ping" then req.args.echo = "rewritten" end
          return req
        end)
        hub.hooks.on("after_hub_command", "audit", function(info)
          log.info("RESULT audit " .. json.encode(info))
        end)
    """
        }
    )
    conn = await HubConnection.connect(socket_of(proc), "t")
    assert await conn.request("ping", {"echo": "orig"}) == {"pong": True, "echo": "rewritten"}
    with pytest.raises(RequestFailed, match="blocked by a before_hub_command interceptor"):
        await conn.request("hub.stop")
    audit = [
        json.loads(line.split("RESULT audit ", 1)[1])
        for line in proc.lines
        if "RESULT audit" in line
    ]
    while len(audit) < 2:
        await proc.wait_for("RESULT audit", since=proc.mark() - 1)
        audit = [
            json.loads(line.split("RESULT audit ", 1)[1])
            for line in proc.lines
            if "RESULT audit" in line
        ]
    assert audit[0] == {"command": "ping", "client_id": conn.client_id, "ok": True}
    assert audit[1]["ok"] is False and "blocked" in audit[1]["error"]
    await conn.close()


async def test_plugin_commands_run_as_their_plugin_and_go_on_unload(hub, git_repo: Path):
    proc = await hub(
        plugins={
            "cmd": """
        local commands = require("lib.commands")
        commands.register("cmd.add", function(args) return args.a + args.b end,
          {description = "adds"})
        commands.register("cmd.fail", function() return nil, "not today" end)
        commands.register("cmd.crash", function() error("boom") end)
    """
        }
    )
    proc.expect_log(r"command 'cmd.crash' \(cmd\) failed")
    conn = await HubConnection.connect(socket_of(proc), "t")
    assert await conn.request("cmd.add", {"a": 2, "b": 40}) == 42
    with pytest.raises(RequestFailed, match="^not today$"):
        await conn.request("cmd.fail")
    with pytest.raises(RequestFailed, match="command 'cmd.crash' failed: .*boom"):
        await conn.request("cmd.crash")
    mark = proc.mark()
    write_plugin(git_repo, "cmd", "log.info('RESULT v2 true')")
    await proc.wait_for("plugin 'cmd' reloaded", since=mark)
    with pytest.raises(RequestFailed, match="unknown command 'cmd.add'"):
        await conn.request("cmd.add", {"a": 1, "b": 1})
    await conn.close()


async def test_mcp_channel_announces_tool_changes(hub, git_repo: Path):
    proc = await hub(plugins={"t": "mcp.tool('first', {}, function() return 'x' end)"})
    announced = asyncio.Event()

    def on_message(message: dict) -> None:
        # The hub's start may announce 'first' (count 1) after we subscribe; the edit's
        # announcement is the one with two tools.
        if message.get("event") == "tools_list_changed" and message["data"] == {"count": 2}:
            announced.set()

    conn = await HubConnection.connect(socket_of(proc), "t", on_message=on_message)
    conn.subscribe("mcp", {"context": {"agent_key": "a-1"}})
    await conn.request("ping")  # a round trip: the subscription is in place before the edit
    write_plugin(
        git_repo,
        "t",
        "mcp.tool('second', {}, function(p, ctx) return ctx end)\n"
        "mcp.tool('third', {}, function() return 'y' end)",
    )
    # The registry announces a change once it has settled (a timer after the reload): wait
    # for the event itself, however long the reload takes under load.
    await asyncio.wait_for(announced.wait(), 30)
    assert sorted(t["name"] for t in await conn.request("mcp.list_tools")) == ["second", "third"]
    result = await conn.request("mcp.call_tool", {"name": "second", "arguments": {}})
    assert json.loads(result["content"][0]["text"]) == {"agent_key": "a-1", "hub_id": conn.hub_id}
    await conn.close()


async def test_client_that_never_reads_is_cut_while_others_flow(hub):
    proc = await hub(
        plugins={
            "flood": """
        local commands = require("lib.commands")
        commands.register("flood", function(args, ctx)
          local chunk = string.rep("x", 65536)
          for i = 1, 400 do
            if not socket.send(ctx.client_id, {type = "chunk", i = i, data = chunk}) then
              log.info("RESULT cut_at " .. i)
              return "cut"
            end
            if i % 20 == 0 then coroutine.yield() end
          end
          return "sent all"
        end)
    """
        }
    )
    path = socket_of(proc)
    # The sluggard: hand-rolled so nothing reads its socket.
    async with raw_connection(path) as (_reader, writer):
        writer.write(encode_json(hello("sluggard")))
        writer.write(encode_json({"type": "request", "id": 1, "command": "flood"}))
        healthy = await HubConnection.connect(path, "healthy")
        cut_at = await proc.result("cut_at", timeout=20)
        assert 0 < cut_at < 400
        await proc.wait_for(r"\(sluggard\) disconnected: send queue over")
        for _ in range(20):
            assert await healthy.request("ping") == {"pong": True}
        await healthy.close()


frame_bytes = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda t, p: encode_frame(t, p), st.integers(1, 6), st.binary(max_size=64)),
    st.builds(
        lambda n, t: struct.pack("<IB", n, t), st.integers(0, 2**32 - 1), st.integers(0, 255)
    ),
    st.builds(
        lambda p: encode_frame(1, p), st.sampled_from([b"{", b"[]", b"null", b'"x"', b"\xff"])
    ),
)


async def test_fuzzed_connections_never_hurt_the_hub_or_a_good_client(hub):
    proc = await hub()
    path = socket_of(proc)
    good = await HubConnection.connect(path, "good")
    payloads: list[bytes] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(frame_bytes, min_size=1, max_size=6), st.booleans())
    def collect(parts, with_hello):
        prefix = encode_json(hello("fuzz")) if with_hello else b""
        payloads.append(prefix + b"".join(parts))

    collect()
    for i, payload in enumerate(payloads):
        async with raw_connection(path) as (reader, writer):
            writer.write(payload)
            writer.write_eof()
            # Read until the hub closes: every connection ends without hanging the hub.
            await asyncio.wait_for(reader.read(), 10)
        if i % 25 == 0:
            assert await good.request("ping", {"echo": i}) == {"pong": True, "echo": i}
    assert await good.request("ping") == {"pong": True}
    assert not good.closed.is_set()
    await good.close()
    assert os.path.exists(path)
