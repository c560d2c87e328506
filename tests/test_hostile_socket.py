"""Hostile input on the hub socket (issue 10, item 5): each attack gets a clear answer and
nothing else. Every test runs a bystander: a second client whose pings must stay answered and
an attached agent terminal whose output must arrive without a gap.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botster.base.framing import (
    JSON,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    FrameDecoder,
    encode_frame,
    encode_json,
    split_session,
)
from botster.transports.client import HubConnection

TICKER = """
require("lib.commands").register("test.ticker", function()
  return assert(pty.spawn({cmd = "python3", args = {"-u", "-c",
    "import time\\nfor i in range(10**6):\\n print(i)\\n time.sleep(0.005)"},
    rows = 5, cols = 40})):id()
end)
require("lib.commands").register("test.nan", function() return {nan = 0/0, inf = math.huge} end)
require("lib.commands").register("test.big", function(args) return string.rep("x", args.n) end)
"""

HELLO = encode_json({"type": "hello", "protocol": 1, "client": "attacker"})


def socket_of(proc) -> Path:
    entry = next((Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "hubs").glob("*.json"))
    return Path(json.loads(entry.read_text())["socket"])


def strict_json(data: bytes):
    """JSON as RFC 8259 has it: NaN and Infinity are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


class Bystander:
    """A well-behaved client and an agent terminal that watch the hub while it is attacked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.latencies: list[float] = []
        self.output = bytearray()
        self.resyncs = 0
        self._stop = asyncio.Event()

    async def start(self) -> None:
        self.conn = await HubConnection.connect(self.path, "bystander", on_frame=self._on_frame)
        self.sid = await self.conn.request("test.ticker")
        self.conn.subscribe("terminal", {"session_id": self.sid, "rows": 5, "cols": 40})
        self._pinger = asyncio.create_task(self._ping())
        async with asyncio.timeout(10):
            while b"\n3" not in self.output:
                await asyncio.sleep(0.01)

    def _on_frame(self, frame) -> None:
        _, data = split_session(frame.payload)
        if frame.type == SNAPSHOT:
            self.resyncs += 1
        elif frame.type == PTY_OUTPUT:
            self.output += data

    async def _ping(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            # A liveness bound, not a timing test: a wedged hub never answers.
            await asyncio.wait_for(self.conn.request("ping"), 10)
            self.latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.005)

    async def check(self) -> None:
        """Pings were answered all along; the ticker's output has no gap; a last ping works."""
        seen = len(self.output)
        async with asyncio.timeout(10):
            while len(self.output) < seen + 20:
                await asyncio.sleep(0.01)
        self._stop.set()
        await self._pinger
        assert self.latencies, "no ping completed"
        assert self.resyncs == 1, "the terminal fell behind and was resynced"
        lines = bytes(self.output).replace(b"\r", b"").split(b"\n")[1:-1]
        numbers = [int(x) for x in lines if x.strip().isdigit()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "output has a gap"
        assert await self.conn.request("ping", {"echo": "end"}) == {"pong": True, "echo": "end"}
        await self.conn.close()


@pytest.fixture
async def attacked(hub):
    """Factory: a hub with the ticker plugin and a running bystander."""
    made: list[Bystander] = []

    async def start(config: dict | None = None):
        proc = await hub(plugins={"ticker": TICKER}, config=config)
        by = Bystander(socket_of(proc))
        await by.start()
        made.append(by)
        return proc, by

    yield start
    for by in made:
        by._stop.set()
        by._pinger.cancel()


async def read_all(reader: asyncio.StreamReader, timeout: float = 20) -> list[dict]:
    """Every JSON message until the hub closes the connection."""
    data = await asyncio.wait_for(reader.read(), timeout)
    return [strict_json(f.payload) for f in FrameDecoder().feed(data) if f.type == JSON]


async def next_message(reader: asyncio.StreamReader, decoder: FrameDecoder) -> dict:
    while True:
        for frame in decoder.feed(b""):
            return strict_json(frame.payload)
        data = await asyncio.wait_for(reader.read(1 << 16), 20)
        assert data, "the hub closed the connection"
        for frame in decoder.feed(data):
            return strict_json(frame.payload)


async def hello(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameDecoder]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(HELLO)
    decoder = FrameDecoder(64 << 20)
    try:
        ack = await next_message(reader, decoder)
        assert ack["type"] == "hello_ack", ack
    except BaseException:
        writer.close()
        raise
    return reader, writer, decoder


def hub_rss(proc) -> int:
    status = Path(f"/proc/{proc.proc.pid}/status").read_text()
    return (
        int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) << 10
    )


async def test_issue10_unfinished_frames_are_capped_for_the_whole_hub(attacked):
    proc, by = await attacked({"socket_pending_limit_mb": 8})
    proc.expect_log("unfinished frames")
    path = socket_of(proc)
    before = hub_rss(proc)
    # PTY input: a JSON message this big would be discarded as it arrives, never held
    chunk = struct.pack("<IB", 16 << 20, PTY_INPUT) + b"x" * (3 << 20)
    clients = []
    for _ in range(20):  # 60 MiB promised-and-unfinished on today's main
        reader, writer, _ = await hello(path)
        writer.write(chunk)
        clients.append((reader, writer))
    for _reader, writer in clients:
        await writer.drain()
    for _, writer in clients:
        writer.write_eof()  # the hub answers the refused ones, then hangs up on them
    refused = []
    for reader, _ in clients:
        messages = await read_all(reader)
        refused += [m for m in messages if m.get("code") == "overloaded"]
    # 8 MiB hold two clients' 3 MiB at most; whoever grows past the line is refused
    assert len(refused) >= 18
    assert "unfinished frames" in refused[0]["message"]
    assert "socket_pending_limit_mb = 8" in refused[0]["message"]
    assert hub_rss(proc) - before < 40 << 20
    for _, writer in clients:
        writer.close()
    await by.check()


async def test_issue10_an_unfinished_frame_has_a_deadline(attacked):
    proc, by = await attacked({"socket_frame_timeout_s": 1})
    reader, writer, _ = await hello(socket_of(proc))
    writer.write(struct.pack("<IB", 1000, JSON) + b'{"type":')
    messages = await read_all(reader)
    assert messages[-1]["code"] == "protocol_error"
    assert "unfinished for 1 s" in messages[-1]["message"]
    writer.close()
    await by.check()


async def test_issue10_connections_are_limited_with_a_clear_refusal(attacked):
    proc, by = await attacked({"socket_max_clients": 12})
    path = socket_of(proc)
    idle = [await hello(path) for _ in range(11)]  # the bystander holds the twelfth
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(HELLO)
    messages = await read_all(reader)
    assert messages == [
        {
            "type": "error",
            "code": "overloaded",
            "message": "the hub already has 12 connections (socket_max_clients = 12); "
            "try again later",
        }
    ]
    writer.close()
    idle.pop()[1].close()
    for _ in range(100):  # the freed slot is taken again once the hub saw the close
        try:
            r, w, _ = await hello(path)
        except AssertionError:
            await by.conn.request("ping")
            continue
        idle.append((r, w, None))
        break
    else:
        raise AssertionError("the freed connection slot was never reusable")
    for _, w, _ in idle:
        w.close()
    await by.check()


@pytest.mark.parametrize("depth", [65, 900, 1000, 5000, 1 << 20])
async def test_issue10_deep_json_gets_bad_message_and_one_short_log_line(attacked, depth):
    proc, by = await attacked()
    proc.expect_log("bad message")
    reader, writer, decoder = await hello(socket_of(proc))
    args = "[" * depth + "]" * depth
    payload = f'{{"type":"request","id":1,"command":"ping","args":{{"echo":{args}}}}}'.encode()
    mark = proc.mark()
    writer.write(encode_frame(JSON, payload))
    msg = await next_message(reader, decoder)  # a request: its caller gets a response
    assert msg == {
        "type": "response",
        "id": 1,
        "ok": False,
        "error": "JSON nested deeper than 64 levels",
    }
    # the connection stays open and works
    writer.write(encode_json({"type": "request", "id": 2, "command": "ping"}))
    assert (await next_message(reader, decoder))["result"] == {"pong": True}
    logged = [line for line in proc.lines[mark:] if "bad message" in line]
    assert len(logged) == 1 and len(logged[0]) < 300
    writer.close()
    await by.check()


@pytest.mark.parametrize(
    "literal,reason",
    [
        ("NaN", "NaN is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("1e400", "number 1e400 is out of range"),
        (str(1 << 63), f"integer {1 << 63} is out of range"),
        (str(-(1 << 63) - 1), f"integer {-(1 << 63) - 1} is out of range"),
    ],
)
async def test_issue10_numbers_out_of_range_get_bad_message(attacked, literal, reason):
    proc, by = await attacked()
    proc.expect_log("bad message")
    reader, writer, decoder = await hello(socket_of(proc))
    payload = f'{{"type":"request","id":1,"command":"ping","args":{{"echo":{literal}}}}}'
    writer.write(encode_frame(JSON, payload.encode()))
    assert await next_message(reader, decoder) == {
        "type": "response",
        "id": 1,
        "ok": False,
        "error": reason,
    }
    # not a request: a bad_message error
    payload = f'{{"type":"subscribe","channel":"hub","params":{{"x":{literal}}}}}'
    writer.write(encode_frame(JSON, payload.encode()))
    assert await next_message(reader, decoder) == {
        "type": "error",
        "code": "bad_message",
        "message": reason,
    }
    edge = (1 << 63) - 1
    writer.write(
        encode_json({"type": "request", "id": 2, "command": "ping", "args": {"echo": edge}})
    )
    assert (await next_message(reader, decoder))["result"] == {"pong": True, "echo": edge}
    writer.close()
    await by.check()


async def test_issue10_nan_from_a_plugin_goes_out_as_valid_json(attacked):
    proc, by = await attacked()
    reader, writer, decoder = await hello(socket_of(proc))
    writer.write(encode_json({"type": "request", "id": 1, "command": "test.nan"}))
    msg = await next_message(reader, decoder)  # strict: NaN or Infinity would fail here
    assert msg["result"] == {"nan": None, "inf": None}
    writer.close()
    await by.check()


async def test_issue10_a_response_over_the_send_limit_reaches_a_client_that_reads(attacked):
    proc, by = await attacked()
    conn = await HubConnection.connect(socket_of(proc), "reader")
    n = 12 << 20  # over the 8 MiB send limit, under the 16 MiB frame limit
    assert len(await conn.request("test.big", {"n": n})) == n
    assert await conn.request("ping") == {"pong": True}
    await conn.close()
    await by.check()


async def test_issue10_message_over_the_size_limit_gets_bad_message(attacked):
    proc, by = await attacked({"socket_max_message_kb": 64})
    proc.expect_log("bad message")
    reader, writer, decoder = await hello(socket_of(proc))
    big = {"type": "request", "id": 1, "command": "ping", "args": {"echo": "x" * (70 << 10)}}
    writer.write(encode_json(big))
    msg = await next_message(reader, decoder)
    assert msg["id"] == 1 and not msg["ok"] and "socket_max_message_kb" in msg["error"]
    writer.write(encode_json({"type": "request", "id": 2, "command": "ping"}))
    assert (await next_message(reader, decoder))["id"] == 2
    writer.close()
    await by.check()


async def test_issue10_large_messages_are_decoded_without_stalling_the_loop(attacked):
    """2 MiB of small objects takes the C decoder ~80 ms; off the loop, pings keep flowing."""
    proc, by = await attacked()
    reader, writer, decoder = await hello(socket_of(proc))
    echo = [{"a": 1}] * 250_000
    writer.write(encode_json({"type": "request", "id": 1, "command": "wat", "args": echo}))
    msg = await next_message(reader, decoder)
    assert msg["ok"] is False and "unknown command 'wat'" in msg["error"]
    writer.close()
    await by.check()


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _in_range(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_in_range, value.values()))
    if isinstance(value, list):
        return all(map(_in_range, value))
    return True


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
deep = st.integers(1, 200).map(lambda n: json.loads("[" * n + "]" * n))


async def test_issue10_fuzzed_json_is_answered_or_refused_never_dropped(attacked):
    proc, by = await attacked()
    proc.expect_log("bad message")
    examples: list = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(json_values | deep)
    def collect(value):
        examples.append(value)

    collect()
    reader, writer, decoder = await hello(socket_of(proc))
    for i, value in enumerate(examples):
        # Python's encoder writes NaN and Infinity as the attacker would.
        raw = json.dumps({"type": "request", "id": i, "command": "ping", "args": {"v": value}})
        writer.write(encode_frame(JSON, raw.encode()))
        msg = await next_message(reader, decoder)
        acceptable = _in_range(value) and _depth(value) + 2 <= 64
        if acceptable:
            assert msg["type"] == "response" and msg["id"] == i and msg["ok"], (value, msg)
        else:
            assert msg["type"] == "response" and msg["id"] == i and not msg["ok"], (value, msg)
    writer.close()
    await by.check()


async def test_issue10_an_oversized_json_message_is_not_held_while_it_arrives(attacked):
    proc, by = await attacked({"socket_max_message_kb": 64, "socket_frame_timeout_s": 2})
    proc.expect_log("bad message")
    reader, writer, decoder = await hello(socket_of(proc))
    # 15 MiB promised, 3 MiB sent: refused at once, nothing held, then the deadline applies
    writer.write(struct.pack("<IB", 15 << 20, JSON) + b'{"type":"x"' + b" " * (3 << 20))
    msg = await next_message(reader, decoder)
    assert msg["code"] == "bad_message" and "socket_max_message_kb" in msg["message"]
    last = await next_message(reader, decoder)
    assert last["code"] == "protocol_error" and "unfinished for 2 s" in last["message"]
    writer.close()
    await by.check()


async def test_issue10_an_agent_s_deep_tool_call_through_mcp_serve_fails_clearly(
    hub, git_repo, isolated_env
):
    from tests.test_mcp_serve import TOOLS, mcp_client

    proc = await hub(plugins={"tools": TOOLS})
    proc.expect_log("bad message")
    deep = json.loads("[" * 200 + "]" * 200)
    async with mcp_client(git_repo, isolated_env, []) as session:
        from mcp.shared.exceptions import MCPError

        with pytest.raises(MCPError, match="JSON nested deeper than 64 levels"):
            await asyncio.wait_for(session.call_tool("add", {"a": deep, "b": 1}), 30)
        ok = await session.call_tool("add", {"a": 2, "b": 40})
        assert json.loads(ok.content[0].text)["sum"] == 42


async def test_issue10_300_idle_clients_meet_the_default_connection_limit(attacked):
    proc, by = await attacked()
    proc.expect_log("socket_max_clients = 256")
    path = socket_of(proc)
    held, refused = [], 0
    for _ in range(300):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(HELLO)
        decoder = FrameDecoder()
        msg = await next_message(reader, decoder)
        if msg["type"] == "hello_ack":
            held.append(writer)
        else:
            assert msg["code"] == "overloaded", msg
            refused += 1
            writer.close()
    assert (len(held), refused) == (255, 45)  # the bystander holds one of the 256
    for writer in held:
        writer.close()
    await by.check()
