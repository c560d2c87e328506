"""A Python client of the hub socket (docs/protocol.md): handshake, requests, events.

Used by ``botster mcp-serve``, the tests, and the terminal UI. One ``HubConnection`` is one
socket connection; requests are matched to responses by id, so many may be in flight.

Terminals it subscribes to are read straight from their session processes when the hub offers
it (``terminal_direct``, see ``sessions/watchers.py``): frames from those streams reach
``on_frame`` exactly as if the hub had relayed them. Keys for such a terminal (``send_input``)
are then written to its PTY by this process, as the hub does (``sessions/pty_input.py``): a
keystroke and its echo pass through no process but the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botster.base.errors import BotsterError, ProtocolError, SessionError
from botster.base.framing import (
    JSON,
    PROCESS_EXITED,
    PTY_INPUT,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_json,
    encode_session,
)
from botster.sessions.pty_input import InputQueue, take_pty_fd
from botster.transports.handshake import BypassStream, connect_unix

__all__ = ["HubConnection", "RequestFailed"]

log = logging.getLogger("client")

# Bytes taken from the socket at a time, and the reader's buffer limit (it stops reading past
# twice this): what the hub has sent but this client has not handled stays small.
READ_SIZE = 32 << 10


class RequestFailed(BotsterError):
    """The hub answered a request with ok = false; the message is the hub's error."""


class HubConnection:
    """A connected, hello-acknowledged client.

    Args:
        on_message: called with every JSON message that is not a response (events, errors).
        on_frame: called with every non-JSON frame (PTY output, snapshots, binary).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        hello_ack: dict[str, Any],
        decoder: FrameDecoder,
        on_message: Callable[[dict[str, Any]], None] | None,
        on_frame: Callable[[Frame], None] | None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self.hello_ack = hello_ack
        self.hub_id: str = hello_ack.get("hub_id", "")
        self.client_id: str = hello_ack.get("client_id", "")
        self.on_message = on_message
        self.on_frame = on_frame
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._watches: dict[str, _TerminalWatch] = {}  # session id -> its direct stream
        self.closed = asyncio.Event()
        self.close_reason = ""
        # While the read loop waits with nothing buffered, reads are decoded and handled as
        # they arrive (``_take``): an echo reaches ``on_frame`` without a task wake-up.
        self._parked = False
        stream = writer.transport.get_protocol()
        if isinstance(stream, BypassStream):
            stream.bypass = self._take
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        socket_path: Path | str,
        client: str = "python",
        *,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        handshake_s: float = 5.0,
        direct_terminal: bool = True,
    ) -> HubConnection:
        """Connects and completes the hello handshake. With `direct_terminal` (the default)
        terminals are read from their session processes when the hub offers it.

        Raises:
            OSError: nothing listens at `socket_path`.
            ProtocolError: the hub refused the handshake.
            TimeoutError: no hello_ack within `handshake_s`.
        """
        decoder = FrameDecoder()
        async with asyncio.timeout(handshake_s):
            reader, writer, ack = await connect_unix(
                socket_path, client, decoder, read_size=READ_SIZE, direct_terminal=direct_terminal
            )
        return cls(reader, writer, ack, decoder, on_message, on_frame)

    async def _read_loop(self) -> None:
        try:
            data = b""
            while True:
                for frame in self._decoder.feed(data):
                    self._on_frame(frame)
                if len(data) == READ_SIZE:
                    # A full read: more is likely waiting, and read() would return it without
                    # yielding. Let the rest of the loop (a keystroke, a frame of the UI) have
                    # a turn first.
                    await asyncio.sleep(0)
                self._parked = True
                try:
                    data = await self._reader.read(READ_SIZE)
                finally:
                    self._parked = False
                if not data:
                    self.close_reason = self.close_reason or "hub closed the connection"
                    break
        except (ConnectionError, ProtocolError) as e:
            self.close_reason = str(e)
        finally:
            self.closed.set()
            for watch in list(self._watches.values()):
                watch.stop()
            self._watches.clear()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"connection closed: {self.close_reason}"))
            self._pending.clear()

    def _take(self, data: bytes) -> bytes:
        """The stream's bypass: handles `data` now if the read loop waits with nothing
        buffered (each read is a loop callback of its own, so a flood still lets the rest of
        the loop run between reads); else returns it for the loop, after what it holds."""
        if not self._parked or self.closed.is_set():
            return data
        try:
            for frame in self._decoder.feed(data):
                self._on_frame(frame)
        except ProtocolError as e:
            self.close_reason = str(e)
            self._writer.transport.abort()  # the read loop sees the end and fails what waits
        return b""

    def _on_frame(self, frame: Frame) -> None:
        if frame.type != JSON:
            if self.on_frame is not None:
                self.on_frame(frame)
            return
        msg = frame.json()
        if msg.get("type") in ("response", "pong"):
            fut = self._pending.pop(msg.get("id"), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
                return
        if msg.get("type") == "terminal_direct":
            self._watch(msg)
            return
        if msg.get("type") == "error":
            self.close_reason = str(msg.get("message", ""))
        if self.on_message is not None:
            self.on_message(msg)

    @property
    def direct_terminals(self) -> set[str]:
        """The sessions whose terminals this connection reads straight from the session
        process (their stream has started), rather than relayed by the hub."""
        return {sid for sid, watch in self._watches.items() if watch.started}

    def writes_pty(self, session_id: str) -> bool:
        """Whether keys for that session go straight into its PTY (else through the hub)."""
        watch = self._watches.get(session_id)
        return watch is not None and watch.input is not None

    def _watch(self, msg: dict[str, Any]) -> None:
        """The hub lets this client read a terminal from its session: connect there. The
        stream it replaces stops at once (nothing more of it reaches ``on_frame``)."""
        sid, path, ticket = msg.get("session_id"), msg.get("socket"), msg.get("ticket")
        if not (isinstance(sid, str) and isinstance(path, str) and isinstance(ticket, str)):
            log.warning("terminal_direct without session_id, socket and ticket: %r", msg)
            return
        old = self._watches.pop(sid, None)
        if old is not None:
            old.stop()
        watch = _TerminalWatch(self, sid, ticket)
        self._watches[sid] = watch
        watch.task = asyncio.get_running_loop().create_task(watch.connect(path))

    def _watch_failed(self, watch: _TerminalWatch, error: str) -> None:
        """A direct stream could not start: the hub relays that terminal instead."""
        if self._watches.get(watch.session_id) is watch:
            del self._watches[watch.session_id]
        if self.closed.is_set() or watch.stopped:
            return
        watch.stopped = True
        log.info("terminal %s: no direct stream (%s); the hub relays it", watch.session_id, error)
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.send(
                {
                    "type": "terminal_direct_failed",
                    "session_id": watch.session_id,
                    "ticket": watch.ticket,
                    "error": error,
                }
            )

    def send(self, message: dict[str, Any]) -> None:
        """Sends one JSON message without waiting."""
        if self.closed.is_set():
            raise ConnectionError(f"connection closed: {self.close_reason}")
        self._writer.write(encode_json(message))

    def send_input(self, session_id: str, data: bytes) -> None:
        """Types `data` into an attached session: straight into its PTY when this client holds
        it (a direct terminal), else as a PTY_INPUT frame the hub writes."""
        watch = self._watches.get(session_id)
        if watch is not None and watch.input is not None:
            watch.input.write(data)
            return
        self.send_raw(encode_frame(PTY_INPUT, encode_session(session_id, data)))

    async def _take_input(self, watch: _TerminalWatch, path: str) -> None:
        """Takes the PTY of a direct terminal, so keys need not pass through the hub."""
        try:
            fd = await take_pty_fd(path, 5.0)
        except SessionError as e:
            log.info("terminal %s: keys go through the hub (%s)", watch.session_id, e)
            return
        try:
            # Keys sent through the hub until now have reached the PTY once the pong is back:
            # the ones written here cannot overtake them.
            await self.ping()
        except ConnectionError:
            os.close(fd)
            return
        if watch.stopped or watch.exited:
            os.close(fd)
            return
        watch.input = InputQueue(
            fd,
            lambda n: log.warning(
                "terminal %s: %d bytes of input dropped: the program is not reading",
                watch.session_id,
                n,
            ),
        )

    def send_raw(self, data: bytes) -> None:
        """Sends already-encoded bytes (for tests of malformed input)."""
        self._writer.write(data)

    async def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Runs a hub command and returns its result.

        Raises:
            RequestFailed: the hub answered ok = false.
            ConnectionError: the connection closed first.
        """
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send({"type": "request", "id": rid, "command": command, "args": args or {}})
        msg = await fut
        if not msg.get("ok"):
            raise RequestFailed(str(msg.get("error")))
        return msg.get("result")

    async def ping(self) -> None:
        """A protocol-level ping (answered by the hub's transport, not by a command); returns
        once the pong arrives, so everything the hub sent before it has arrived too.

        Raises:
            ConnectionError: the connection closed first.
        """
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send({"type": "ping", "id": rid})
        await fut

    def subscribe(self, channel: str, params: dict[str, Any] | None = None) -> None:
        """Subscribes to a channel; the hub answers with a `subscribed` message."""
        self.send({"type": "subscribe", "channel": channel, "params": params or {}})

    async def close(self) -> None:
        """Closes the connection and waits for the reader to stop."""
        for watch in list(self._watches.values()):
            watch.stop()
        self._watches.clear()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        await self.closed.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _TerminalWatch(asyncio.BufferedProtocol):
    """One terminal read straight from its session process (``sessions/watchers.py``):
    its frames go to the connection's ``on_frame`` as they arrive."""

    def __init__(self, conn: HubConnection, session_id: str, ticket: str) -> None:
        self.conn = conn
        self.session_id = session_id
        self.ticket = ticket
        self.stopped = False
        self.started = False  # the first frame (the snapshot) arrived
        self.exited = False  # PROCESS_EXITED arrived
        self.input: InputQueue | None = None  # the session's PTY, once taken (keys)
        self.path = ""
        self.task: asyncio.Task[None] | None = None  # connecting
        self.input_task: asyncio.Task[None] | None = None  # taking the PTY
        self.transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._view = memoryview(bytearray(READ_SIZE))

    async def connect(self, path: str) -> None:
        self.path = path
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: self, path)
        except OSError as e:
            self.conn._watch_failed(self, f"cannot connect to {path}: {e.strerror or e}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.stopped:
            transport.close()
            return
        msg = {"type": "watch", "version": 1, "ticket": self.ticket}
        transport.write(encode_json(msg))  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.stopped:
            return
        on_frame = self.conn.on_frame
        try:
            for frame in self._decoder.feed(bytes(self._view[:nbytes])):
                if frame.type == JSON:  # the session refused the watch
                    message = frame.json().get("message", "refused")
                    self.conn._watch_failed(self, f"the session said: {message}")
                    self.stop()
                    return
                if not self.started:
                    self.started = True  # watching: the keys may go straight to the PTY too
                    self.input_task = asyncio.get_running_loop().create_task(
                        self.conn._take_input(self, self.path)
                    )
                if frame.type == PROCESS_EXITED:
                    self.exited = True
                    self._release_input()
                if on_frame is not None:
                    on_frame(frame)
                if self.stopped:
                    return
        except ProtocolError as e:
            log.warning("terminal %s: bad stream from the session: %s", self.session_id, e)
            self.stop()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_input()
        if not self.started and not self.stopped:
            self.conn._watch_failed(self, f"the session closed the stream ({exc or 'no reason'})")
        elif self.conn._watches.get(self.session_id) is self:
            del self.conn._watches[self.session_id]

    def stop(self) -> None:
        """Stops delivering frames and closes the stream."""
        self.stopped = True
        for task in (self.task, self.input_task):
            if task is not None and not task.done():
                task.cancel()
        self._release_input()
        if self.transport is not None:
            self.transport.close()

    def _release_input(self) -> None:
        if self.input is not None:
            self.input.close()
            os.close(self.input.fd)
            self.input = None
