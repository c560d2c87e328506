"""A real ``botster relay`` child process, a real ``redis-server``, and an ActionCable client.

    relay = RelayProcess(data_dir);  await relay.start()      # port 0: a free port
    token = await mint_token(data_dir, "hub1")                # ``botster relay token``
    async with CableClient.connect(relay.url, token=token) as hub: ...
    async with redis_server(tmp_path) as redis_url: ...       # skips if no redis-server

Every wait has a deadline and fails with what was seen so far. ``stop_and_verify`` sends
SIGTERM, requires exit 0 and a log without tracebacks or ERROR lines the test did not declare.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.redis_server import redis_server as harness_redis_server
from harness.redis_server import redis_server_binary

__all__ = [
    "BROWSER_IDENTITY",
    "CableClient",
    "RelayProcess",
    "ident",
    "mint_token",
    "redis_server",
    "relay_cli",
]

UNEXPECTED = re.compile(r" (ERROR|CRITICAL) |Traceback")
BROWSER_IDENTITY = "Qk9UU1RFUmJyb3dzZXJrZXliYXNlNjR1bnBhZGRlZDA:tab-0001"


def ident(channel: str, **params: Any) -> str:
    """An identifier string as a client would build it."""
    return json.dumps({"channel": channel, **params})


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONFAULTHANDLER": "1"}


async def relay_cli(*args: str, check: bool = True) -> tuple[int, str, str]:
    """Runs ``botster relay <args>``; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botster.cli",
        "relay",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    code = proc.returncode
    assert code is not None
    if check and code != 0:
        raise AssertionError(f"botster relay {' '.join(args)} exited {code}: {err.decode()}")
    return code, out.decode(), err.decode()


async def mint_token(data_dir: Path, name: str, redis_url: str | None = None) -> str:
    """A new hub token from ``botster relay token`` (its last line)."""
    extra = ["--redis", redis_url] if redis_url else []
    _, out, _ = await relay_cli("token", "--data", str(data_dir), "--name", name, *extra)
    return out.strip().splitlines()[-1]


class RelayProcess:
    """One ``botster relay`` child and everything it logged."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.env = {**_env(), **(env or {})}
        self.extra = list(extra)
        if redis_url:
            self.extra += ["--redis", redis_url]
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.port = 0
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._allowed: list[re.Pattern[str]] = []

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/cable"

    async def start(self) -> RelayProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botster.cli",
            "relay",
            "--port",
            "0",
            "--data",
            str(self.data_dir),
            *self.extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        assert self.proc.stdout and self.proc.stderr
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout)),
            asyncio.create_task(self._read(self.proc.stderr)),
        ]
        m = await self.wait_for(r"relay ready: (\S+) \(listening on port (\d+)")
        self.url, self.port = m.group(1), int(m.group(2))
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def expect_log(self, pattern: str) -> None:
        self._allowed.append(re.compile(pattern))

    async def wait_for(
        self, pattern: str, *, since: int = 0, timeout: float = 20.0
    ) -> re.Match[str]:
        rx = re.compile(pattern)

        async def scan() -> re.Match[str]:
            seen = since
            while True:
                for line in self.lines[seen:]:
                    if m := rx.search(line):
                        return m
                seen = len(self.lines)
                if (
                    self.proc is not None
                    and self.proc.returncode is not None
                    and seen == len(self.lines)
                ):
                    await asyncio.sleep(0)  # let the readers drain
                    if all(r.done() for r in self._readers):
                        raise AssertionError(f"relay exited before {pattern!r}:\n{self.log}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(f"no relay line matching {pattern!r}:\n{self.log}") from None

    async def stop_and_verify(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"relay did not stop on SIGTERM:\n{self.log}") from None
        await asyncio.gather(*self._readers)
        assert code == 0, f"relay exited {code}:\n{self.log}"
        bad = [
            line
            for line in self.lines
            if UNEXPECTED.search(line) and not any(a.search(line) for a in self._allowed)
        ]
        assert not bad, "unexpected relay log lines:\n" + "\n".join(bad) + "\n---\n" + self.log

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


class CableClient:
    """A minimal ActionCable client over aiohttp; ``recv`` skips pings unless asked."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.pings: list[dict[str, Any]] = []

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        token: str | None = None,
        protocols: tuple[str, ...] = ("actioncable-v1-json", "actioncable-unsupported"),
        welcome: bool = True,
    ) -> AsyncIterator[CableClient]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ws_url = url.replace("http", "ws", 1) + "/cable"
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                ws_url, headers=headers, protocols=protocols, max_msg_size=0
            )
            client = cls(session, ws)
            try:
                if welcome:
                    first = await client.recv()
                    assert first == {"type": "welcome"}, first
                yield client
            finally:
                await ws.close()

    async def recv_raw(self, timeout: float = 10.0) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), timeout)

    async def recv(self, timeout: float = 10.0, *, pings: bool = False) -> dict[str, Any]:
        while True:
            msg = await self.recv_raw(timeout)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(
                    f"expected a text frame, got {msg.type!r} {msg.data!r} {msg.extra!r}"
                )
            frame = json.loads(msg.data)
            if frame.get("type") == "ping" and not pings:
                self.pings.append(frame)
                continue
            return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def subscribe(self, identifier: str) -> dict[str, Any]:
        await self.send({"command": "subscribe", "identifier": identifier})
        return await self.recv()

    async def perform(self, identifier: str, action: str, **data: Any) -> None:
        await self.send(
            {
                "command": "message",
                "identifier": identifier,
                "data": json.dumps({"action": action, **data}),
            }
        )

    async def closed(self, timeout: float = 10.0) -> tuple[list[dict[str, Any]], aiohttp.WSMessage]:
        """Reads until the server closes; returns (frames before the close, the close message)."""
        frames = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                msg = await self.recv_raw(max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise AssertionError(f"the relay did not close the socket; got {frames}") from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") != "ping":
                    frames.append(frame)
                continue
            return frames, msg


@asynccontextmanager
async def redis_server(tmp: Path) -> AsyncIterator[str]:
    """A throwaway ``redis-server`` on a free loopback port; skips the test without one."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    async with harness_redis_server(tmp) as url:
        yield url
