"""The hub's Unix socket: accepts local clients, frames, handshakes, fairness.

Owns: the listening socket (0600 in the 0700 runtime dir), one ``SocketClient`` per
connection, the ``hello`` handshake, decoding within the hub's limits (``SocketLimits``: frame
and message size, JSON depth and numbers, connections, memory held by unfinished frames across
all clients, a deadline per unfinished frame), and the bounded send buffer that cuts a client
which stops reading. A rejected input costs one short log line, never a traceback. Clients,
messages and PTY input go to the hub's client channel (``botster.transports.channel``), which
the primitives observe; what a message means is the embedded Lua's business
(``lib/client.lua``). The protocol is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botster.base.errors import HubError, ProtocolError
from botster.base.framing import (
    BINARY,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_FRAME,
    INLINE_DECODE,
    JSON,
    PTY_INPUT,
    BadMessage,
    FrameDecoder,
    decode_message,
    encode_frame,
    encode_json,
    request_id_of,
)
from botster.transports.handshake import BypassStream, check_hello, hello_ack

__all__ = ["SocketClient", "SocketLimits", "SocketServer"]

log = logging.getLogger("socket")

HELLO_TIMEOUT_S = 5.0
READ_SIZE = 64 << 10
DEFAULT_SEND_LIMIT = 8 << 20  # bytes queued for one client before it is cut
# The kernel's share of what waits for a client (Linux doubles it). Small, so that what a slow
# client has not read yet waits where the hub can see it (the transport's buffer): a terminal
# forwarder holds output, or resyncs, on that number, and bytes hidden in a 200 KiB kernel
# buffer would be bytes of latency between a keystroke and its echo.
CLIENT_SNDBUF = 32 << 10
LINGER_S = 2.0  # how long a refused client may keep sending before the hub hangs up
_PONG = {"type": "pong"}
LOG_TEXT = 200  # a rejected input is logged in one line of at most this many characters


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """What one hub accepts from its socket clients (config settings in parentheses).

    Args:
        max_frame: largest frame, any type, in bytes.
        max_message: largest JSON message, in bytes (``socket_max_message_kb``).
        max_depth: deepest JSON nesting, the message object included (``socket_max_json_depth``).
        max_clients: connections at once, handshaking ones included (``socket_max_clients``).
        max_pending: bytes of unfinished frames held for all clients together
            (``socket_pending_limit_mb``).
        frame_timeout: seconds a started frame may take to arrive (``socket_frame_timeout_s``).
        send_limit: bytes that may wait for one client beyond one large message in flight
            (``socket_send_limit_mb``).
    """

    max_frame: int = DEFAULT_MAX_FRAME
    max_message: int = 4 << 20
    max_depth: int = DEFAULT_MAX_DEPTH
    max_clients: int = 256
    max_pending: int = 64 << 20
    frame_timeout: float = 30.0
    send_limit: int = DEFAULT_SEND_LIMIT

    @classmethod
    def from_config(cls, setting: Callable[[str], Any]) -> SocketLimits:
        """The limits from hub settings (``Config.setting``)."""
        return cls(
            max_message=int(setting("socket_max_message_kb")) << 10,
            max_depth=int(setting("socket_max_json_depth")),
            max_clients=int(setting("socket_max_clients")),
            max_pending=int(setting("socket_pending_limit_mb")) << 20,
            frame_timeout=float(setting("socket_frame_timeout_s")),
            send_limit=int(setting("socket_send_limit_mb")) << 20,
        )


def _short(text: object) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= LOG_TEXT else line[: LOG_TEXT - 3] + "..."


class SocketClient:
    """One connected client (a ``ChannelClient``). Sends never block: they queue, up to
    `send_limit` bytes."""

    transport = "socket"

    def __init__(self, server: SocketServer, client_id: str, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.id = client_id
        self.writer = writer
        self.name = "unknown"
        self.direct_terminal = False
        self.closed = False
        self.close_reason: str | None = None
        self._enqueued = 0  # bytes ever queued
        self._large_end = 0  # where the last message larger than the send limit ends

    def queued(self) -> int:
        """Bytes accepted for sending but not yet written to the socket."""
        return self.writer.transport.get_write_buffer_size()

    async def drained(self) -> None:
        """Returns once the send buffer is below the transport's low-water mark."""
        await self.writer.drain()

    def send_frame(self, data: bytes) -> bool:
        """Queues one encoded frame. False if the client is gone or was cut for not reading.

        One frame larger than the send limit may be in flight: it is not counted against the
        limit, so a client that reads gets a response of any size; a second one before the
        first has gone, or more than the limit behind it, means the client is not reading.
        """
        if self.closed:
            return False
        limit = self.server.send_limit
        queued = self.queued()
        large_left = max(0, self._large_end - (self._enqueued - queued))
        backlog = queued - large_left
        too_much = (
            (large_left > 0 or backlog > limit)
            if len(data) > limit
            else backlog + len(data) > limit
        )
        if too_much:
            self.close(
                f"send queue over {limit} bytes: the client stopped reading",
                code="slow_client",
                notify=False,
            )
            return False
        self.writer.write(data)
        self._enqueued += len(data)
        if len(data) > limit:
            self._large_end = self._enqueued
        return True

    def send_json(self, message: Any) -> bool:
        """Queues a JSON message."""
        return self.send_frame(encode_json(message))

    def send_binary(self, data: bytes) -> bool:
        """Queues an opaque binary frame."""
        return self.send_frame(encode_frame(BINARY, data))

    def close(
        self, reason: str, *, code: str = "closed", notify: bool = True, linger: bool = False
    ) -> None:
        """Closes the connection; with `notify`, first tells the client why (best effort).

        With `linger`, only the sending side is shut: the caller then discards what the client
        still sends (see ``SocketServer._linger``), because closing a socket with unread input
        resets it, and the reset can destroy the error message before the client reads it.
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if notify:
            with contextlib.suppress(Exception):
                self.writer.write(encode_json({"type": "error", "code": code, "message": reason}))
        if code == "slow_client":
            self.writer.transport.abort()  # its buffer is full: there is nothing to flush
        elif linger and self.writer.can_write_eof():
            with contextlib.suppress(Exception):
                self.writer.write_eof()
        else:
            self.writer.close()
        log.info("client %s (%s) disconnected: %s", self.id, self.name, _short(reason))

    def reject(self, reason: str, payload: bytes = b"") -> None:
        """Answers an input the hub will not take; the connection stays.

        A request whose id can be read gets a failed response (its caller is waiting for
        one); anything else gets a ``bad_message`` error.
        """
        log.warning("client %s (%s): bad message: %s", self.id, self.name, _short(reason))
        rid = request_id_of(payload) if payload else None
        if rid is not None:
            self.send_json({"type": "response", "id": rid, "ok": False, "error": reason})
        else:
            self.send_json({"type": "error", "code": "bad_message", "message": reason})


class SocketServer:
    """Listens on the hub socket and drives each client.

    Args:
        path: the socket path.
        hub_id: sent in the handshake.
        on_connect / on_message / on_disconnect: called on the loop with the client.
        max_frame: largest frame accepted from a client.
        send_limit: bytes that may wait for one client before it is disconnected.
    """

    def __init__(
        self,
        path: Path,
        hub_id: str,
        *,
        on_connect: Callable[[SocketClient], None],
        on_message: Callable[[SocketClient, dict[str, Any]], None],
        on_disconnect: Callable[[SocketClient], None],
        on_pty_input: Callable[[SocketClient, bytes], None] | None = None,
        limits: SocketLimits | None = None,
    ) -> None:
        self.path = path
        self.hub_id = hub_id
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.on_pty_input = on_pty_input
        self.limits = limits or SocketLimits()
        self.max_frame = self.limits.max_frame
        self.send_limit = self.limits.send_limit
        self.pending = 0  # bytes of unfinished frames held for all clients
        self.clients: dict[str, SocketClient] = {}
        # Large JSON messages are decoded here, by the pure-Python scanner, which gives the
        # GIL back to the loop as it goes; one thread, so they queue rather than pile up.
        self._decode_pool: ThreadPoolExecutor | None = None
        self._server: asyncio.AbstractServer | None = None
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Binds the socket; a stale file from a dead hub is replaced, a live one refused.

        Raises:
            HubError: another process answers on the path.
        """
        if self.path.exists() or self.path.is_symlink():
            try:
                _, w = await asyncio.wait_for(asyncio.open_unix_connection(self.path), 0.25)
            except (OSError, TimeoutError):
                self.path.unlink(missing_ok=True)
            else:
                w.close()
                raise HubError(f"{self.path} is in use by another process")
        old = os.umask(0o077)
        loop = asyncio.get_running_loop()

        def stream() -> BypassStream:
            return BypassStream(
                asyncio.StreamReader(limit=READ_SIZE, loop=loop), self._serve, loop=loop
            )

        try:
            self._server = await loop.create_unix_server(stream, path=str(self.path))
        finally:
            os.umask(old)
        self.path.chmod(0o600)
        log.info("listening on %s", self.path)

    async def stop(self) -> None:
        """Stops accepting, disconnects every client, removes the socket file."""
        if self._server is not None:
            self._server.close()
        for client in list(self.clients.values()):
            client.close("hub is shutting down", code="shutdown")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _new_id(self) -> str:
        return f"socket:{next(self._seq):x}{secrets.token_hex(2)}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        client = SocketClient(self, self._new_id(), writer)
        if len(self._tasks) >= self.limits.max_clients:
            # Refused before any read: costs one write and one log line.
            client.close(
                f"the hub already has {len(self._tasks)} connections "
                f"(socket_max_clients = {self.limits.max_clients}); try again later",
                code="overloaded",
                linger=True,
            )
            await self._linger(reader, writer, LINGER_S / 4)
            return
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
        decoder = FrameDecoder(self.max_frame, self.limits.max_message)
        held = 0  # this client's share of self.pending
        registered = False
        fast: _FastPath | None = None
        try:
            hello = await asyncio.wait_for(self._read_hello(reader, decoder), HELLO_TIMEOUT_S)
            client.name = str(hello.get("client", "unknown"))[:64]
            client.direct_terminal = hello.get("direct_terminal") is True
            client.send_json(
                hello_ack(self.hub_id, client.id, self.max_frame, self.limits.max_message)
            )
            self.clients[client.id] = client
            registered = True
            log.info("client %s (%s) connected", client.id, client.name)
            self.on_connect(client)
            stream = writer.transport.get_protocol()
            if isinstance(stream, BypassStream):
                fast = _FastPath(self, client)
                stream.bypass = fast.take
            data = b""  # frames sent right behind the hello are already buffered
            frame_started = time.monotonic()
            while not client.closed:
                completed = False
                for frame in decoder.feed(data):
                    completed = True
                    if client.closed:
                        break
                    if frame.skipped:
                        client.reject(
                            f"message of {frame.skipped} bytes is over the limit of "
                            f"{self.limits.max_message} (socket_max_message_kb)",
                            frame.payload,
                        )
                    else:
                        await self._dispatch(client, frame.type, frame.payload)
                if client.closed:
                    break
                grew = decoder.buffered > held
                self.pending += decoder.buffered - held
                held = decoder.buffered
                # Only the client that grows a large unfinished frame is refused: a small one
                # (what one read brings) never is, so well-behaved clients keep working.
                if grew and held > READ_SIZE and self.pending > self.limits.max_pending:
                    raise _Overloaded(
                        f"the hub holds {self.pending >> 20} MiB of unfinished frames from all "
                        f"clients (socket_pending_limit_mb = {self.limits.max_pending >> 20})"
                    )
                if not decoder.in_frame or completed:
                    frame_started = time.monotonic()
                if decoder.in_frame:
                    left = frame_started + self.limits.frame_timeout - time.monotonic()
                    try:
                        async with asyncio.timeout(max(left, 0)):
                            data = await reader.read(READ_SIZE)
                    except TimeoutError:
                        raise ProtocolError(
                            f"a frame was left unfinished for {self.limits.frame_timeout:g} s "
                            f"({held} bytes of it arrived)"
                        ) from None
                else:
                    # Between frames, with nothing buffered: whole frames that can be handled
                    # at once are, as they arrive (``_FastPath``), without waking this task.
                    if fast is not None:
                        fast.parked = True
                    data = await reader.read(READ_SIZE)
                    if fast is not None:
                        fast.parked = False
                if not data:
                    client.close("client closed the connection", notify=False)
                    break
        except _Overloaded as e:
            client.close(str(e), code="overloaded", linger=True)
            await self._linger(reader, writer)
        except ProtocolError as e:
            client.close(f"protocol error: {e}", code="protocol_error", linger=True)
            await self._linger(reader, writer)
        except TimeoutError:
            client.close("no hello within 5 s", code="protocol_error", linger=True)
            await self._linger(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            client.close("connection lost", notify=False)
        except asyncio.CancelledError:
            client.close("hub is shutting down", code="shutdown")
        finally:
            if fast is not None:
                fast.parked = False
                fast.client = None
            self.pending -= held
            self._tasks.discard(task)
            if registered:
                self.clients.pop(client.id, None)
                try:
                    self.on_disconnect(client)
                except Exception as e:
                    log.error("disconnect handler failed for %s: %s", client.id, _short(e))
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _linger(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float = LINGER_S
    ) -> None:
        """Discards input until the client closes or `seconds` pass, then closes."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(seconds):
                while await reader.read(READ_SIZE):
                    pass
        writer.close()

    async def _read_hello(
        self, reader: asyncio.StreamReader, decoder: FrameDecoder
    ) -> dict[str, Any]:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("closed before hello")
            for frame in decoder.feed(data):
                if frame.type != JSON:
                    raise ProtocolError("the first frame must be a JSON hello")
                try:
                    msg = decode_message(frame.payload, self.limits.max_depth)
                except BadMessage as e:
                    raise ProtocolError(f"bad hello: {e}") from None
                return check_hello(msg)

    async def _dispatch(self, client: SocketClient, ftype: int, payload: bytes) -> None:
        if ftype == JSON and INLINE_DECODE < len(payload) <= self.limits.max_message:
            if self._decode_pool is None:
                self._decode_pool = ThreadPoolExecutor(1, thread_name_prefix="botster-json")
            try:
                message = await asyncio.get_running_loop().run_in_executor(
                    self._decode_pool, decode_message, payload, self.limits.max_depth
                )
            except BadMessage as e:
                client.reject(str(e), payload)
                return
            if not client.closed:
                self._on_json(client, message)
        else:
            self._dispatch_now(client, ftype, payload)

    def _dispatch_now(self, client: SocketClient, ftype: int, payload: bytes) -> None:
        """Handles a frame that needs no waiting: PTY input, a JSON message decoded here.

        Raises:
            ProtocolError: a frame type clients may not send, or malformed PTY input; raised
                before anything of the frame has taken effect.
        """
        if ftype == JSON:
            if len(payload) > self.limits.max_message:
                client.reject(
                    f"message of {len(payload)} bytes is over the limit of "
                    f"{self.limits.max_message} (socket_max_message_kb)",
                    payload,
                )
                return
            try:
                message = decode_message(payload, self.limits.max_depth)
            except BadMessage as e:
                client.reject(str(e), payload)
                return
            self._on_json(client, message)
        elif ftype == PTY_INPUT and self.on_pty_input is not None:
            self.on_pty_input(client, payload)
        else:
            raise ProtocolError(f"a client may not send frame type 0x{ftype:02x}")

    def _on_json(self, client: SocketClient, message: dict[str, Any]) -> None:
        if message.get("type") == "ping":
            # Protocol-level: answered here, never seen by plugins (docs/protocol.md).
            pong = {"type": "pong", "id": message["id"]} if "id" in message else _PONG
            client.send_json(pong)
            return
        try:
            self.on_message(client, message)
        except Exception as e:
            # e.g. a value Lua cannot hold: the client hears why, the log gets one line.
            client.reject(f"message could not be handled: {_short(e)}")


class _FastPath:
    """Handles whole frames as they arrive, in ``data_received``, while the client's task
    waits between frames with nothing buffered (``parked``).

    A keystroke is one small frame in one read: handled here, it reaches its session without
    waking the client's task (a loop turn, tens of microseconds). Order is kept: at the first
    frame that is unfinished, large, or of another type, that frame and everything after it
    go to the reader, and the task (the one place limits, timeouts and errors are handled)
    takes over until it parks again.
    """

    __slots__ = ("client", "json_limit", "parked", "server")

    def __init__(self, server: SocketServer, client: SocketClient) -> None:
        self.server = server
        self.client: SocketClient | None = client
        self.parked = False
        self.json_limit = min(INLINE_DECODE, server.limits.max_message)

    def take(self, data: bytes) -> bytes:
        """Handles the whole small frames at the start of `data` if parked; returns the rest."""
        client, server = self.client, self.server
        if not self.parked or client is None or client.closed:
            return data
        pos, size, header = 0, len(data), _FRAME_HEADER
        while size - pos >= header.size:
            length, ftype = header.unpack_from(data, pos)
            end = pos + 4 + length
            if length == 0 or end > size:
                break
            if ftype == PTY_INPUT:
                if server.on_pty_input is None:
                    break
            elif ftype != JSON or length - 1 > self.json_limit:
                break
            try:
                server._dispatch_now(client, ftype, data[pos + 5 : end])
            except ProtocolError:
                break  # raised before the frame took effect: the task reports it
            pos = end
            if client.closed:
                return b""
        if pos < size:
            self.parked = False  # the rest is the task's, and so is what follows it
        return data[pos:] if pos else data


_FRAME_HEADER = struct.Struct("<IB")


class _Overloaded(Exception):
    """The hub-wide limit on unfinished frames is reached: this client is refused."""
