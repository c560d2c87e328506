"""Plain Unix-socket connections for tests that speak the wire format by hand."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from botster.base.framing import Frame, FrameDecoder


@contextlib.asynccontextmanager
async def raw_connection(
    path: Path | str,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection closed however the test ends: one left open is garbage-collected during some
    later test, which then fails on the ResourceWarning instead of this one."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def first_frame(sock: socket.socket, timeout_s: float = 10.0) -> Frame:
    """The first whole frame a blocking socket receives (fails if it closes before one)."""
    decoder = FrameDecoder()
    sock.settimeout(timeout_s)
    while True:
        data = sock.recv(1 << 16)
        assert data, "the peer closed the connection before a whole frame"
        for frame in decoder.feed(data):
            return frame
