"""What the browser tests share: Debian's Chromium driven by Playwright, a real relay, pairing.

    pytestmark = BROWSER_MARKS                      # skips without chromium, the built app, unshare
    relay = await Relay.start(tmp_path / "relay")   # `botster relay` on a free loopback port
    env = {"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": mint_token(tmp_path / "relay")}
    url = await pairing_url(conn, relay.url)        # the hub's pairing link on that relay
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

Never ``playwright install``: the browser is /usr/bin/chromium. The tests run inside the
``netns`` fixture's loopback-only network namespace.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import botster.remote.bundle as remote_bundle
from botster.transports.client import HubConnection

__all__ = [
    "BROWSER_MARKS",
    "ROOT",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "STATIC",
    "Relay",
    "mint_token",
    "pairing_url",
    "until",
]

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "botster" / "relay" / "static" / "index.html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]
BROWSER_MARKS = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not STATIC.exists(), reason="the web app is not built (make web)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare"),
    pytest.mark.timeout(300),
]


async def until(predicate, what: str, timeout: float = 20.0, every: float = 0.1):
    """Polls an async predicate until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Relay:
    """`botster relay` as a child process, as a user runs it."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None

    @classmethod
    async def start(cls, data: Path) -> Relay:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        relay = cls(data, port)
        await relay.restart()
        return relay

    async def restart(self) -> None:
        proc = self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "botster.cli", "relay", "--host", "127.0.0.1",
            "--port", str(self.port), "--data", str(self.data),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def up():
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                assert proc.returncode is None, "botster relay exited"
                return False
            w.close()
            return True

        await until(up, "the relay to listen")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), 15)


def mint_token(data: Path) -> str:
    """A hub token from ``botster relay token`` for the relay whose data dir is `data`."""
    out = subprocess.run(
        [sys.executable, "-m", "botster.cli", "relay", "token", "--data", str(data)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


async def pairing_url(conn: HubConnection, relay_url: str, *, fresh: bool = False) -> str:
    """The hub's pairing URL once it is registered on `relay_url` (`fresh`: a new code)."""

    async def code():
        c = await conn.request("connection.regenerate" if fresh else "connection.code")
        relay, sid, _ = remote_bundle.parse_pairing_url(c["url"])
        return c["url"] if relay.rstrip("/") == relay_url.rstrip("/") and sid else None

    return await until(code, "a pairing URL on the relay", timeout=30, every=0.3)
