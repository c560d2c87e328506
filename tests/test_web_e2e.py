"""The browser app end to end: real Chromium, a real relay, a real hub, WebRTC over loopback.

Debian's /usr/bin/chromium is driven by Playwright for Python (never `playwright install`).
The test re-runs itself inside ``unshare --net`` with only ``lo`` up, so nothing leaves the
machine; aioice's host candidates are forced to 127.0.0.1 (``BOTSTER_WEBRTC_LOOPBACK=1``) and
Chromium is told not to hide its addresses behind mDNS. It pairs from the URL the hub prints,
sees the agent, reads its terminal, types and sees the echo, resizes, creates and closes an
agent through the dialogs, survives a ``kill -9`` of the hub, and checks that a browser
without the code and a substituted hub key are refused. Screenshots of the main screens at
desktop and phone sizes go to ``.screenshots/`` (gitignored) for people to look at.
"""

from __future__ import annotations

import base64
import re
import signal

import playwright.async_api as playwright_api

import botster.remote.bundle as remote_bundle
from botster.transports.client import HubConnection
from tests.browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, ROOT
from tests.browser import Relay as _Relay
from tests.browser import mint_token as _mint_token
from tests.browser import pairing_url as _pairing_url
from tests.browser import until as _until
from tests.test_socket import socket_of

SHOTS = ROOT / ".screenshots"
pytestmark = BROWSER_MARKS

SHELL_AGENT = "PS1='demo$ ' exec sh\n"
TOOLS_PLUGIN = """
mcp.tool("review_pr", {description = "Reviews a pull request"}, function() return "ok" end)
"""


async def _terminal_text(page) -> str:
    return await page.locator('[data-testid="terminal"] .xterm-rows').inner_text()


async def _wait_terminal(page, pattern: str, timeout: float = 20.0) -> str:
    rx = re.compile(pattern)
    last = [""]

    async def seen():
        last[0] = await _terminal_text(page)
        return last[0] if rx.search(last[0]) else None

    try:
        return await _until(seen, f"terminal text /{pattern}/", timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\nscreen:\n{last[0]}") from None


async def _shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"))


async def test_browser_pairs_drives_an_agent_and_survives_a_hub_restart(
    hub, git_repo, isolated_env, tmp_path, netns
):
    if netns:
        return
    agents = git_repo / ".botster" / "agents" / "shell"
    agents.mkdir(parents=True)
    (agents / "initialization").write_text(SHELL_AGENT)

    relay = await _Relay.start(tmp_path / "relay")
    env = {"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": _mint_token(tmp_path / "relay")}
    proc = await hub(env=env, plugins={"tools": TOOLS_PLUGIN})
    conn = await HubConnection.connect(socket_of(proc), "test")
    created = await conn.request("create_agent", {"agent": "shell", "branch": "demo"})
    assert created["agent_key"] == "demo"
    url = await _pairing_url(conn, relay.url)

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desk = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await desk.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            await page.goto(url)
            # The fragment is gone from the address bar and history at once.
            assert "#" not in page.url
            agent = page.locator('[data-testid="agent"][data-agent-key="demo"]')
            await agent.wait_for(timeout=30_000)
            for badge, want in (("relay", "connected"), ("hub", "online")):
                await page.wait_for_selector(f'[data-testid="badge-{badge}"][data-state="{want}"]')
            await page.wait_for_selector('[data-testid="badge-peer"][data-state="direct"]')
            await agent.click()
            await _wait_terminal(page, r"demo\$")

            # Typing reaches the PTY and the echo comes back.
            await page.locator('[data-testid="terminal"]').click()
            await page.keyboard.type("echo hi-$((6*7))\n")
            await _wait_terminal(page, r"hi-42")
            await _shot(page, "desktop-terminal")

            # The terminal follows the window.
            size = "() => [window.botster.page.term.rows, window.botster.page.term.cols]"
            before = await page.evaluate(size)
            await page.set_viewport_size({"width": 900, "height": 600})

            async def resized():
                now = await page.evaluate(size)
                return now if now != before else None

            rows_cols = await _until(resized, "the terminal to follow the window")
            await page.keyboard.type("stty size\n")
            await _wait_terminal(page, rf"\b{rows_cols[0]} {rows_cols[1]}\b")
            await page.set_viewport_size({"width": 1280, "height": 800})

            # Create an agent through the dialog, then close it through the other one.
            await page.click('[data-testid="new-agent"]')
            await page.fill('[data-testid="create-target"]', "second")
            await _shot(page, "desktop-create-dialog")
            await page.click('[data-testid="create-submit"]')
            second = page.locator('[data-testid="agent"][data-agent-key="second"]')
            await second.wait_for(timeout=30_000)
            await second.click()
            await _wait_terminal(page, r"demo\$")
            await page.click('[data-testid="close-agent"]')
            await page.click('[data-testid="close-submit"]')
            await second.wait_for(state="detached", timeout=30_000)

            # A second tab of this browser waits for the first, and can take the hub over.
            tab2 = await desk.new_page()
            await tab2.goto(url.split("#")[0])
            await tab2.wait_for_selector('[data-testid="banner"] >> text=open in another tab')
            await tab2.click('[data-testid="banner-action"]')
            await tab2.locator('[data-testid="agent"][data-agent-key="demo"]').wait_for()
            await page.wait_for_selector('[data-testid="banner"] >> text=now open in another tab')
            await page.click('[data-testid="banner-action"]')
            await agent.wait_for()
            await page.wait_for_selector('[data-testid="badge-peer"][data-state="direct"]')
            await tab2.wait_for_selector('[data-testid="banner"] >> text=now open in another tab')
            await tab2.close()

            # The hub panel lists plugins and tools.
            await page.click('[data-testid="hub-panel"]')
            await page.wait_for_selector("dialog >> text=review_pr")
            await page.wait_for_selector("dialog td >> text=tools")
            await _shot(page, "desktop-hub-panel")
            await page.keyboard.press("Escape")

            # The relay goes away: its badge says so, and the terminal keeps working over the
            # direct link; when it is back the badge comes back by itself.
            await relay.stop()
            await page.wait_for_selector('[data-testid="badge-relay"][data-state="disconnected"]')
            await page.locator('[data-testid="terminal"]').click()
            await page.keyboard.type("echo p2p-$((1+1))\n")
            await _wait_terminal(page, r"p2p-2")
            assert await page.get_attribute('[data-testid="badge-peer"]', "data-state") == "direct"
            await relay.restart()
            await page.wait_for_selector(
                '[data-testid="badge-relay"][data-state="connected"]', timeout=30_000
            )
            await page.wait_for_selector('[data-testid="badge-hub"][data-state="online"]')

            # kill -9 the hub; a new one adopts the session and the browser carries on.
            await agent.click()
            await _wait_terminal(page, r"hi-42")
            await conn.close()
            proc.allow_nonzero_exit = True
            proc.allow_registry_left = True
            proc.signal(signal.SIGKILL)
            await proc.wait_exit()
            await page.wait_for_selector('[data-testid="badge-hub"][data-state="offline"]')
            await page.wait_for_selector('[data-testid="badge-peer"][data-state="down"]')
            proc2 = await hub(env=env)
            await page.wait_for_selector(
                '[data-testid="badge-peer"][data-state="direct"]', timeout=60_000
            )
            await page.locator('[data-testid="terminal"]').click()
            await page.keyboard.type("echo back-$((40+2))\n")
            await _wait_terminal(page, r"back-42", timeout=30)

            # The link breaks under the page (as on a network change): it rebuilds by itself,
            # re-attaches and shows the exact screen again.
            await page.evaluate("() => window.botster.carrier.peer.pc.close()")
            await page.wait_for_function(
                "() => window.botster.log.some(l => /peer down: data channel closed/.test(l))"
            )
            await page.wait_for_selector('[data-testid="badge-peer"][data-state="direct"]')
            await _wait_terminal(page, r"back-42")
            await page.locator('[data-testid="terminal"]').click()
            await page.keyboard.type("echo again-$((3*3))\n")
            await _wait_terminal(page, r"again-9")

            # A phone: narrow layout, key bar, the list first, then the terminal.
            conn2 = await HubConnection.connect(socket_of(proc2), "test")
            phone_url = await _pairing_url(conn2, relay.url, fresh=True)
            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
            )
            ppage = await phone.new_page()
            await ppage.goto(phone_url)
            pagent = ppage.locator('[data-testid="agent"][data-agent-key="demo"]')
            await pagent.wait_for(timeout=30_000)
            await _shot(ppage, "phone-agents")
            await pagent.click()
            await _wait_terminal(ppage, r"again-9")
            assert await ppage.locator('[data-testid="keybar"]').is_visible()
            await _shot(ppage, "phone-terminal")

            # A notification's link opens that agent's terminal directly.
            _, sid, _ = remote_bundle.parse_pairing_url(phone_url)
            await ppage.goto(f"{relay.url}/hubs/{sid}?agent=demo")
            await _wait_terminal(ppage, r"again-9")

            # A browser without the code is refused: it has no pairing to use...
            stranger = await browser.new_context()
            spage = await stranger.new_page()
            await spage.goto(url.split("#")[0])
            err = spage.locator('[data-testid="pairing-error"]')
            await err.wait_for()
            assert await err.get_attribute("data-reason") == "unpaired"
            # ... and one holding a spent code (its one-time key was used by the first
            # browser) gets no answer from the hub: its offer times out, nothing is shown.
            await spage.goto(url)
            await spage.wait_for_function(
                "() => window.botster && window.botster.log.some(l => /setup timed out/.test(l))",
                timeout=40_000,
            )
            assert await spage.locator('[data-testid="agent"]').count() == 0
            assert await spage.get_attribute('[data-testid="badge-peer"]', "data-state") != "direct"
            await stranger.close()

            # A bundle signed by another key, on a hub this browser paired with: refused.
            _, sid, real = remote_bundle.parse_pairing_url(url)
            forged = _forged_bundle(real.one_time_key)
            await page.goto(f"{url.split('#')[0]}#{base64.b32encode(forged).decode().rstrip('=')}")
            err = page.locator('[data-testid="pairing-error"]')
            await err.wait_for()
            assert await err.get_attribute("data-reason") == "interception"
            assert "possible interception" in await err.inner_text()
            await _shot(page, "desktop-interception")
            await conn2.close()
        finally:
            await browser.close()
            await relay.stop()
    assert console is not None


def _forged_bundle(one_time_key: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    sk = Ed25519PrivateKey.generate()
    ident = X25519PrivateKey.generate().public_key().public_bytes_raw()
    head = bytes([6]) + ident + sk.public_key().public_bytes_raw() + one_time_key
    return head + sk.sign(head)
