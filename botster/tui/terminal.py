"""The terminal pane: a Textual widget that shows one agent's screen and types into it.

Owns the screen model of the attached session (``botster.sessions.terminal.make_terminal``,
the same emulator the sessions use, so what the hub snapshots is what we draw), rendering its
cells with colours, attributes, wide characters and the cursor; keyboard passthrough (every
key but the prefix becomes the bytes a terminal would send, see ``keys.py``; paste is
bracketed when the program asked for it); mouse-wheel scrollback over the model's history;
clicks, drags and the wheel reported to a program that turned mouse reporting on; and
following the pane's size.

Output for the pane on screen is drawn at once: the rows it changed are written through the
app's own display call as soon as the model has them, instead of at Textual's next frame
(see "Drawing output at once" below); anything unusual takes Textual's normal refresh. Only
the rows that changed are rendered again, from runs of cells that look alike
(``Terminal.row_runs``), not cell by cell.

Typed bytes go straight to the ``send`` callable the app gives (no message hop: each hop
waits a turn of a loop that may be busy drawing a flood, and key-to-echo latency is what a
user feels first). The rest leaves as messages, handled by the app:
``TerminalView.Resized`` (the pane's new size) and ``TerminalView.UiKey`` (the key pressed
after the prefix). Not here: the connection (``hub_link.py``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from rich.cells import cell_len
from rich.color import Color
from rich.console import Console
from rich.control import Control
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual._compositor import CompositorUpdate
from textual.app import ScreenStackError
from textual.dom import NoScreen
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from botster.sessions.terminal import Terminal, cell_runs, make_terminal
from botster.tui.keys import key_bytes, mouse_bytes, paste_bytes

__all__ = ["TerminalView"]

SCROLLBACK = 2000
# Output within this long of the last one drawn at once waits for Textual's next frame: an
# echo is drawn at once, a flood at the frame rate.
FAST_PAINT_GAP_S = 1 / 120
WHEEL_LINES = 3
_MOUSE_MODES = frozenset({1000, 1002, 1003})
_CURSOR_KEYS = re.compile(rb"\x1b\[([ABCDHF])")
# PgUp/PgDn as the user's terminal sends them: plain (CSI 5 ~), or with shift (CSI 5;2 ~).
_PAGE_KEYS = re.compile(rb"\x1b\[([56])(;2)?~")

Cell = tuple[Any, ...]
# Textual's names for the page keys: (up, shift).
_PAGE_KEY_NAMES = {
    "pageup": (True, False),
    "pagedown": (False, False),
    "shift+pageup": (True, True),
    "shift+pagedown": (False, True),
}


class TerminalView(Widget, can_focus=True):
    """Shows the attached session and passes keys through to it.

    Args:
        prefix_keys: the key(s) that leave passthrough for one UI key.
        send: types bytes into the attached session.
    """

    DEFAULT_CSS = """
    TerminalView {
        width: 1fr;
        height: 1fr;
        border: round $panel;
    }
    TerminalView:focus {
        border: round $accent;
    }
    """

    class Resized(Message):
        """The pane's inner size changed: the session should follow."""

        def __init__(self, view: TerminalView, rows: int, cols: int, force: bool = False) -> None:
            super().__init__()
            self.view = view
            self.rows = rows
            self.cols = cols
            self.force = force  # the session has another size than the pane: resize it anyway

        @property
        def control(self) -> TerminalView:
            return self.view

    class UiKey(Message):
        """A key pressed after the prefix: it is the UI's, not the program's."""

        def __init__(self, view: TerminalView, key: str) -> None:
            super().__init__()
            self.view = view
            self.key = key

        @property
        def control(self) -> TerminalView:
            return self.view

    def __init__(
        self, prefix_keys: list[str], send: Callable[[bytes], object], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.prefix_keys = list(prefix_keys)
        self.send = send
        self.term: Terminal | None = None
        self.session_id: str | None = None
        self.exit_code: int | None = None
        self.scroll = 0  # lines scrolled back from the live screen
        self.prefix_armed = False
        self._buttons: set[int] = set()  # mouse buttons down that the program was told of
        self._lines: list[Strip] | None = None
        self._styles: dict[tuple[Any, ...], Style] = {}
        self._cursor_styles: dict[tuple[Any, ...], Style] = {}
        # The live screen's rows as last rendered: (the model's row, cursor column) and its
        # strip; a row whose key is unchanged keeps its strip (and is not painted again).
        self._row_keys: list[tuple[Any, int] | None] = []
        self._row_strips: list[Strip] = []
        self._changed_rows: list[int] = []  # rows the last ``_live_lines`` rendered afresh
        self._frame: _Frame | None = None  # the border around a row, as Textual draws it
        self._cover: tuple[Any, Region | None, list[Widget]] | None = None  # ``_uncovered``
        self.fast_paints = 0  # output drawn at once (``_paint_now``), for tests and benches
        self._painted_at = 0.0
        self._placeholder = "Connecting to the hub…"

    # Feeding -----------------------------------------------------------------------------

    def load_snapshot(self, session_id: str, rows: int, cols: int, data: bytes) -> None:
        """Starts over from a SNAPSHOT frame: a fresh model of the session's size."""
        self.session_id = session_id
        self.exit_code = None
        self.scroll = 0
        self.term = make_terminal(rows, cols, SCROLLBACK)
        self._row_keys.clear()
        self.term.feed(data)
        self._changed()
        size = self._inner_size()
        if size is not None and size != (rows, cols):
            # Someone else sized the session: take it back to this pane's size.
            self.term.resize(*size)
            self._changed()
            self.post_message(self.Resized(self, *size, force=True))

    def feed(self, data: bytes) -> None:
        """Live output of the session: drawn at once when it can be (``_paint_now``), else
        at Textual's next frame."""
        if self.term is None:
            return
        self.term.feed(data)
        try:
            painted = self._paint_now()
        except Exception:
            # It leans on Textual's internals: should they change under it, the pane goes
            # on drawing at Textual's frames (an exception here would end the connection).
            self.log.error("drawing output at once failed; drawing at frames from now on")
            self.fast_paint = False
            painted = False
        if not painted:
            self._changed()

    def process_exited(self, code: int) -> None:
        """The program ended; its last screen stays."""
        self.exit_code = code
        self._changed()

    def clear(self, placeholder: str | None = None) -> None:
        """Shows nothing (no agent, or one without a session yet)."""
        self.term = None
        self.session_id = None
        self.exit_code = None
        self.scroll = 0
        if placeholder is not None:
            self._placeholder = placeholder
        self._changed()

    def screen_text(self) -> str:
        """The visible screen of the program as plain text (for tests and tools)."""
        return self.term.text() if self.term is not None else ""

    def _changed(self) -> None:
        self._lines = None
        if self.exit_code is not None:
            code = "killed" if self.exit_code == -1 else f"exited {self.exit_code}"
            self.border_subtitle = code
        elif self.prefix_armed:
            self.border_subtitle = "prefix: next key is for the UI"
        elif self.scroll:
            self.border_subtitle = f"scrolled back {self.scroll} lines"
        else:
            self.border_subtitle = ""
        self.refresh()

    # Size --------------------------------------------------------------------------------

    def _inner_size(self) -> tuple[int, int] | None:
        size = self.size
        if size.width < 1 or size.height < 1:
            return None
        return size.height, size.width

    def on_resize(self, event: events.Resize) -> None:
        self._frame = None  # the border is learnt again at the new size
        size = self._inner_size()
        if size is None:
            return
        if self.term is not None and (self.term.rows, self.term.cols) != size:
            self.term.resize(*size)
            self._changed()
        self.post_message(self.Resized(self, *size))

    def on_focus(self) -> None:
        self._frame = None  # the border takes the focused colour

    def on_blur(self) -> None:
        self._frame = None

    # Keys, paste, mouse ------------------------------------------------------------------

    def _app_cursor(self) -> bool:
        return self.term is not None and self.term.app_cursor

    def _modes(self) -> frozenset[int]:
        return self.term.modes if self.term is not None else frozenset()

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        self.handle_key(event)

    def handle_key(self, event: events.Key) -> bool:
        """One key pressed while the pane has the focus (the app calls this directly).

        Returns whether it was a UI key (a ``UiKey`` message is on its way).
        """
        key = event.key
        if not self.prefix_armed and key in _PAGE_KEY_NAMES:
            up, shift = _PAGE_KEY_NAMES[key]
            if self.page_key(up, shift):
                return False
        if self.prefix_armed:
            self.prefix_armed = False
            self._changed()
            if key in self.prefix_keys:  # prefix twice: the program gets the prefix key
                data = key_bytes(key, event.character)
                if data:
                    self._type(data)
            elif key != "escape":
                self.post_message(self.UiKey(self, key))
                return True
            return False
        if key in self.prefix_keys:
            self.prefix_armed = True
            self._changed()
            return False
        data = key_bytes(key, event.character, app_cursor=self._app_cursor())
        if data:
            self._type(data)
        return False

    def raw_input(self, data: bytes) -> None:
        """Keys as the user's terminal sent them (``rawinput.py``), for the program.

        The user's terminal writes cursor keys in the UI's own cursor-key mode (normal);
        a program that asked for application cursor keys gets them as ``SS3`` instead, as
        tmux would send them. PgUp/PgDn may scroll the pane instead (``page_key``).
        """
        if b"~" in data:
            at = 0
            for m in _PAGE_KEYS.finditer(data):
                up, shift = m[1] == b"5", bool(m[2])
                self._raw(data[at : m.start()])  # typed first: it returns to the live screen
                at = m.start()
                if self.page_key(up, shift):
                    at = m.end()
            data = data[at:]
        self._raw(data)

    def _raw(self, data: bytes) -> None:
        if not data:
            return
        if self._app_cursor():
            data = _CURSOR_KEYS.sub(b"\x1bO\\1", data)
        self._type(data)

    def page_key(self, up: bool, shift: bool) -> bool:
        """PgUp/PgDn (with shift or not): whether it scrolled the pane (else the program's).

        As a terminal user expects: Shift+PgUp/PgDn always page through the pane's
        scrollback. Plain PgUp enters it too when the program is a shell or a log, i.e. on
        the primary screen with no mouse reporting; a full-screen program (the alternate
        screen: vim, less, htop) or one that takes the mouse gets the key. While scrolled
        back, plain PgUp/PgDn page, and PgDn at the bottom is the live screen again.
        """
        term = self.term
        if term is None:
            return False
        if not (shift or self.scroll):
            if not up or term.alt_screen or self._modes() & _MOUSE_MODES:
                return False
        page = max(1, self._rows() - 1)
        self.scroll_lines(page if up else -page)
        return True

    def raw_paste(self, text: bytes) -> None:
        """A paste from the user's terminal, bracketed if the program asked for it."""
        if text:
            self._type(paste_bytes(text.decode(errors="replace"), bracketed=2004 in self._modes()))

    def _type(self, data: bytes) -> None:
        if self.scroll:
            self.scroll = 0
            self._changed()
        self.send(data)

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        if event.text:
            self._type(paste_bytes(event.text, bracketed=2004 in self._modes()))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._wheel(True, event)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._wheel(False, event)

    def _wheel(self, up: bool, event: events.MouseEvent) -> None:
        if not self._report(event, 64 if up else 65):
            self.scroll_lines(WHEEL_LINES if up else -WHEEL_LINES)

    # Clicks and drags reach a program that turned mouse reporting on (1000: buttons, 1002:
    # and drags, 1003: and any motion); otherwise the mouse is the UI's (focus, the wheel).

    def on_mouse_down(self, event: events.MouseDown) -> None:
        if self._report(event, event.button - 1):
            self._buttons.add(event.button)
            self.capture_mouse()  # a drag out of the pane still reports, clamped to its edge

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if event.button in self._buttons:
            self._buttons.discard(event.button)
            if not self._buttons:
                self.capture_mouse(False)
            self._report(event, event.button - 1, release=True, captured=True)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        modes = self._modes()
        if 1003 in modes or (1002 in modes and event.button in self._buttons):
            button = event.button - 1 if event.button in self._buttons else 3
            self._report(event, 32 + button, captured=bool(self._buttons))

    def _report(
        self, event: events.MouseEvent, code: int, *, release: bool = False, captured: bool = False
    ) -> bool:
        """Sends a mouse report if the program wants them; whether it did."""
        modes = self._modes()
        if not modes & _MOUSE_MODES or self.scroll or self.term is None:
            return False
        if captured:
            at = event.get_content_offset_capture(self)
            col = max(0, min(at.x, self.term.cols - 1))
            row = max(0, min(at.y, self.term.rows - 1))
        else:
            inside = event.get_content_offset(self)
            if inside is None:
                return False  # on the border
            col, row = inside.x, inside.y
        code |= 4 * event.shift | 8 * event.meta | 16 * event.ctrl
        encoding = next((m for m in (1006, 1015, 1005) if m in modes), 0)
        self.send(mouse_bytes(code, col, row, release=release, encoding=encoding))
        return True

    def scroll_lines(self, delta: int) -> None:
        """Scrolls the view back (positive) or forward (negative) through the history."""
        history = len(self._history(full=True)) - self._rows()
        new = max(0, min(self.scroll + delta, max(0, history)))
        if new != self.scroll:
            self.scroll = new
            self._changed()

    # Rendering ---------------------------------------------------------------------------

    def _rows(self) -> int:
        return self.term.rows if self.term is not None else 0

    def _history(self, full: bool = False) -> list[list[Cell]]:
        """Scrollback then screen, as cell rows; only the screen unless scrolled or `full`."""
        term = self.term
        if term is None:
            return []
        return term.history() if self.scroll or full else term.cells()

    def _style(self, look: tuple[Any, ...]) -> Style:
        """The style of cells that look like `look` (a cell's attributes, after its char)."""
        style = self._styles.get(look)
        if style is None:
            fg, bg, bold, italic, underline, blink, inverse, strike, faint = look
            style = Style(
                color=_colour(fg),
                bgcolor=_colour(bg),
                bold=bold or None,
                italic=italic or None,
                underline=underline or None,
                blink=blink or None,
                reverse=inverse or None,
                strike=strike or None,
                dim=faint or None,
            )
            if len(self._styles) > 4096:
                self._styles.clear()
            self._styles[look] = style
        return style

    def _cursor_style(self, look: tuple[Any, ...]) -> Style:
        """The cursor's cell: its look, reversed."""
        style = self._cursor_styles.get(look)
        if style is None:
            style = self._style(look) + Style(reverse=not look[6])
            if len(self._cursor_styles) > 256:
                self._cursor_styles.clear()
            self._cursor_styles[look] = style
        return style

    def _render_lines(self) -> list[Strip]:
        term = self.term
        if term is None:
            text = self._placeholder[: self.size.width]
            return [Strip([Segment(text, Style(dim=True))], cell_len(text))]
        if not self.scroll:
            return self._live_lines(term)
        history = self._history()
        end = len(history) - self.scroll
        return [self._strip(cell_runs(row), -1) for row in history[max(0, end - term.rows) : end]]

    def _live_lines(self, term: Terminal) -> list[Strip]:
        """The live screen's strips; rows unchanged since the last render keep theirs (the
        others are listed in ``_changed_rows``)."""
        rows = term.screen_rows()
        cursor = term.cursor
        cur_row = cursor.row if cursor.visible else -1
        cur_col = min(cursor.col, term.cols - 1)
        keys, strips = self._row_keys, self._row_strips
        if len(keys) != len(rows):
            keys[:] = [None] * len(rows)
            strips[:] = [Strip.blank(0)] * len(rows)
        changed = self._changed_rows = []
        for y, row in enumerate(rows):
            cur_x = cur_col if y == cur_row else -1
            key = keys[y]
            if key is None or key[1] != cur_x or key[0] != row:
                keys[y] = (row, cur_x)
                runs = term.row_runs(row)
                strips[y] = self._strip(runs, cur_x)
                changed.append(y)
        return list(strips)

    def _strip(self, runs: list[tuple[str, tuple[Any, ...]]], cur_x: int) -> Strip:
        """One row, as runs of cells that look alike, as a strip; `cur_x`: the cursor's
        column in it (-1: none)."""
        segments: list[Segment] = []
        append = segments.append
        style = self._style
        length = 0
        x = 0
        skip = False  # the next cell is the right half of a wide character
        for text, look in runs:
            end = x + len(text)
            if not skip and text.isascii() and text.isprintable():
                # Printable ASCII: one cell per character (most runs of most rows).
                if x <= cur_x < end:
                    at = cur_x - x
                    if at:
                        append(Segment(text[:at], style(look)))
                    append(Segment(text[at], self._cursor_style(look)))
                    if at + 1 < len(text):
                        append(Segment(text[at + 1 :], style(look)))
                else:
                    append(Segment(text, style(look)))
                length += end - x
                x = end
                continue
            run: list[str] = []  # the careful way, cell by cell
            for char in text:
                if skip:  # drawn by the wide character before it
                    skip = False
                    x += 1
                    continue
                if not char.isascii() or not char.isprintable():
                    w = cell_len(char)
                    if w == 2:
                        skip = True
                    elif w != 1:
                        char, w = " ", 1
                    length += w
                else:
                    length += 1
                if x == cur_x:
                    if run:
                        append(Segment("".join(run), style(look)))
                        run = []
                    append(Segment(char, self._cursor_style(look)))
                else:
                    run.append(char)
                x += 1
            if run:
                append(Segment("".join(run), style(look)))
        return Strip(segments, length)

    # Drawing output at once --------------------------------------------------------------
    #
    # Textual draws a refreshed widget at its next frame: a timer of up to 1/60 s started
    # when the app goes idle, after two message hops. For the pane on screen that wait is
    # most of what a user feels between a key and its echo. So when output changes the
    # live screen and nothing covers the pane, the rows that changed are drawn at once,
    # through the app's own display call (its synchronized-output brackets, its driver, its
    # cursor position). A row is the pane's strip for it between the border's two cells as
    # Textual last drew them (``_Frame``: learnt from Textual's own rendering of the pane,
    # and only when Textual adds nothing else: no filter, tint, opacity, padding); without
    # one, the row goes through the widget's line cache as Textual would render it. Either
    # way the line cache is told the row changed, so Textual's next repaint of it renders
    # it afresh. Anything else (scrolled back, a dialog or panel, a notification over the
    # pane, a layout pending) takes the normal path, a refresh.

    def _paint_now(self) -> bool:
        """Draws the rows the last output changed, now. False: refresh the normal way."""
        old = self._lines
        if old is None or self.scroll or self.term is None:
            return False
        now = time.monotonic()
        if now - self._painted_at < FAST_PAINT_GAP_S:
            return False  # a flood: Textual's frames (60/s) coalesce it
        place = self._uncovered()
        if place is None:
            return False
        self._painted_at = now
        new = self._render_lines()
        if len(new) != len(old):
            return False
        self._lines = new
        changed = self._changed_rows
        if not changed:
            return True
        frame = self._frame
        if frame is not None and frame.fits(place, len(new)):
            top, width = frame.top, frame.outer_width
            rows = [(place.x, place.y + top + y, frame.row(new[y])) for y in changed]
        else:
            top, width = self.content_offset.y, self.outer_size.width
            if len(new) > self.size.height:
                return False
            rows = []
        set_dirty = self._styles_cache.set_dirty
        for y in changed:
            set_dirty(Region(0, top + y, width, 1))
        if not rows or any(strip is None for _x, _y, strip in rows):
            rows = [
                (place.x, place.y + top + y, self.render_lines(Region(0, top + y, width, 1))[0])
                for y in changed
            ]
        self.fast_paints += 1
        self.app._display(self.screen, _RowsUpdate(rows))
        return True

    def _uncovered(self) -> Region | None:
        """The pane's region if it is on screen, whole, with nothing over it and no layout
        pending; else None."""
        if not self.fast_paint or not self.is_mounted:
            return None
        app = self.app
        if app._batch_count:
            return None
        try:
            screen = self.screen
            if app.screen is not screen:
                return None
        except (NoScreen, ScreenStackError):  # between screens, or the app is ending
            return None
        if screen._layout_required or self._layout_required:
            return None
        # What covers the pane changes only with the layout, which gives the compositor a
        # new map of visible widgets: the answer is kept per map.
        visible = screen._compositor.visible_widgets
        cover = self._cover
        if cover is None or cover[0] is not visible:
            cover = self._cover = (visible, *self._covered_by(visible))
        _visible, region, hidden = cover
        if region is None or any(widget.visible for widget in hidden):
            return None
        return region

    def _covered_by(self, visible: dict[Widget, Any]) -> tuple[Region | None, list[Widget]]:
        """The pane's region (None: clipped, or something over it) and the widgets over it
        that are hidden now (they may show without a new layout)."""
        try:
            mine = visible[self][0]
        except KeyError:
            return None, []
        if mine != self.region:
            return None, []  # clipped
        below = set(self.ancestors_with_self)
        over = [
            widget
            for widget, (region, _clip) in visible.items()
            if widget not in below and region.overlaps(mine)
        ]
        if any(widget.visible for widget in over):
            return None, []
        return mine, over

    def render_lines(self, crop: Region) -> list[Strip]:
        strips = super().render_lines(crop)
        self._learn_frame(crop, strips)
        return strips

    def _learn_frame(self, crop: Region, strips: list[Strip]) -> None:
        """Learns the pane's border cells from a content row Textual rendered (``_Frame``)."""
        lines = self._lines
        outer = self.outer_size
        if lines is None or crop.x != 0 or crop.width != outer.width:
            return
        top = self.content_offset.y
        y = max(0, top - crop.y)  # the first content row in the crop
        if y >= len(strips) or crop.y + y - top >= len(lines):
            return  # no content row in it: what was learnt stays
        strip = strips[y]
        y += crop.y - top
        self._frame = None
        styles = self.styles
        if (
            self.app.get_line_filters()
            or styles.tint.a
            or self.opacity != 1.0
            or styles.text_opacity != 1.0
            or styles.padding != (0, 0, 0, 0)
        ):
            return
        segments = list(strip)
        if len(segments) < 2:
            return
        frame = _Frame(segments[0], segments[-1], top, self.size.width, outer)
        if frame.row(lines[y]) == strip:
            self._frame = frame

    # False: every frame waits for Textual's timer (BOTSTER_TUI_FAST_PAINT=0; tests and
    # benchmarks compare both).
    fast_paint = os.environ.get("BOTSTER_TUI_FAST_PAINT", "1") != "0"

    def render_line(self, y: int) -> Strip:
        if self._lines is None:
            self._lines = self._render_lines()
        width = self.size.width
        if y < len(self._lines):
            return self._lines[y].crop_extend(0, width, None)
        return Strip.blank(width)


class _Frame:
    """What Textual draws around a content row of the pane: the border's left and right cells
    (a row is ``left + the pane's strip + right`` when Textual adds nothing else)."""

    def __init__(self, left: Segment, right: Segment, top: int, width: int, outer: Any) -> None:
        self.left, self.right = left, right
        self.top = top  # rows above the content (the border)
        self.width = width  # content width
        self.outer_width, self.outer_height = outer.width, outer.height

    def fits(self, region: Region, rows: int) -> bool:
        """Whether it was learnt at the size the pane has now (`rows` lines shown)."""
        return (
            region.width == self.outer_width
            and region.height == self.outer_height
            and self.top + rows <= region.height
        )

    def row(self, strip: Strip) -> Strip | None:
        """The row for one of the pane's strips; None: not its width (Textual pads it)."""
        if strip.cell_length != self.width:
            return None
        return Strip([self.left, *strip, self.right], self.outer_width)


class _RowsUpdate(CompositorUpdate):
    """Whole rows of the screen to draw as they are: ``(x, y, strip)`` each."""

    def __init__(self, rows: list[tuple[int, int, Strip]]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: Any) -> Any:
        for x, y, strip in self.rows:
            yield Control.move_to(x, y).segment
            yield from strip

    def render_segments(self, console: Console) -> str:
        move_to = Control.move_to
        return "".join(
            move_to(x, y).segment.text + strip.render(console) for x, y, strip in self.rows
        )


def _colour(value: str | None) -> Color | None:
    if value is None:
        return None
    if value.startswith("i"):
        return Color.from_ansi(int(value[1:]))
    return Color.parse(value)
