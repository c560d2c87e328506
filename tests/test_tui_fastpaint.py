"""Output drawn at once (issue 12, latency): the rows the fast path writes make the screen
Textual's own full frame makes, cell for cell, colours and attributes included.

The pane sits under a header and over a footer, as in the UI. What the app writes to its
terminal is recorded at the app's display call (the driver's side of it; the app runs
headless): a full frame first, then every fast-path write. Replayed on pyte, they must give
the screen a fresh full frame of the same state gives. The fallbacks (a dialog over the
pane, scrolled back, output right after output) take Textual's normal refresh instead.
The end-to-end check, typing through a real UI in tmux, is in test_tui_compare.py.
"""

from __future__ import annotations

import pyte
import pytest
from textual.app import App, ComposeResult
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Label

from botster.sessions.terminal import BACKENDS, cell_runs, make_terminal
from botster.tui import terminal as terminal_module
from botster.tui.terminal import TerminalView, _RowsUpdate

SIZE = (60, 16)
INNER = (SIZE[1] - 4, SIZE[0] - 2)  # header, footer, the border all round
FIRST = (
    b"\x1b[1mbold\x1b[0m \x1b[31mred\x1b[0m \x1b[38;5;208morange\x1b[0m "
    b"\x1b[38;2;255;105;180mpink\x1b[0m \x1b[7minv\x1b[0m\r\n$ "
)
# A typed line echoed key by key, colours, a wide character, a redraw of another row, a
# backspace, the cursor moved and hidden, lines scrolling the whole screen.
OUTPUTS = [
    b"e",
    b"c",
    b"h",
    b"o",
    b" \x1b[32mgreen",
    b"\x1b[0m \xe4\xb8\xad\xe6\x96\x87|",
    b"\x1b[s\x1b[1;50H\x1b[44m12:00\x1b[0m\x1b[u",
    b"\b \b",
    b"\x1b[?25l",
    b"\x1b[?25h\r\n" + b"".join(b"line %d\r\n" % i for i in range(14)) + b"$ ",
    b"\x1b[2J\x1b[H\x1b[1;4mtop\x1b[0m",
]


class Dialog(ModalScreen[None]):
    def compose(self) -> ComposeResult:
        yield Label("a dialog over the pane")


class RecordingApp(App[None]):
    """The pane between a header and a footer; keeps what the app writes to its terminal."""

    def __init__(self, ansi_color: bool = False) -> None:
        super().__init__(ansi_color=ansi_color)
        self.writes: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield TerminalView(["ctrl+b"], lambda data: None, id="terminal")
        yield Footer()

    def _display(self, screen, renderable) -> None:  # type: ignore[override]
        if isinstance(renderable, _RowsUpdate):
            self.writes.append(renderable.render_segments(self.console))
        super()._display(screen, renderable)

    def full_frame(self) -> str:
        """What Textual draws for the whole screen now."""
        return self.screen._compositor.render_full_update().render_segments(self.console)


def replay(*frames: str) -> pyte.Screen:
    screen = pyte.Screen(*SIZE)
    stream = pyte.Stream(screen)
    for frame in frames:
        stream.feed(frame)
    return screen


def cells(screen: pyte.Screen) -> list[list[tuple]]:
    return [
        [
            (c.data, c.fg, c.bg, c.bold, c.italics, c.underscore, c.reverse, c.strikethrough)
            for c in (screen.buffer[y][x] for x in range(screen.columns))
        ]
        for y in range(screen.lines)
    ]


async def settle(pilot, view: TerminalView) -> None:
    """Until Textual drew its pending frame (the pane's lines are rendered again)."""
    for _ in range(50):
        await pilot.pause()
        if view._lines is not None and not view._repaint_required:
            return
    raise AssertionError("the pane never settled")


@pytest.mark.parametrize(
    "ansi_color, focused",
    [(True, True), (True, False), (False, True)],
    ids=["ansi-colours-focused", "ansi-colours-blurred", "textual-colours"],
)
async def test_rows_drawn_at_once_make_textuals_own_frame(
    monkeypatch: pytest.MonkeyPatch, ansi_color: bool, focused: bool
):
    """With ANSI colours (as the UI runs) rows are the pane's strips inside the border
    Textual drew (``_Frame``); Textual's colour filter on, they go through its line cache."""
    monkeypatch.setattr(TerminalView, "fast_paint", True)
    monkeypatch.setattr(terminal_module, "FAST_PAINT_GAP_S", 0.0)  # every output at once
    app = RecordingApp(ansi_color=ansi_color)
    async with app.run_test(size=SIZE, notifications=True, tooltips=True) as pilot:
        view = app.query_one(TerminalView)
        if not focused:
            view.blur()
        view.load_snapshot("s1", *INNER, FIRST)
        await settle(pilot, view)
        assert view.has_focus == focused
        assert (view._frame is not None) == ansi_color
        before = app.full_frame()
        for n, output in enumerate(OUTPUTS, 1):
            view.feed(output)
            assert view.fast_paints == n and not view._repaint_required, output
            assert len(app.writes) == n
            assert (view._frame is not None) == ansi_color
        drawn = replay(before, *app.writes)
        view.refresh()  # Textual's own frame of the same state
        await settle(pilot, view)
        truth = replay(app.full_frame())
        assert "top" in truth.display[2] and "12:00" not in "".join(truth.display)
        assert cells(drawn) == cells(truth), "\n".join(drawn.display)
        # Only the rows that changed were written.
        view.feed(b"!")
        assert app.writes[-1].count("\x1b[") < 12 and app.writes[-1].count("H") == 1


async def test_normal_refresh_when_the_pane_is_covered_scrolled_or_flooded(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(TerminalView, "fast_paint", True)
    app = RecordingApp()
    async with app.run_test(size=SIZE, notifications=True, tooltips=True) as pilot:
        view = app.query_one(TerminalView)
        view.load_snapshot("s1", *INNER, b"\r\n".join(b"line %d" % i for i in range(40)))
        await settle(pilot, view)
        monkeypatch.setattr(terminal_module, "FAST_PAINT_GAP_S", 0.0)
        view.feed(b"a")
        assert view.fast_paints == 1
        # A dialog over the pane: Textual draws (the dialog stays on top).
        app.push_screen(Dialog())
        await pilot.pause()
        view.feed(b"b")
        assert view.fast_paints == 1 and view._lines is None
        app.pop_screen()
        await settle(pilot, view)
        # A notification over the pane's corner: the same.
        app.notify("hello", timeout=30)
        await pilot.pause()
        await settle(pilot, view)
        view.feed(b"c")
        assert view.fast_paints == 1 and view._lines is None
        app.clear_notifications()
        await settle(pilot, view)
        # Scrolled back: the history view is Textual's.
        view.scroll_lines(5)
        await settle(pilot, view)
        view.feed(b"d")
        assert view.fast_paints == 1
        view.scroll_lines(-5)
        await settle(pilot, view)
        view.feed(b"e")
        assert view.fast_paints == 2
        # Output right after output (a flood): Textual's frames coalesce it.
        monkeypatch.setattr(terminal_module, "FAST_PAINT_GAP_S", 3600.0)
        view.feed(b"f")
        assert view.fast_paints == 2 and view._lines is None
        await settle(pilot, view)
        assert "abcdef" in view.screen_text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_runs_are_the_rows_cells(backend: str):
    """What the pane draws a row from (``row_runs``) is the row's cells, run by run."""
    term = make_terminal(*INNER, 100, backend=backend)
    term.feed(FIRST + b"".join(OUTPUTS[:8]) + b"\x1b[3;1H\x1b[41m  \x1b[0m\x1b[44m \x1b[0m")
    rows, cells = term.screen_rows(), term.cells()
    assert len(rows) == len(cells) == INNER[0]
    for row, row_cells in zip(rows, cells, strict=True):
        runs = term.row_runs(row)
        assert "".join(text for text, _look in runs) == "".join(c[0] or " " for c in row_cells)
        assert [look for text, look in runs for _ in text] == [c[1:] for c in row_cells]
        assert all(a[1] != b[1] for a, b in zip(runs[:-1], runs[1:], strict=True))  # differ
    # The third row: two cells on red, one on blue, then the rest as they were.
    assert [(text, look[1]) for text, look in cell_runs(cells[2])[:2]] == [
        ("  ", "i1"),
        (" ", "i4"),
    ]
