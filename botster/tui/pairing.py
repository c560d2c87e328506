"""The pairing panel: the hub's pairing URL and QR code, and the browsers paired with it.

Opened with the ``pairing`` key (``p`` after the prefix; ``keymap.py``). Everything comes from
the hub's own commands, the ones ``botster pair`` uses (docs/protocol.md): ``connection.status``
(whether remote access is on, and if not, why), ``connection.code`` (the URL and its QR drawn
with half blocks, made by the hub), ``connection.regenerate`` (a fresh one-time key),
``connection.paired`` and ``connection.revoke``. Copying the URL goes through the user's
terminal with OSC 52 (``App.copy_to_clipboard``), as ``connection.copy_to_clipboard`` does for
an attached UI, so it works over SSH.

When remote access is off (no relay URL and the embedded relay turned off, or no token for the
configured relay) the panel says why and exactly how to turn it on, instead of a code no
browser could use. While the panel is open it follows the hub (a browser pairing spends the
code and the hub makes a new one).

Not here: keys, bundles and QR drawing (``botster.remote``, in the hub), the clipboard of a
machine without a terminal UI (``connection.copy_to_clipboard``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Static

__all__ = ["PairingScreen", "how_to_turn_on"]

Request = Callable[[str, dict[str, Any]], Awaitable[Any]]


def how_to_turn_on(why: str) -> str:
    """What the panel says when remote access is off: why, then the two ways to turn it on."""
    return (
        f"Remote access is off: {why}.\n\n"
        "To pair a browser, turn it on in one of two ways, then restart the hub "
        "(the stop-hub key, then `botster start`):\n\n"
        "  • A relay in this hub, for browsers on this machine: set\n"
        '      "embedded_relay": true\n'
        "    in $BOTSTER_HOME/config.json (default ~/.botster/config.json).\n\n"
        "  • A relay your browsers can reach (`botster relay` on a server; "
        "`botster relay token` there mints a hub token):\n"
        "      botster login --server https://relay.example.com --token TOKEN\n"
        "    (or set BOTSTER_SERVER_URL and BOTSTER_TOKEN).\n\n"
        "Then open this panel again, or run `botster pair`."
    )


def _when(epoch: Any) -> str:
    """A pairing time as the table shows it (UTC: the same wherever the hub runs)."""
    if not isinstance(epoch, (int, float)):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


class PairingScreen(Screen[None]):
    """The pairing URL and QR code, regenerate, copy, and the paired browsers (revoke one).

    Args:
        request: how to run a hub command (default: the app's ``link.request``).
    """

    DEFAULT_CSS = """
    PairingScreen #qr { width: auto; min-width: 20; padding: 0 1; }
    PairingScreen #side { padding: 0 1; }
    PairingScreen .section { text-style: bold; margin-top: 1; }
    PairingScreen #status { margin-bottom: 1; }
    PairingScreen #url { color: $accent; }
    PairingScreen #error { color: $error; }
    PairingScreen #paired { height: auto; max-height: 12; }
    PairingScreen Horizontal#actions { height: auto; margin-top: 1; }
    PairingScreen Horizontal#actions Button { margin-right: 1; }
    /* Narrow terminals (the app's breakpoints): the text under the code, scrolled together. */
    PairingScreen.-narrow #body, PairingScreen.-tiny #body { layout: vertical; overflow-y: auto; }
    PairingScreen.-narrow #side, PairingScreen.-tiny #side { height: auto; overflow-y: hidden; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("r", "regenerate", "New code"),
        Binding("c", "copy", "Copy URL"),
        Binding("x", "revoke", "Revoke browser"),
    ]

    POLL_S = 2.0  # follows the hub while open: a pairing spends the code shown

    def __init__(self, request: Request | None = None) -> None:
        super().__init__()
        self._request = request
        self.status: dict[str, Any] = {}
        self.code: dict[str, Any] | None = None
        self.paired: list[dict[str, Any]] = []
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield Static("", id="qr")
            with VerticalScroll(id="side"):
                yield Label("[b]Pair a browser[/b]")
                yield Static("", id="status")
                yield Static("", id="url")
                with Horizontal(id="actions"):
                    yield Button("New code (r)", id="regenerate")
                    yield Button("Copy URL (c)", id="copy")
                yield Label("", id="error")
                yield Label("Paired browsers", classes="section")
                yield DataTable(id="paired", cursor_type="row")
                yield Static("[dim]x revokes the selected browser[/dim]", id="hint")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#paired", DataTable).add_columns("browser key", "paired (UTC)")
        await self.refresh_all()
        self.set_interval(self.POLL_S, self.refresh_all)

    async def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Runs a hub command (what ``botster pair`` runs)."""
        if self._request is not None:
            return await self._request(command, args or {})
        return await self.app.link.request(command, args)  # type: ignore[attr-defined]

    @property
    def enabled(self) -> bool:
        """Whether remote access is on (a code can be shown)."""
        return bool(self.status.get("configured"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # No code while remote access is off: its keys leave the footer, and do nothing.
        if action in ("regenerate", "copy") and not self.enabled:
            return False
        return True

    # Loading ---------------------------------------------------------------------------------

    async def refresh_all(self) -> None:
        """Reads the status, the current code (made on first use) and the paired browsers."""
        try:
            self.status = await self.request("connection.status")
            self.code = await self.request("connection.code") if self.enabled else None
            self.paired = list(await self.request("connection.paired"))
        except Exception as e:  # RequestFailed, or the hub went away: say so, keep the panel
            self._fail(str(e))
            return
        self._show()

    def _fail(self, message: str) -> None:
        self.error = message
        self.query_one("#error", Label).update(Text(message))

    def _show(self) -> None:
        status, qr, url = (self.query_one(f"#{w}", Static) for w in ("status", "qr", "url"))
        actions = self.query_one("#actions", Horizontal)
        if not self.enabled:
            why = str(self.status.get("why") or "no relay configured")
            status.update(Text(how_to_turn_on(why)))
            qr.display = False
            url.update("")
            actions.display = False
        else:
            relay = str(self.status.get("relay_url") or "")
            where = "the relay in this hub" if self.status.get("embedded") else "the relay"
            registered = self.status.get("server_id")
            state = f"registered as {registered}" if registered else "registering…"
            status.update(
                Text(
                    f"Scan the code with a phone, or open the URL in a browser. Its keys "
                    f"travel only in the URL's fragment, which never reaches the relay; the "
                    f"code works once.\n\nVia {where}: {relay} ({state})"
                )
            )
            qr.display = True
            qr.update(Text(str((self.code or {}).get("qr_ascii", "")), no_wrap=True))
            url.update(Text(str((self.code or {}).get("url", ""))))
            actions.display = True
        table = self.query_one("#paired", DataTable)
        keys = [str(p.get("browser_key")) for p in self.paired]
        current = [str(r.value) for r in table.rows]
        if keys != current:
            table.clear()
            for p in self.paired:
                key = str(p.get("browser_key"))
                table.add_row(key, _when(p.get("paired_at")), key=key)
        if not self.paired:
            self.query_one("#hint", Static).update("[dim]none yet[/dim]")
        else:
            self.query_one("#hint", Static).update("[dim]x revokes the selected browser[/dim]")
        self.error = ""
        self.query_one("#error", Label).update("")
        self.refresh_bindings()

    # Actions -------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#regenerate")
    async def action_regenerate(self) -> None:
        """A fresh code (new one-time key); the old one stops working."""
        if not self.enabled:
            return
        try:
            self.code = await self.request("connection.regenerate")
        except Exception as e:
            self._fail(f"connection.regenerate: {e}")
            return
        self._show()
        self.notify("new pairing code", title="botster")

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        """The URL to the clipboard, through the user's terminal (OSC 52)."""
        url = (self.code or {}).get("url")
        if not self.enabled or not url:
            return
        self.app.copy_to_clipboard(str(url))
        self.notify("pairing URL copied to the clipboard", title="botster")

    def action_revoke(self) -> None:
        """Forgets the selected browser, after asking."""
        table = self.query_one("#paired", DataTable)
        if not table.row_count:
            self.notify("no paired browser", severity="warning")
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        from botster.tui.app import ConfirmScreen  # the app imports this module lazily

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                result = await self.request("connection.revoke", {"browser_key": key})
            except Exception as e:
                self._fail(f"connection.revoke: {e}")
                return
            if result.get("revoked"):
                self.notify(f"revoked {key[:16]}…", title="botster")
            await self.refresh_all()

        self.app.push_screen(
            ConfirmScreen(
                f"Revoke browser {key}? It is disconnected and must pair again with a new code."
            ),
            answered,
        )
