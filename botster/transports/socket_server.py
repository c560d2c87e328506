"""The hub's Unix socket: accepts local clients, frames, handshakes, fairness.

Owns: the listening socket (0600 in the 0700 runtime dir), one ``SocketClient`` per
connection, the ``hello`` handshake, decoding with a frame-size limit, and the bounded send
buffer that cuts a client which stops reading. Clients, messages and PTY input go to the
hub's client channel (``botster.transports.channel``), which the primitives observe; what a
message means is the embedded Lua's business (``lib/client.lua``). The protocol is documented
in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botster.errors import HubError, ProtocolError
from botster.transports.framing import (
    BINARY,
    DEFAULT_MAX_FRAME,
    JSON,
    PTY_INPUT,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_json,
)
from botster.transports.handshake import check_hello, hello_ack

__all__ = ["SocketClient", "SocketServer"]

log = logging.getLogger("socket")

HELLO_TIMEOUT_S = 5.0
READ_SIZE = 64 << 10
DEFAULT_SEND_LIMIT = 8 << 20  # bytes queued for one client before it is cut
# The kernel's share of what waits for a client (Linux doubles it). Small, so that what a slow
# client has not read yet waits where the hub can see it (the transport's buffer): a terminal
# forwarder holds output, or resyncs, on that number, and bytes hidden in a 200 KiB kernel
# buffer would be bytes of latency between a keystroke and its echo.
CLIENT_SNDBUF = 32 << 10


class SocketClient:
    """One connected client (a ``ChannelClient``). Sends never block: they queue, up to
    `send_limit` bytes."""

    transport = "socket"

    def __init__(self, server: SocketServer, client_id: str, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.id = client_id
        self.writer = writer
        self.name = "unknown"
        self.closed = False
        self.close_reason: str | None = None

    def queued(self) -> int:
        """Bytes accepted for sending but not yet written to the socket."""
        return self.writer.transport.get_write_buffer_size()

    async def drained(self) -> None:
        """Returns once the send buffer is below the transport's low-water mark."""
        await self.writer.drain()

    def send_frame(self, data: bytes) -> bool:
        """Queues one encoded frame. False if the client is gone or was cut for not reading."""
        if self.closed:
            return False
        if self.queued() + len(data) > self.server.send_limit:
            self.close(
                f"send queue over {self.server.send_limit} bytes: the client stopped reading",
                code="slow_client",
                notify=False,
            )
            return False
        self.writer.write(data)
        return True

    def send_json(self, message: Any) -> bool:
        """Queues a JSON message."""
        return self.send_frame(encode_json(message))

    def send_binary(self, data: bytes) -> bool:
        """Queues an opaque binary frame."""
        return self.send_frame(encode_frame(BINARY, data))

    def close(self, reason: str, *, code: str = "closed", notify: bool = True) -> None:
        """Closes the connection; with `notify`, first tells the client why (best effort)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if notify:
            with contextlib.suppress(Exception):
                self.writer.write(encode_json({"type": "error", "code": code, "message": reason}))
        if code == "slow_client":
            self.writer.transport.abort()  # its buffer is full: there is nothing to flush
        else:
            self.writer.close()
        log.info("client %s (%s) disconnected: %s", self.id, self.name, reason)


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
        max_frame: int = DEFAULT_MAX_FRAME,
        send_limit: int = DEFAULT_SEND_LIMIT,
    ) -> None:
        self.path = path
        self.hub_id = hub_id
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_disconnect = on_disconnect
        self.on_pty_input = on_pty_input
        self.max_frame = max_frame
        self.send_limit = send_limit
        self.clients: dict[str, SocketClient] = {}
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
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=READ_SIZE
            )
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
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _new_id(self) -> str:
        return f"socket:{next(self._seq):x}{secrets.token_hex(2)}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = SocketClient(self, self._new_id(), writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
        decoder = FrameDecoder(self.max_frame)
        registered = False
        try:
            hello = await asyncio.wait_for(self._read_hello(reader, decoder), HELLO_TIMEOUT_S)
            client.name = str(hello.get("client", "unknown"))[:64]
            client.send_json(hello_ack(self.hub_id, client.id, self.max_frame))
            self.clients[client.id] = client
            registered = True
            log.info("client %s (%s) connected", client.id, client.name)
            self.on_connect(client)
            data = b""  # frames sent right behind the hello are already buffered
            while not client.closed:
                for frame in decoder.feed(data):
                    if client.closed:
                        break
                    self._dispatch(client, frame.type, frame.payload)
                if client.closed:
                    break
                data = await reader.read(READ_SIZE)
                if not data:
                    client.close("client closed the connection", notify=False)
                    break
        except ProtocolError as e:
            client.close(f"protocol error: {e}", code="protocol_error")
        except TimeoutError:
            client.close("no hello within 5 s", code="protocol_error")
        except (ConnectionError, asyncio.IncompleteReadError):
            client.close("connection lost", notify=False)
        except asyncio.CancelledError:
            client.close("hub is shutting down", code="shutdown")
        finally:
            self._tasks.discard(task)
            if registered:
                self.clients.pop(client.id, None)
                try:
                    self.on_disconnect(client)
                except Exception:
                    log.exception("disconnect handler failed for %s", client.id)
            with contextlib.suppress(Exception):
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
                return check_hello(frame.json())

    def _dispatch(self, client: SocketClient, ftype: int, payload: bytes) -> None:
        if ftype == JSON:
            message = Frame(ftype, payload).json()
            try:
                self.on_message(client, message)
            except Exception:
                log.exception("message handler failed for %s", client.id)
        elif ftype == PTY_INPUT and self.on_pty_input is not None:
            self.on_pty_input(client, payload)
        else:
            raise ProtocolError(f"a client may not send frame type 0x{ftype:02x}")
