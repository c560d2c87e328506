"""Conformance: the real Rails ActionCable client (`@rails/actioncable`, npm, pinned in
tests/js/package-lock.json) under node 20 with `ws`, as a browser against `botster relay`.

The node side is tests/js/conformance.mjs; `npm ci` runs here when tests/js/node_modules is
missing (CI needs node 20 and npm registry access, or a pre-installed node_modules).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.relayproc import BROWSER_IDENTITY, CableClient, RelayProcess, ident, mint_token

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def node_deps() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the Rails client conformance test needs node 20)")
    if not (JS / "node_modules" / "@rails" / "actioncable").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed and tests/js/node_modules is missing")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)
    return node


class NodeBrowser:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    async def next(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next event named `event`; the ones skipped stay in ``events``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(
                        f"node exited before {event}: {self.events} {err.decode()}"
                    )
                item = json.loads(line)
                self.events.append(item)
                if item["event"] == event:
                    return item

    async def received(self, timeout: float = 20.0) -> dict[str, Any]:
        return (await self.next("received", timeout))["data"]

    async def perform(self, action: str, **data: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"perform": action, "data": data}).encode() + b"\n")
        await self.proc.stdin.drain()
        await self.next("performed")


@asynccontextmanager
async def node_browser(
    node: str, ws_url: str, params: dict[str, Any]
) -> AsyncIterator[NodeBrowser]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS / "conformance.mjs"),
        ws_url,
        json.dumps(params),
        cwd=JS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeBrowser(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_rails_client_subscribes_performs_and_receives(
    node_deps: str, tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    relay = RelayProcess(tmp_path)
    await relay.start()
    try:
        token = await mint_token(tmp_path, "hub")
        async with aiohttp.ClientSession() as s:
            resp = await s.post(
                f"{relay.url}/hubs",
                json={"identifier": "rails"},
                headers={"Authorization": f"Bearer {token}"},
            )
            hub_id = (await resp.json())["id"]
        hub_ch = ident("HubCommandChannel", hub_id=hub_id)
        async with CableClient.connect(relay.url, token=token, protocols=()) as hub:
            await hub.subscribe(hub_ch)
            params = {
                "channel": "HubSignalingChannel",
                "hub_id": hub_id,
                "browser_identity": BROWSER_IDENTITY,
            }
            async with node_browser(node_deps, relay.ws_url, params) as browser:
                # "connected" fires only on a confirm whose identifier matches the client's own
                # string, and only on a socket whose subprotocol the server chose.
                await browser.next("connected")
                assert await browser.received() == {"type": "health", "cli": "online"}
                assert (await hub.recv())["message"] == {
                    "type": "bundle_request",
                    "browser_identity": BROWSER_IDENTITY,
                }

                envelope = {"t": 0, "b": "cHJla2V5", "k": "a2V5"}
                await browser.perform("signal", envelope=envelope)
                assert (await hub.recv())["message"] == {
                    "type": "signal",
                    "browser_identity": BROWSER_IDENTITY,
                    "envelope": envelope,
                }
                await browser.perform("request_bundle")
                assert (await hub.recv())["message"] == {
                    "type": "bundle_request",
                    "browser_identity": BROWSER_IDENTITY,
                }

                await hub.perform(
                    hub_ch,
                    "signal",
                    browser_identity=BROWSER_IDENTITY,
                    envelope={"t": 1, "b": "YW5zd2Vy"},
                )
                assert await browser.received() == {
                    "type": "signal",
                    "envelope": {"t": 1, "b": "YW5zd2Vy"},
                }
            # The browser left; the hub's socket is unaffected.
            await hub.perform(hub_ch, "heartbeat")
        assert not any(e["event"] in ("rejected", "ws_error") for e in browser.events), (
            browser.events
        )
    finally:
        await relay.stop_and_verify()


async def test_rails_client_rejected_subscription(
    node_deps: str, tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    relay = RelayProcess(tmp_path)
    await relay.start()
    try:
        params = {
            "channel": "HubSignalingChannel",
            "hub_id": "0123456789abcdef",
            "browser_identity": BROWSER_IDENTITY,
        }
        async with node_browser(node_deps, relay.ws_url, params) as browser:
            await browser.next("rejected")
            assert not any(e["event"] == "connected" for e in browser.events)
    finally:
        await relay.stop_and_verify()


async def test_rails_client_never_connects_when_no_subprotocol_is_chosen(node_deps: str) -> None:
    """Why the relay must pick `actioncable-v1-json`: against a server that welcomes and
    confirms like ours but picks no subprotocol, the Rails client refuses the socket."""

    async def cable(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # no protocols: the handshake answers without one
        await ws.prepare(request)
        await ws.send_str('{"type":"welcome"}')
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("command") == "subscribe":
                await ws.send_str(
                    json.dumps({"identifier": frame["identifier"], "type": "confirm_subscription"})
                )
        return ws

    app = web.Application()
    app.router.add_get("/cable", cable)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        params = {
            "channel": "HubSignalingChannel",
            "hub_id": "0123456789abcdef",
            "browser_identity": BROWSER_IDENTITY,
        }
        async with node_browser(node_deps, f"ws://127.0.0.1:{port}/cable", params) as browser:
            err = await browser.next("ws_error")
            assert "subprotocol" in err["message"], err
            assert not any(e["event"] in ("connected", "welcome") for e in browser.events), (
                browser.events
            )
    finally:
        await runner.cleanup()
