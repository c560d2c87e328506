"""A Python client of the hub socket (docs/protocol.md): handshake, requests, events.

Used by ``botster mcp-serve``, the tests, and the terminal UI. One ``HubConnection`` is one
socket connection; requests are matched to responses by id, so many may be in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botster.base.errors import BotsterError, ProtocolError
from botster.base.framing import JSON, Frame, FrameDecoder, encode_json
from botster.transports.handshake import BypassStream, connect_unix

__all__ = ["HubConnection", "RequestFailed"]

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
    ) -> HubConnection:
        """Connects and completes the hello handshake.

        Raises:
            OSError: nothing listens at `socket_path`.
            ProtocolError: the hub refused the handshake.
            TimeoutError: no hello_ack within `handshake_s`.
        """
        decoder = FrameDecoder()
        async with asyncio.timeout(handshake_s):
            reader, writer, ack = await connect_unix(
                socket_path, client, decoder, read_size=READ_SIZE
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
        if msg.get("type") == "error":
            self.close_reason = str(msg.get("message", ""))
        if self.on_message is not None:
            self.on_message(msg)

    def send(self, message: dict[str, Any]) -> None:
        """Sends one JSON message without waiting."""
        if self.closed.is_set():
            raise ConnectionError(f"connection closed: {self.close_reason}")
        self._writer.write(encode_json(message))

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
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        await self.closed.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
