"""The UI's pairing panel (issue 14): a real hub, the real app (`BotsterApp.run_test`).

The panel shows the hub's pairing URL and QR (the hub's `connection.code`, as `botster pair`
prints it), makes a fresh code, copies the URL through the terminal (OSC 52: headless, Textual
keeps what it would have written in `app.clipboard`), lists the paired browsers and revokes
one; with remote access off it says how to turn it on. A browser pairs here by sending one
Olm envelope through the hub socket (`remote.signal`), as the test browser does before it
offers WebRTC, so no peer connection (and no network namespace) is needed.
SVG snapshots of both states are fed fixed data (no hub id, key or time on screen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Static

from botster.remote import bundle as B
from botster.remote.test_browser import SocketSignaller, TestBrowser
from botster.transports.client import HubConnection
from botster.tui.app import BotsterApp, ConfirmScreen, HelpScreen
from botster.tui.pairing import PairingScreen, how_to_turn_on
from tests.test_pty import socket_of
from tests.test_tui import SIZE, press_prefixed, until
from tests.test_tui_snapshots import ScreenApp, _fixed_environment, snap  # noqa: F401

NO_RELAY = "no relay configured: set server_url or BOTSTER_SERVER_URL"


def _text(panel: PairingScreen, widget: str) -> str:
    return str(panel.query_one(f"#{widget}", Static).render())


async def _pair_a_browser(conn: HubConnection, url: str) -> TestBrowser:
    """Pairs a browser with the code at `url`: its first Olm message spends the one-time key."""
    browser = TestBrowser(url, SocketSignaller(conn))
    envelope = browser.envelope({"type": "ice", "candidate": {"candidate": ""}})
    await conn.request(
        "remote.signal", {"browser_identity": browser.identity, "envelope": envelope}
    )
    return browser


async def test_pairing_panel_shows_the_code_regenerates_copies_and_revokes(
    hub, git_repo: Path, tmp_path: Path
):
    proc = await hub()
    conn = await HubConnection.connect(socket_of(proc), "test")
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "the connection")
        await press_prefixed(pilot, "p")
        await until(pilot, lambda: isinstance(app.screen, PairingScreen), "the pairing panel")
        panel = app.screen
        await until(pilot, lambda: panel.code is not None, "the pairing code")
        # The panel shows what `botster pair` prints: the hub's own URL and QR.
        code = await conn.request("connection.code")
        assert panel.code == code
        assert _text(panel, "url") == code["url"]
        assert _text(panel, "qr") == code["qr_ascii"]
        assert panel.status["configured"] is True
        assert "never reaches the relay" in _text(panel, "status")
        assert panel.query_one("#paired", DataTable).row_count == 0

        # Copy: the URL goes to the terminal's clipboard (OSC 52).
        await pilot.press("c")
        assert app.clipboard == code["url"]

        # Regenerate: a new one-time key; the hub's current code is the new one.
        await pilot.press("r")
        await until(pilot, lambda: panel.code["url"] != code["url"], "a new code")
        fresh = await conn.request("connection.code")
        assert panel.code["url"] == fresh["url"] and _text(panel, "url") == fresh["url"]
        _, _, old_bundle = B.parse_pairing_url(code["url"])
        _, _, new_bundle = B.parse_pairing_url(fresh["url"])
        assert new_bundle.one_time_key != old_bundle.one_time_key
        await pilot.press("c")
        assert app.clipboard == fresh["url"]

        # A browser pairs with the code shown: the panel lists it and shows the next code.
        browser = await _pair_a_browser(conn, fresh["url"])
        table = panel.query_one("#paired", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the paired browser", timeout=20)
        assert str(table.get_row_at(0)[0]) == browser.key
        await until(pilot, lambda: panel.code["url"] != fresh["url"], "the next code")

        # Revoke it: asked first; "n" keeps it, "y" revokes.
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is panel, "back on the panel")
        assert [p["browser_key"] for p in await conn.request("connection.paired")] == [browser.key]
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 0, "the browser gone from the list")
        assert await conn.request("connection.paired") == []
        assert await browser.request_bundle() == 0, "a revoked browser gets nothing"
        await pilot.press("x")  # nothing left to revoke: a notice, no question
        await pilot.pause()
        assert app.screen is panel

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, PairingScreen), "panel closed")
        # The key is in the help screen.
        await press_prefixed(pilot, "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        keys = app.screen.query_one("#keys", DataTable)
        assert [str(c) for c in keys.get_row("pairing")][:2] == ["p", "pairing"]
        await pilot.press("escape")
    await conn.close()


async def test_pairing_panel_says_how_to_turn_remote_access_on(hub, git_repo: Path):
    proc = await hub(config={"embedded_relay": False})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "the connection")
        await press_prefixed(pilot, "p")
        await until(pilot, lambda: isinstance(app.screen, PairingScreen), "the pairing panel")
        panel = app.screen
        await until(pilot, lambda: "Remote access is off" in _text(panel, "status"), "the how-to")
        assert panel.status == {"configured": False, "why": NO_RELAY, "embedded": False}
        assert _text(panel, "status") == how_to_turn_on(NO_RELAY)
        assert '"embedded_relay": true' in _text(panel, "status")
        assert "botster login --server" in _text(panel, "status")
        assert not panel.query_one("#qr", Static).display and panel.code is None
        # Nothing to regenerate or copy: no code is made for a relay that is not there.
        await pilot.press("r", "c")
        await pilot.pause()
        assert panel.code is None and app.clipboard == ""
        await pilot.press("escape")


# Snapshots (fixed data) -------------------------------------------------------------------------

URL = B.pairing_url("http://127.0.0.1:8420", "4f1c2a9e", bytes(range(161)))
BROWSER = "kS3wZ1rXq5bY0mC7fD2eH9jL4nP6tV8uA1iO3gR5yQ"


def _hub(status: dict[str, Any], paired: list[dict[str, Any]]):
    code = {"url": URL, "qr_ascii": B.qr_ascii(URL), "hub_id": "4f1c2a9e"}

    async def request(command: str, args: dict[str, Any]) -> Any:
        return {
            "connection.status": status,
            "connection.code": code,
            "connection.paired": paired,
        }[command]

    return request


async def test_pairing_panel(request):
    status = {
        "configured": True,
        "relay_url": "http://127.0.0.1:8420",
        "embedded": True,
        "server_id": "4f1c2a9e",
    }
    paired = [{"browser_key": BROWSER, "paired_at": 1796558400}]
    app = ScreenApp(lambda: PairingScreen(_hub(status, paired)))
    await snap(request, app, SIZE)


async def test_pairing_panel_remote_access_off(request):
    app = ScreenApp(lambda: PairingScreen(_hub({"configured": False, "why": NO_RELAY}, [])))
    await snap(request, app, (100, 30))
