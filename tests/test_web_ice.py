"""The browser app through TURN, and back by itself after the path breaks (issue 15).

Real Chromium (Debian's, through Playwright for Python, never `playwright install`) inside the
loopback-only network namespace, a real coturn (``harness/turn_server.py``), a real ``botster
relay`` handing out its credentials, a real hub. The page is told to use TURN only (the user
setting ``localStorage["botster.iceTransportPolicy"] = "relay"``): its link badge says
``relayed``. Then the TURN server dies under a working terminal; the page restarts ICE by
itself, and once TURN is back it shows the exact screen again, with what was typed while the
link was down delivered. And when a direct path breaks under the page (iptables in the test's
network namespace drops every UDP packet that does not go to or come from the TURN server),
ICE moves to a TURN pair and the badge follows.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.turn_server import turn_server, turn_server_binary
from tests.test_web_e2e import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHELL_AGENT,
    _mint_token,
    _pairing_url,
    _Relay,
    _shot,
    _wait_terminal,
    playwright_api,
)

STATIC = Path(__file__).resolve().parent.parent / "botster" / "relay" / "static" / "index.html"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
    pytest.mark.skipif(not STATIC.exists(), reason="the web app is not built (make web)"),
    pytest.mark.skipif(
        turn_server_binary() is None,
        reason="needs coturn's turnserver (Debian: apt-get install coturn)",
    ),
    pytest.mark.timeout(300),
]

from botster.transports.client import HubConnection  # noqa: E402
from tests.test_socket import socket_of  # noqa: E402


async def test_the_page_goes_through_turn_and_restarts_ice_when_the_path_breaks(
    hub, git_repo, tmp_path, netns
):
    if netns:
        return
    async with _stack(hub, git_repo, tmp_path) as (turn, proc, url):
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
                await ctx.add_init_script(
                    "localStorage.setItem('botster.iceTransportPolicy', 'relay')"
                )
                page = await ctx.new_page()
                allocations = turn.allocations()
                await page.goto(url)
                agent = page.locator('[data-testid="agent"][data-agent-key="demo"]')
                await agent.wait_for(timeout=30_000)
                await page.wait_for_selector('[data-testid="badge-peer"][data-state="relayed"]')
                assert turn.allocations() > allocations, "the page allocated on the TURN server"
                await agent.click()
                await _wait_terminal(page, r"demo\$")
                await page.locator('[data-testid="terminal"]').click()
                await page.keyboard.type("echo one-$((1+1))\n")
                await _wait_terminal(page, r"one-2")
                await _shot(page, "desktop-relayed")

                # TURN dies: the page notices the stuck path and restarts ICE by itself.
                await turn.stop()
                await page.wait_for_function(
                    "() => window.botster.log.some(l => /ICE restart in \\d+ ms/.test(l))",
                    timeout=60_000,
                )
                assert await page.get_attribute('[data-testid="badge-peer"]', "data-state") in (
                    "connecting",
                    "down",
                )
                # Typed while the link is down: kept, and delivered once it is back.
                await page.keyboard.type("echo two-$((2+2))\n")
                await turn.start()
                await page.wait_for_selector(
                    '[data-testid="badge-peer"][data-state="relayed"]', timeout=60_000
                )
                await page.wait_for_function(
                    "() => window.botster.log.some(l => /ICE restart offer \\d+ sent/.test(l))"
                )
                # The exact screen again (the line from before the break), then the new line.
                await _wait_terminal(page, r"one-2")
                await _wait_terminal(page, r"two-4", timeout=30)
                text = await page.locator('[data-testid="terminal"] .xterm-rows').inner_text()
                assert text.count("two-4") == 1, text  # typed once, run once
                await proc.wait_for(r"closed: replaced by a new offer")
            finally:
                await browser.close()


@pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables (Debian: iptables)")
async def test_a_broken_direct_path_moves_to_turn_and_the_badge_says_so(
    hub, git_repo, tmp_path, netns
):
    if netns:
        return
    async with _stack(hub, git_repo, tmp_path) as (turn, proc, url):
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(url)
                agent = page.locator('[data-testid="agent"][data-agent-key="demo"]')
                await agent.wait_for(timeout=30_000)
                await page.wait_for_selector('[data-testid="badge-peer"][data-state="direct"]')
                await agent.click()
                await _wait_terminal(page, r"demo\$")

                # Only UDP to or from the TURN server's ports still passes (in this test's own
                # network namespace): the direct path is stuck, TURN is not.
                await _iptables(
                    "-A", "INPUT", "-p", "udp", "-m", "multiport", "!", "--ports",
                    f"{turn.port},{turn.relay_ports[0]}:{turn.relay_ports[1]}", "-j", "DROP",
                )  # fmt: skip
                # ICE moves to a TURN pair by itself (the page had gathered relay candidates
                # too); the badge follows the selected pair.
                await page.wait_for_selector(
                    '[data-testid="badge-peer"][data-state="relayed"]', timeout=60_000
                )
                await page.locator('[data-testid="terminal"]').click()
                await page.keyboard.type("echo turn-$((5*5))\n")
                await _wait_terminal(page, r"turn-25")
                log = "\n".join(await page.evaluate("() => window.botster.log"))
                assert re.search(r"path relayed \(local relay", log), log
            finally:
                await browser.close()


@asynccontextmanager
async def _stack(hub, git_repo: Path, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, str]]:
    """coturn, a relay handing out its credentials, a hub with a shell agent "demo"; yields
    (the TURN server, the hub process, a pairing URL)."""
    agents = git_repo / ".botster" / "agents" / "shell"
    agents.mkdir(parents=True)
    (agents / "initialization").write_text(SHELL_AGENT)
    async with turn_server(tmp_path / "turn") as turn:
        data = tmp_path / "relay"
        data.mkdir()
        ice = {"turn": [turn.url], "turn_secret": turn.secret, "turn_ttl": 600}
        (data / "relay.json").write_text(json.dumps({"ice": ice}))
        relay = await _Relay.start(data)
        try:
            env = {"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": _mint_token(data)}
            proc = await hub(env=env)
            conn = await HubConnection.connect(socket_of(proc), "test")
            try:
                await conn.request("create_agent", {"agent": "shell", "branch": "demo"})
                yield turn, proc, await _pairing_url(conn, relay.url)
            finally:
                await conn.close()
        finally:
            await relay.stop()


async def _iptables(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "iptables", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
