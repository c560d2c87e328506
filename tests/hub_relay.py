"""The relay as the hub-side tests drive it: a ``botster relay`` process that restarts on the
same port and data (the hub must reconnect to it), and a browser-side ActionCable client that
keeps every frame. (``tests/relayproc.py`` holds the relay's own test helpers.)

    relay = RelayProcess(data_dir, env)       # a free port is chosen at the first start
    token = await relay.mint_token("hub")     # ``botster relay token``
    await relay.start()
    async with CableClient(relay.url) as browser:
        await browser.subscribe("HubSignalingChannel", hub_id=sid, browser_identity=B)
        msg = await browser.next_message(lambda m: m.get("type") == "signal")
    await relay.kill()                        # SIGKILL: the hub's socket drops at once
    await relay.start()                       # same port, same data: the hub reconnects
    await relay.stop()

Every wait has a deadline and fails with what was seen so far.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers import free_port

__all__ = ["BROWSER", "CableClient", "RelayProcess", "identifier"]

# A browser identity the relay accepts: "<curve25519 key, base64 unpadded>:<tab id>".
BROWSER = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3:tab-1"


def identifier(channel: str, **params: Any) -> str:
    return json.dumps({"channel": channel, **params}, separators=(",", ":"))


class RelayProcess:
    """One ``botster relay`` on 127.0.0.1; restartable on the same port and data."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._readers: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _cli(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botster.cli",
            "relay",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"botster relay {args}: {err.decode()}"
        return out.decode()

    async def mint_token(self, name: str) -> str:
        out = await self._cli("token", "--data", str(self.data_dir), "--name", name)
        return out.strip().splitlines()[-1]

    async def start(self, timeout: float = 20.0) -> None:
        if not self.port:
            self.port = await free_port()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botster.cli",
            "relay",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data",
            str(self.data_dir),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        ready = asyncio.Event()
        for stream in (self.proc.stdout, self.proc.stderr):
            self._readers.append(asyncio.create_task(self._read(stream, ready)))
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except TimeoutError:
            raise AssertionError("relay did not start:\n" + "\n".join(self.lines)) from None

    async def _read(self, stream: asyncio.StreamReader | None, ready: asyncio.Event) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            if text.startswith("relay ready:"):
                ready.set()

    async def _wait(self) -> int:
        assert self.proc is not None
        rc = await self.proc.wait()
        for reader in self._readers:
            await reader
        self._readers.clear()
        return rc

    async def kill(self) -> None:
        """SIGKILL: no close frames, the hub sees its socket drop."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self._wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._wait(), 15)
            except TimeoutError:
                await self.kill()

    async def rest(self, method: str, path: str, token: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as resp,
        ):
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()


class CableClient:
    """A browser's ActionCable connection (no token, the ``actioncable-v1-json`` protocol)."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.replace("http://", "ws://") + "/cable"
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CableClient:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.url, protocols=("actioncable-v1-json",))
        self._reader = asyncio.create_task(self._read())
        await self.wait_frame(lambda f: f.get("type") == "welcome")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._http is not None:
            await self._http.close()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") != "ping":
                    self.frames.append(frame)
                    self._changed.set()
        self._changed.set()

    async def wait_frame(
        self, pred: Callable[[dict[str, Any]], bool], *, since: int = 0, timeout: float = 20.0
    ) -> dict[str, Any]:
        pos = since

        async def scan() -> dict[str, Any]:
            nonlocal pos
            while True:
                while pos < len(self.frames):
                    frame = self.frames[pos]
                    pos += 1
                    if pred(frame):
                        return frame
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"socket closed; frames: {self.frames}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no matching frame in {timeout}s; frames: {self.frames}"
            ) from None

    async def next_message(
        self, pred: Callable[[Any], bool], *, since: int = 0, timeout: float = 20.0
    ) -> Any:
        """The first data message (``frame.message``) after `since` that matches `pred`."""
        frame = await self.wait_frame(
            lambda f: "message" in f and "type" not in f and pred(f["message"]),
            since=since,
            timeout=timeout,
        )
        return frame["message"]

    def mark(self) -> int:
        return len(self.frames)

    async def subscribe(self, channel: str, **params: Any) -> str:
        ident = identifier(channel, **params)
        await self.send({"command": "subscribe", "identifier": ident})
        frame = await self.wait_frame(
            lambda f: f.get("identifier") == ident and "subscription" in str(f.get("type"))
        )
        assert frame["type"] == "confirm_subscription", frame
        return ident

    async def perform(self, ident: str, action: str, **data: Any) -> None:
        payload = json.dumps({"action": action, **data})
        await self.send({"command": "message", "identifier": ident, "data": payload})

    async def send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(frame))
