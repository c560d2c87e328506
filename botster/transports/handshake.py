"""The hello handshake of the client protocol, both sides, and its version, defined once.

A client's first frame is ``{"type": "hello", "protocol": 1, "client": <name>}``; the hub
answers ``{"type": "hello_ack", "protocol": 1, "hub_id", "client_id", "max_frame"}`` or an
error and closes (``docs/protocol.md``). The hub socket (``socket_server.py``) and any other
transport use ``check_hello`` and ``hello_ack``; the two Python clients of the hub socket
(``transports/client.py`` and the ``hub_client`` primitive) use ``connect_unix``. Both ends
run on ``BypassStream``, a stream whose reads may be handled as they arrive, before its reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botster.base.errors import ProtocolError
from botster.base.framing import JSON, FrameDecoder, encode_json

__all__ = [
    "PROTOCOL_VERSION",
    "BypassStream",
    "check_hello",
    "connect_unix",
    "hello",
    "hello_ack",
]

PROTOCOL_VERSION = 1


class BypassStream(asyncio.StreamReaderProtocol):
    """A stream protocol whose reads may skip its reader.

    While ``bypass`` is set, every read is handed to it first, in ``data_received``; it
    returns the bytes the reader must still get (empty: none). A task waiting on the reader
    costs a loop turn to wake; a keystroke or its echo handled here costs none. The owner
    decides when bypassing is safe (typically: its task waits on the reader, which holds
    nothing), so that order is kept.
    """

    bypass: Callable[[bytes], bytes] | None = None

    def data_received(self, data: bytes) -> None:
        bypass = self.bypass
        if bypass is not None:
            data = bypass(data)
            if not data:
                return
        super().data_received(data)


class _ReadIntoStream(BypassStream, asyncio.BufferedProtocol):
    """A client's ``BypassStream`` that reads into one buffer of its own.

    asyncio's own reads allocate 256 KiB each, which glibc maps and unmaps: three system calls
    and a page fault for every echo of a keystroke. Here a read costs one copy of what came.
    """

    def __init__(self, reader: asyncio.StreamReader, size: int) -> None:
        super().__init__(reader)
        self._view = memoryview(bytearray(size))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._view[:nbytes]))


def hello(client: str, *, direct_terminal: bool = False) -> dict[str, Any]:
    """The hello a client sends first; `client` names it (``"tui"`` makes it a TUI). With
    `direct_terminal` the client reads terminals from session processes (``terminal_direct``)."""
    msg: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "client": client}
    if direct_terminal:
        msg["direct_terminal"] = True
    return msg


def check_hello(msg: dict[str, Any]) -> dict[str, Any]:
    """The hub's check of a client's first JSON message; returns it.

    Raises:
        ProtocolError: not a hello, or a protocol version the hub does not speak.
    """
    if msg.get("type") != "hello":
        raise ProtocolError(f"expected hello first, got {msg.get('type')!r}")
    version = msg.get("protocol", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol {version!r} is not supported (hub speaks {PROTOCOL_VERSION})"
        )
    return msg


def hello_ack(
    hub_id: str, client_id: str, max_frame: int, max_message: int | None = None
) -> dict[str, Any]:
    """The hub's answer to an accepted hello (`max_message`: the largest JSON message)."""
    ack = {
        "type": "hello_ack",
        "protocol": PROTOCOL_VERSION,
        "hub_id": hub_id,
        "client_id": client_id,
        "max_frame": max_frame,
    }
    if max_message is not None:
        ack["max_message"] = max_message
    return ack


async def connect_unix(
    path: Path | str,
    client: str,
    decoder: FrameDecoder,
    *,
    read_size: int,
    direct_terminal: bool = False,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    """Connects to a hub socket and completes the handshake; the caller bounds the time.

    Frames the hub sent right behind the hello_ack stay buffered in `decoder`, for the
    caller's read loop. The stream is a ``BypassStream`` (``writer.transport.get_protocol()``).
    On any failure the connection is closed.

    Returns:
        (reader, writer, the hello_ack message).

    Raises:
        OSError: nothing listens at `path`.
        ProtocolError: the hub refused the hello, closed the connection, or answered with
            something other than a JSON hello_ack.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=read_size, loop=loop)
    stream = _ReadIntoStream(reader, read_size)
    transport, _ = await loop.create_unix_connection(lambda: stream, str(path))
    writer = asyncio.StreamWriter(transport, stream, reader, loop)
    try:
        writer.write(encode_json(hello(client, direct_terminal=direct_terminal)))
        while True:
            data = await reader.read(read_size)
            if not data:
                raise ProtocolError("the hub closed the connection during the handshake")
            frames = decoder.feed(data)
            first = next(frames, None)
            frames.close()  # frames behind the hello_ack stay buffered for the read loop
            if first is None:
                continue
            if first.type != JSON:
                raise ProtocolError("the first frame is not a JSON hello_ack")
            msg = first.json()
            if msg.get("type") != "hello_ack":
                raise ProtocolError(f"handshake refused: {msg.get('message', msg.get('type'))}")
            return reader, writer, msg
    except BaseException:
        writer.close()
        raise
