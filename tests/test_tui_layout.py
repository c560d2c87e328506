"""Small terminals: the footer fits 80 columns, the list narrows and then hides, and the
zoom key gives the terminal pane the whole window (and its PTY the size that goes with it)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Select
from textual.widgets._footer import FooterKey

from botster.transports.client import HubConnection
from botster.tui.app import BotsterApp, CreateAgentScreen
from tests.test_pty import socket_of
from tests.test_tui import press_prefixed, start_hub, until


async def test_narrow_terminal_and_zoom(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "small"})
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.terminal
        await until(pilot, lambda: "ready" in view.screen_text(), "the agent's screen")
        sidebar = app.query_one("#sidebar")
        assert sidebar.size.width + 2 == 24 and view.size == (80 - 24 - 2, 24 - 1 - 1 - 2)
        keys = list(app.screen.query(FooterKey))
        assert [k.description for k in keys][:3] == ["then", "new", "close"]
        assert all(k.region.width and k.region.right <= 80 for k in keys), "the footer is cut"

        await press_prefixed(pilot, "z")
        await until(pilot, lambda: view.size == (78, 21), "the zoomed pane")
        await until(pilot, lambda: app.link.size == (21, 78), "the PTY following the zoom")
        assert not sidebar.display or sidebar.region.width == 0
        await press_prefixed(pilot, "z")
        await until(pilot, lambda: view.size == (54, 20), "the pane back beside the list")

        # A running agent is marked with a dot (an arrow read as "selected").
        assert str(app.agent_list.get_option_at_index(0).prompt).startswith("● small")
        # The create dialog stops saying "loading" once the definitions came.
        await press_prefixed(pilot, "n")
        await until(pilot, lambda: isinstance(app.screen, CreateAgentScreen), "the dialog")
        select = app.screen.query_one("#definition", Select)
        await until(pilot, lambda: select.value == "echo", "the definitions loaded")
        assert select.prompt == "choose a definition"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CreateAgentScreen), "closed")

        await pilot.resize_terminal(60, 20)
        await until(pilot, lambda: view.size.width == 58, "the list hidden at 60 columns")
        await press_prefixed(pilot, "l")  # focusing the list shows it
        await until(pilot, lambda: app.agent_list.has_focus and sidebar.region.width > 0, "list")
    await conn.close()
