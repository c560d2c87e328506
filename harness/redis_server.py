"""A throwaway ``redis-server`` on a free loopback port, for the relay's tests and benchmark."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

__all__ = ["redis_server", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """Debian's ``redis-server`` (``.ci/run`` installs it), or None."""
    return shutil.which("redis-server")


@asynccontextmanager
async def redis_server(tmp: Path) -> AsyncIterator[str]:
    """Starts one in `tmp` (no persistence) and yields its ``redis://`` URL; stops it after.

    Raises:
        RuntimeError: the binary is missing. AssertionError: it exited before it was ready.
    """
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(20):
            while b"Ready to accept connections" not in (line := await proc.stdout.readline()):
                if not line:
                    raise AssertionError("redis-server exited:\n" + "\n".join(seen))
                seen.append(line.decode(errors="replace"))
        drain = asyncio.create_task(proc.stdout.read())
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if drain is not None:
            await drain
