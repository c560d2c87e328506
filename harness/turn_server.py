"""A throwaway coturn ``turnserver`` on a free loopback port, for the TURN tests and benchmark.

It listens on 127.0.0.1 only, relays from 127.0.0.1 (the tests run in a loopback-only network
namespace, so ``--allow-loopback-peers``), hands out no TLS, and checks coturn REST-style
credentials against a shared secret (``--use-auth-secret``), as a production coturn behind a
relay does (docs/relay.md, "Deployment").
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TurnServer", "turn_server", "turn_server_binary"]

REALM = "botster.test"


def turn_server_binary() -> str | None:
    """Debian's ``turnserver`` (package coturn; ``.ci/run`` installs it), or None."""
    return shutil.which("turnserver")


@dataclass
class TurnServer:
    """A running coturn: its ``turn:`` URL, shared secret and process (stop/start to break the
    path in a test)."""

    url: str
    secret: str
    port: int
    log: Path
    relay_ports: tuple[int, int]  # the range its relayed traffic uses
    proc: asyncio.subprocess.Process | None = None
    _args: tuple[str, ...] = ()

    async def start(self) -> None:
        """Starts (or restarts) the server on the same port; returns once it answers STUN."""
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self._args, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        await _wait_stun(self.port, self.proc, self.log)

    async def stop(self) -> None:
        """Stops the server (idempotent)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None

    def allocations(self) -> int:
        """How many TURN allocations the server logged so far (a path really went through it)."""
        return _count(self.log, b"ALLOCATE processed, success")


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


def _count(path: Path, needle: bytes) -> int:
    try:
        return path.read_bytes().count(needle)
    except OSError:
        return 0


async def _wait_stun(port: int, proc: asyncio.subprocess.Process, log: Path) -> None:
    """Sends STUN binding requests until one is answered (the UDP listener is up)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    # A binding request: type 0x0001, length 0, the magic cookie, a random transaction id.
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + secrets.token_bytes(12)
    try:
        async with asyncio.timeout(20):
            while True:
                if proc.returncode is not None:
                    raise AssertionError("turnserver exited:\n" + _text(log))
                await loop.sock_sendto(sock, request, ("127.0.0.1", port))
                try:
                    async with asyncio.timeout(0.2):
                        reply = await loop.sock_recv(sock, 2048)
                except TimeoutError:
                    continue
                if reply[:2] == b"\x01\x01":  # binding success response
                    return
    finally:
        sock.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def turn_server(tmp: Path) -> AsyncIterator[TurnServer]:
    """Starts one with files in `tmp` and yields it; stops it after.

    Raises:
        RuntimeError: the binary is missing. AssertionError: it exited before it was ready.
    """
    binary = turn_server_binary()
    if binary is None:
        raise RuntimeError("turnserver is not installed (Debian: apt-get install coturn)")
    os.makedirs(tmp, exist_ok=True)
    port = _free_udp_port()
    secret = secrets.token_hex(16)
    # Relay ports: a small range near the listening port, so start-up stays quick.
    low = 40000 + (port % 2000) * 10
    args = (
        binary,
        "-n",  # no configuration file
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={low}",
        f"--max-port={low + 9}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        f"--realm={REALM}",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--allow-loopback-peers",  # peers are on 127.0.0.1 in the test namespace
        "--no-cli",
        f"--userdb={tmp / 'turndb'}",
        f"--pidfile={tmp / 'turnserver.pid'}",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
    )
    server = TurnServer(
        url=f"turn:127.0.0.1:{port}?transport=udp",
        secret=secret,
        port=port,
        log=tmp / "turnserver.log",
        relay_ports=(low, low + 9),
        _args=args,
    )
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
