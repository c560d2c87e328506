"""SVG snapshots of the UI's screens, hub-free: each test renders an app at a fixed size.

`snap` runs the app headless (`App.run_test`), applies `run_before`, and compares Textual's
SVG screenshot with the one committed in `__snapshots__/test_tui_snapshots/`. After a
deliberate change to what a screen looks like, regenerate with
`BOTSTER_UPDATE_SNAPSHOTS=1 pytest tests/test_tui_snapshots.py` and look at the new SVGs
before committing them. Snapshots hold no hub id, paths, times or PIDs: the terminal pane is
fed fixed bytes, and the dialogs get fixed text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from botster.tui.app import HelpScreen, MessageScreen
from botster.tui.keymap import Keymap
from botster.tui.terminal import TerminalView

# The terminal pane fills the screen; its round border takes one cell on each side.
COLS, ROWS = 64, 16
INNER = (ROWS - 2, COLS - 2)

ESC = "\x1b"


def csi(params: str) -> str:
    return f"{ESC}[{params}"


def sgr(params: str) -> str:
    return csi(f"{params}m")


RESET = sgr("0")

# A known screen: every attribute, the three kinds of colour, wide characters, the cursor.
SCREEN = "\r\n".join(
    [
        f"{sgr('1')}bold{RESET} {sgr('3')}italic{RESET} {sgr('4')}underline{RESET} "
        f"{sgr('7')}inverse{RESET} {sgr('9')}strike{RESET} {sgr('2')}dim{RESET} "
        f"{sgr('1;3;4')}all three{RESET}",
        f"16: {sgr('31')}red{RESET} {sgr('32')}green{RESET} {sgr('33')}yellow{RESET} "
        f"{sgr('34')}blue{RESET} {sgr('91')}bright-red{RESET} {sgr('30;47')} black/white {RESET} "
        f"{sgr('97;41')} white/red {RESET}",
        f"256: {sgr('38;5;208')}orange-208{RESET} {sgr('38;5;244')}grey-244{RESET} "
        f"{sgr('48;5;22')} bg-22 {RESET} {sgr('38;5;226;48;5;19')} 226/19 {RESET}",
        f"rgb: {sgr('38;2;255;105;180')}hotpink{RESET} {sgr('48;2;0;95;135')} bg-teal {RESET} "
        f"{sgr('38;2;0;0;0;48;2;255;215;0')} black/gold {RESET}",
        f"wide: 中文字|{sgr('36')}漢字{RESET}|🙂|{sgr('43')}😀{RESET}|end",
        "      ......|....|..|..|end",  # the bars line up with the row above
        "",
        "$ echo done",
        "done",
        "$ ",
    ]
)
CURSOR = (9, 2)  # after the last prompt, 0-based (row, col)

# A full-screen program: the alternate screen, the cursor hidden, a framed box.
ALT_SCREEN = (
    csi("?1049h")
    + csi("?25l")
    + csi("H")
    + csi("2J")
    + f"{sgr('1;37;44')} editor.txt {' ' * 50}{RESET}"
    + csi("3;5H")
    + "┌──────────────────────┐"
    + csi("4;5H")
    + f"│ {sgr('32')}alternate screen{RESET}     │"
    + csi("5;5H")
    + f"│ {sgr('2')}cursor hidden{RESET}        │"
    + csi("6;5H")
    + "└──────────────────────┘"
    + csi(f"{INNER[0]};1H")
    + f"{sgr('7')} -- INSERT -- {RESET}"
)


class SnapApp(App[None]):
    """As BotsterApp draws (ANSI colours left untouched), in one theme whatever the environment
    says (`TEXTUAL_THEME`, `NO_COLOR`: see the fixture below)."""

    def __init__(self) -> None:
        super().__init__(ansi_color=True)
        self.theme = "textual-dark"


class PaneApp(SnapApp):
    """The terminal pane alone."""

    def __init__(self) -> None:
        super().__init__()
        self.typed: list[bytes] = []

    def compose(self) -> ComposeResult:
        yield TerminalView(["ctrl+b"], self.typed.append, id="terminal")


@pytest.fixture(autouse=True)
def _fixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same emulator whatever the environment asks for (pyte keeps no scrollback), and
    # colours even for a developer who set NO_COLOR (App.__init__ reads it).
    monkeypatch.setenv("BOTSTER_TERMINAL", "avt")
    monkeypatch.delenv("NO_COLOR", raising=False)


SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_tui_snapshots"


async def snap(
    request: pytest.FixtureRequest,
    app: App,
    size: tuple[int, int],
    run_before: Callable[..., Awaitable[None]] | None = None,
) -> None:
    """Renders `app` at `size` (cols, rows) after `run_before(pilot)` and compares the SVG
    with the test's committed snapshot (or writes it when updating)."""
    async with app.run_test(size=size) as pilot:
        if run_before is not None:
            await run_before(pilot)
        await pilot.pause()
        # Rich names the SVG's classes after a hash of the export: take it out, so a diff
        # shows what changed on screen.
        svg = re.sub(r"terminal-\d+-", "terminal-", app.export_screenshot())
    path = SNAPSHOTS / f"{request.node.name}.svg"
    if os.environ.get("BOTSTER_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg)
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}: run with BOTSTER_UPDATE_SNAPSHOTS=1 to create it")
    if svg != path.read_text():
        actual = Path(request.config.rootpath) / ".snapshots" / path.name
        actual.parent.mkdir(exist_ok=True)
        actual.write_text(svg)
        pytest.fail(
            f"the screen differs from {path.relative_to(Path.cwd())}; what it shows now is in "
            f"{actual} (BOTSTER_UPDATE_SNAPSHOTS=1 accepts it, after you have looked at it)"
        )


async def pane(pilot, *output: str) -> TerminalView:
    """The pane once laid out (`run_before` runs before the first refresh), attached to a
    session of its size that has written `output`."""
    await pilot.pause()
    view = pilot.app.query_one(TerminalView)
    assert (view.size.height, view.size.width) == INNER
    view.load_snapshot("s1", *INNER, b"")
    for data in output:
        view.feed(data.encode())
    await pilot.pause()
    return view


async def test_terminal_pane_colours_attributes_wide_chars_and_cursor(request):
    app = PaneApp()

    async def run_before(pilot) -> None:
        view = await pane(pilot, SCREEN)
        cursor = view.term.cursor
        assert (cursor.row, cursor.col, cursor.visible) == (*CURSOR, True)
        assert view.screen_text().startswith("bold italic underline")
        assert app.typed == []

    await snap(request, app, (COLS, ROWS), run_before)


async def test_terminal_pane_alternate_screen_hidden_cursor(request):
    app = PaneApp()

    async def run_before(pilot) -> None:
        view = await pane(pilot, SCREEN, ALT_SCREEN)
        assert view.term.alt_screen and not view.term.cursor.visible
        assert "bold" not in view.screen_text()

    await snap(request, app, (COLS, ROWS), run_before)


async def test_terminal_pane_scrolled_back(request):
    app = PaneApp()

    async def run_before(pilot) -> None:
        lines = [
            f"line {i:02d} {sgr(str(31 + i % 6))}colour {31 + i % 6}{RESET}" for i in range(30)
        ]
        view = await pane(pilot, "\r\n".join(lines) + "\r\n$ ")
        view.scroll_lines(5)
        await pilot.pause()
        assert view.scroll == 5
        assert view.border_subtitle == "scrolled back 5 lines"

    await snap(request, app, (COLS, ROWS), run_before)


class ScreenApp(SnapApp):
    """A plain app that pushes one screen: these dialogs need nothing of BotsterApp."""

    def __init__(self, screen_factory) -> None:
        super().__init__()
        self.screen_factory = screen_factory

    def on_mount(self) -> None:
        self.push_screen(self.screen_factory())


async def test_help_screen(request):
    app = ScreenApp(lambda: HelpScreen(Keymap()))
    await snap(request, app, (100, 34))


async def test_message_screen(request):
    body = (
        "feature-one was closed, but its worktree was kept: it has uncommitted changes "
        "(notes.txt, src/app.py)."
    )
    app = ScreenApp(lambda: MessageScreen("feature-one closed", body))
    await snap(request, app, (90, 20))
