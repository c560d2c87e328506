"""The hub socket's fast paths (issue 11). The server: whole small frames (keystrokes, small
JSON messages) are handled as they arrive, without waking the client's task; order is kept
across every switch between that path and the task's (unfinished, large or refused frames).
The client (``HubConnection``): what arrives while its read loop waits is decoded and handed
to ``on_frame`` at once, in order, partial frames included.

The server here is the hub's ``SocketServer`` on a real Unix socket, alone: its callbacks
record what reaches the hub. Byte streams are fed to the connection's protocol
(``data_received``, the transport's entry point) cut where a test chooses, so every way the
kernel could split a stream is reachable deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botster.base.framing import (
    INLINE_DECODE,
    PTY_INPUT,
    PTY_OUTPUT,
    Frame,
    encode_frame,
    encode_json,
    encode_session,
    split_session,
)
from botster.transports.client import HubConnection
from botster.transports.handshake import hello
from botster.transports.socket_server import SocketClient, SocketServer


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.clients: list[SocketClient] = []
        self.gone: list[str] = []

    def message(self, client: SocketClient, message: dict[str, Any]) -> None:
        self.events.append(("msg", message.get("n")))
        self.changed.set()

    def pty_input(self, client: SocketClient, payload: bytes) -> None:
        self.events.append(("in", payload))
        self.changed.set()

    def connected(self, client: SocketClient) -> None:
        self.clients.append(client)
        self.changed.set()

    def disconnected(self, client: SocketClient) -> None:
        self.gone.append(client.close_reason or "")
        self.changed.set()

    async def until(self, predicate: Any, what: str) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[
    tuple[_Recorder, SocketClient, asyncio.StreamReader, asyncio.StreamWriter]
]:
    """A server, one connected client past its hello; yields (recorder, the server's side of
    the client, the client's reader and writer)."""
    rec = _Recorder()
    with tempfile.TemporaryDirectory(prefix="bt-fast-", dir="/tmp") as d:
        server = SocketServer(
            Path(d) / "hub.sock",
            "hub-test",
            on_connect=rec.connected,
            on_message=rec.message,
            on_disconnect=rec.disconnected,
            on_pty_input=rec.pty_input,
        )
        await server.start()
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        try:
            writer.write(encode_json(hello("fast-test")))
            await rec.until(lambda: rec.clients, "the client's hello")
            yield rec, rec.clients[0], reader, writer
        finally:
            writer.close()
            await server.stop()


def _stream_of(client: SocketClient) -> Any:
    return client.writer.transport.get_protocol()


async def _parked(client: SocketClient) -> None:
    """Waits until the client's task waits for input again (between frames, nothing held)."""
    stream = _stream_of(client)
    async with asyncio.timeout(10):
        while stream.bypass is None or not stream.bypass.__self__.parked:
            await asyncio.sleep(0)


async def _settled(client: SocketClient) -> None:
    """Lets the client's task take what it has (it parks, unless a frame is unfinished)."""
    for _ in range(5):
        await asyncio.sleep(0)


def _keys(sid: str, data: bytes) -> bytes:
    return encode_frame(PTY_INPUT, encode_session(sid, data))


async def test_a_keystroke_is_handled_in_data_received_without_the_task() -> None:
    async with _server() as (rec, client, _, _):
        await _parked(client)
        frame = _keys("s1", b"k")
        _stream_of(client).data_received(frame + encode_json({"type": "m", "n": 1}))
        # No await in between: the fast path handled both frames inside the call.
        assert rec.events == [("in", encode_session("s1", b"k")), ("msg", 1)]


# One stream with every kind of switch: fast frames, a large JSON message (decoded off the
# loop by the task), a frame type clients may not send... minus that one (it disconnects).
_BIG = {"type": "m", "n": 3, "pad": "x" * (INLINE_DECODE + 10)}
_FRAMES: list[tuple[bytes, tuple[str, Any]]] = [
    (_keys("s1", b"a"), ("in", encode_session("s1", b"a"))),
    (encode_json({"type": "m", "n": 1}), ("msg", 1)),
    (_keys("s1", b"bb"), ("in", encode_session("s1", b"bb"))),
    (encode_json({"type": "m", "n": 2}), ("msg", 2)),
    (encode_json(_BIG), ("msg", 3)),
    (_keys("s1", b"c"), ("in", encode_session("s1", b"c"))),
    (encode_json({"type": "m", "n": 4}), ("msg", 4)),
    (_keys("s1", b"d" * 300), ("in", encode_session("s1", b"d" * 300))),
]
_STREAM = b"".join(f for f, _ in _FRAMES)
_BOUNDARIES = [sum(len(f) for f, _ in _FRAMES[:i]) for i in range(len(_FRAMES) + 1)]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(
        st.one_of(st.sampled_from(_BOUNDARIES), st.integers(0, len(_STREAM))), max_size=6
    ),
    wait=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_order_is_kept_however_the_stream_is_cut(cuts: list[int], wait: list[bool]) -> None:
    async def run() -> None:
        async with _server() as (rec, client, _, _):
            stream = _stream_of(client)
            points = sorted({0, len(_STREAM), *cuts})
            for i, (a, b) in enumerate(zip(points, points[1:], strict=False)):
                if wait[i % len(wait)]:
                    await _settled(client)
                stream.data_received(_STREAM[a:b])
            expected = [e for _, e in _FRAMES]
            await rec.until(lambda: len(rec.events) >= len(expected), "every frame")
            assert rec.events == expected
            assert not rec.gone

    asyncio.run(run())


async def test_a_refused_frame_after_fast_ones_still_disconnects_with_the_reason() -> None:
    async with _server() as (rec, client, reader, _):
        await _parked(client)
        bad = encode_frame(PTY_OUTPUT, encode_session("s1", b"x"))  # hub -> client only
        _stream_of(client).data_received(_keys("s1", b"a") + bad + _keys("s1", b"b"))
        await rec.until(lambda: rec.gone, "the disconnect")
        assert rec.events == [("in", encode_session("s1", b"a"))]
        assert "frame type 0x02" in rec.gone[0]
        sent = await reader.read()
        assert b'"protocol_error"' in sent


async def test_malformed_pty_input_on_the_fast_path_is_the_tasks_protocol_error() -> None:
    async with _server() as (rec, client, reader, _):
        await _parked(client)
        recorded = rec.pty_input

        def strict(c: SocketClient, payload: bytes) -> None:
            split_session(payload)  # raises ProtocolError first, as the hub's channel does
            recorded(c, payload)

        client.server.on_pty_input = strict
        short = encode_frame(PTY_INPUT, b"\x09")  # shorter than its session id's length
        _stream_of(client).data_received(_keys("s1", b"a") + short + _keys("s1", b"b"))
        await rec.until(lambda: rec.gone, "the disconnect")
        assert rec.events == [("in", encode_session("s1", b"a"))]
        assert "shorter than its id length" in rec.gone[0]
        assert b'"protocol_error"' in await reader.read()


async def test_keystrokes_through_the_kernel_arrive_whole_and_in_order() -> None:
    async with _server() as (rec, _, _, writer):
        chunks = [bytes([65 + i % 26]) * (1 + i % 7) for i in range(300)]
        for i, chunk in enumerate(chunks):
            writer.write(_keys("s1", chunk))
            if i % 3 == 0:
                await writer.drain()
                await asyncio.sleep(0)
        await rec.until(lambda: len(rec.events) >= len(chunks), "every keystroke")
        assert rec.events == [("in", encode_session("s1", c)) for c in chunks]


@contextlib.asynccontextmanager
async def _client() -> AsyncIterator[tuple[HubConnection, list[Frame], Any]]:
    """A HubConnection to a bare server; yields (connection, frames it got, its stream)."""
    async with _server() as (rec, _, _, _):
        got: list[Frame] = []
        path = rec.clients[0].server.path
        conn = await HubConnection.connect(path, "fast-client", on_frame=got.append)
        try:
            yield conn, got, conn._writer.transport.get_protocol()
        finally:
            await conn.close()


async def _client_parked(conn: HubConnection) -> None:
    async with asyncio.timeout(10):
        while not conn._parked:
            await asyncio.sleep(0)


def _out(sid: str, data: bytes) -> bytes:
    return encode_frame(PTY_OUTPUT, encode_session(sid, data))


async def test_an_echo_reaches_on_frame_inside_data_received() -> None:
    async with _client() as (conn, got, stream):
        await _client_parked(conn)
        stream.data_received(_out("s1", b"echo"))
        assert [(f.type, f.payload) for f in got] == [(PTY_OUTPUT, encode_session("s1", b"echo"))]


_OUT = [_out("s1", bytes([97 + i % 26]) * (1 + i * 37 % 90)) for i in range(12)]
_OUT_STREAM = b"".join(_OUT)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(0, len(_OUT_STREAM)), max_size=8),
    wait=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_the_client_keeps_order_however_output_is_cut(cuts: list[int], wait: list[bool]) -> None:
    async def run() -> None:
        async with _client() as (conn, got, stream):
            points = sorted({0, len(_OUT_STREAM), *cuts})
            for i, (a, b) in enumerate(zip(points, points[1:], strict=False)):
                if wait[i % len(wait)]:
                    await _client_parked(conn)
                stream.data_received(_OUT_STREAM[a:b])
            async with asyncio.timeout(10):
                while len(got) < len(_OUT):
                    await asyncio.sleep(0)
            assert [f.payload for f in got] == [f[5:] for f in _OUT]

    asyncio.run(run())


async def test_a_bad_frame_on_the_client_fast_path_closes_with_the_reason() -> None:
    async with _client() as (conn, got, stream):
        await _client_parked(conn)
        waiting = asyncio.ensure_future(conn.request("never.answered"))
        await asyncio.sleep(0)
        stream.data_received(_out("s1", b"ok") + b"\x05\x00\x00\x00\x7f1234")
        async with asyncio.timeout(10):
            await conn.closed.wait()
        assert [f.payload for f in got] == [encode_session("s1", b"ok")]
        assert "unknown frame type 0x7f" in conn.close_reason
        try:
            await waiting
        except ConnectionError as e:
            assert "unknown frame type" in str(e)
        else:
            raise AssertionError("the pending request was not failed")
