"""The terminal model a session keeps for snapshots, and the escape scanner that reports events.

This module owns two things:

* ``Terminal``: a screen model fed with raw PTY bytes. ``feed(data)`` returns the events found in
  them, ``resize(rows, cols)``, ``snapshot()`` (an ANSI byte string that, fed to a fresh terminal
  of the same size, rebuilds the exact screen: text, colours, attributes, the alternate screen
  with the primary one behind it, cursor position, visibility and pen, scroll region and the
  input modes listed below; plain semicolon SGR and no REP, so pyte or xterm.js replay it),
  ``text()`` (the visible screen as plain text), ``title``, ``cwd``, ``cursor``,
  ``alt_screen``, ``app_cursor``, ``cells()`` and ``history()`` (for comparisons and
  renderers). Two implementations: pyavt (asciinema's Rust ``avt``, primary, ~90 MB/s
  with the scanner) and pyte (pure Python, ~1 MB/s, fallback). ``make_terminal`` is the
  one place that chooses between them.
* ``EscapeScanner``: a small incremental parser over the raw byte stream that survives any split
  across reads. It reports OSC 0/2 (title), OSC 7 (cwd, ``file://host/path``), OSC 9
  (notification; all-digit/semicolon payloads such as ConEmu progress are ignored), OSC 777
  (``notify;title;body``) and BEL outside strings. It also tracks the input modes neither
  emulator keeps (mouse reporting 1000/1002/1003/1005/1006/1015, focus events 1004, bracketed
  paste 2004) so the snapshot can restore them.

Events are plain dicts, ready to be sent as JSON::

    {"type": "title", "title": str}
    {"type": "cwd", "cwd": str}
    {"type": "notification", "source": "osc9" | "osc777", "title": str, "body": str}
    {"type": "bell"}

Title and cwd events fire only when the value changes. Bytes are decoded with an incremental
UTF-8 decoder (invalid bytes become U+FFFD), so a multi-byte character split across reads is
never broken. Zero-width characters (combining marks, variation selectors, joiners) are
composed into the character before them where Unicode can (NFC) and dropped otherwise, so
every cell is where a terminal, and the program, put it. 8-bit C1 controls are not
recognised: in a UTF-8 stream those bytes are continuation bytes.

Not here: the PTY, the output buffer and the protocol (``process.py``), and answering terminal
queries such as DSR or DA (the model is passive; a client terminal answers them).
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "BACKENDS",
    "Cursor",
    "EscapeScanner",
    "FEED_CHUNK",
    "Terminal",
    "cell_runs",
    "make_terminal",
]

BACKENDS = ("avt", "pyte")

# Input modes the emulators do not keep but a client terminal must know about.
_TRACKED_MODES = frozenset({1000, 1002, 1003, 1004, 1005, 1006, 1015, 2004})
_MAX_OSC = 64 << 10
_MAX_CSI = 64

_GROUND, _ESC, _CSI, _OSC, _OSC_ESC, _STR, _STR_ESC = range(7)
# In the ground state only BEL and escapes that can matter are stopped at: an ESC followed
# by a complete CSI that does not start with "?" and is not CSI 3 J, erase scrollback
# (cursor moves, SGR, other erases: most of a busy
# screen's bytes), or by a printable byte that starts no string and is not "c", is skipped
# inside the regex engine. An ESC whose sequence is cut by the end of the chunk does stop,
# so the state machine below sees it whole however the stream is split.
_GROUND_RE = re.compile(
    rb"\x07|\x1b(?!\[(?!\?)[^\x40-\x7e\x07\x18\x1a\x1b]*[\x40-\x7e]|[ -OQ-WYZ\\`-bd-~])"
)
_CSI_RE = re.compile(rb"[\x40-\x7e\x07\x18\x1a\x1b]")
_OSC_RE = re.compile(rb"[\x07\x18\x1a\x1b]")
_STR_RE = re.compile(rb"[\x18\x1a\x1b]")
_DIGITS_RE = re.compile(r"[0-9;]*")
_BEL, _ESC_B, _CAN, _SUB = 0x07, 0x1B, 0x18, 0x1A
# Characters with no width of their own: combining marks (Latin/Greek/Cyrillic, Hebrew,
# Arabic, for symbols, half marks), zero-width spaces and joiners, direction marks, word
# joiners, variation selectors, the BOM and tag characters.
_ZERO_WIDTH = re.compile(
    "[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
    "\u1ab0-\u1aff\u1dc0-\u1dff\u200b-\u200f\u202a-\u202e\u2060-\u2064\u20d0-\u20ff"
    "\ufe00-\ufe0f\ufe20-\ufe2f\ufeff\U000e0001-\U000e007f\U000e0100-\U000e01ef]"
)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Cursor position (0-based; ``col`` may equal the width when a wrap is pending)."""

    row: int
    col: int
    visible: bool


def _quiet_prefix(data: bytes) -> int:
    """How much of ``data``, scanned from the ground state, can hold nothing the scanner
    reports: up to its last ESC when it has no BEL, CAN or SUB and every ESC before that starts
    a CSI that sets no private mode (coloured text). Found with byte searches that run at
    memory speed; the regex stops at every escape, one every few bytes of coloured text."""
    last = data.rfind(b"\x1b")
    if (
        last <= 0
        or data.find(b"\x07", 0, last) >= 0
        or data.find(b"\x18", 0, last) >= 0
        or data.find(b"\x1a", 0, last) >= 0
        or data.count(b"\x1b", 0, last) != data.count(b"\x1b[", 0, last)
        or data.find(b"\x1b[?", 0, last) >= 0
    ):
        return 0
    return last


class EscapeScanner:
    """Finds title, cwd, notification and bell events in a raw PTY byte stream, split-safe."""

    def __init__(self) -> None:
        self.title = ""
        self.cwd: str | None = None
        self.modes: set[int] = set()
        self._state = _GROUND
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Scans one chunk; returns the events completed in it, in stream order."""
        events: list[dict[str, Any]] = []
        data = bytes(data)
        pos, n = 0, len(data)
        if self._state == _GROUND:
            pos = _quiet_prefix(data)
        while pos < n:
            state = self._state
            if state == _GROUND:
                # memchr finds the next ESC or BEL ~100x faster than the regex engine steps
                # through plain text; the regex takes over from there.
                esc, bel = data.find(b"\x1b", pos), data.find(b"\x07", pos)
                if esc < 0 and bel < 0:
                    return events
                m = _GROUND_RE.search(
                    data, min(esc, bel) if esc >= 0 and bel >= 0 else max(esc, bel)
                )
                if m is None:
                    return events
                pos = m.end()
                if data[m.start()] == _BEL:
                    events.append({"type": "bell"})
                else:
                    self._state = _ESC
            elif state == _ESC:
                pos = self._escape(data[pos], pos)
            elif state == _CSI:
                m = _CSI_RE.search(data, pos)
                end = m.start() if m else n
                self._collect(data, pos, end, _MAX_CSI)
                if m is None:
                    return events
                pos = m.end()
                b = data[m.start()]
                if b == _BEL:
                    events.append({"type": "bell"})  # C0 controls execute inside CSI
                elif b == _ESC_B:
                    self._state = _ESC
                elif b in (_CAN, _SUB):
                    self._state = _GROUND
                else:
                    self._csi(b)
                    self._state = _GROUND
            elif state == _OSC:
                m = _OSC_RE.search(data, pos)
                end = m.start() if m else n
                self._collect(data, pos, end, _MAX_OSC)
                if m is None:
                    return events
                pos = m.end()
                b = data[m.start()]
                if b == _BEL:
                    self._osc(events)
                    self._state = _GROUND
                elif b == _ESC_B:
                    self._state = _OSC_ESC
                else:
                    self._state = _GROUND
            elif state == _OSC_ESC:
                # ESC ends the string; ESC \ is ST, anything else starts a new sequence.
                self._osc(events)
                if data[pos] == 0x5C:
                    self._state = _GROUND
                    pos += 1
                else:
                    self._state = _ESC
            elif state == _STR:
                m = _STR_RE.search(data, pos)
                if m is None:
                    return events
                pos = m.end()
                self._state = _STR_ESC if data[m.start()] == _ESC_B else _GROUND
            else:  # _STR_ESC
                if data[pos] == 0x5C:
                    self._state = _GROUND
                    pos += 1
                else:
                    self._state = _ESC
        return events

    def _escape(self, b: int, pos: int) -> int:
        if b == 0x5D:  # ]
            self._start(_OSC)
        elif b == 0x5B:  # [
            self._start(_CSI)
        elif b in (0x50, 0x58, 0x5E, 0x5F):  # P X ^ _: DCS, SOS, PM, APC
            self._state = _STR
        elif b == _ESC_B:
            pass
        else:
            if b == 0x63:  # ESC c: full reset
                self.modes.clear()
            self._state = _GROUND
        return pos + 1

    def _start(self, state: int) -> None:
        self._state = state
        self._buf.clear()
        self._overflow = False

    def _collect(self, data: bytes, start: int, end: int, limit: int) -> None:
        if self._overflow or start == end:
            return
        if len(self._buf) + end - start > limit:
            self._overflow = True
            self._buf.clear()
        else:
            self._buf += data[start:end]

    def _csi(self, final: int) -> None:
        if self._overflow or final not in (0x68, 0x6C) or not self._buf.startswith(b"?"):
            return
        on = final == 0x68
        for part in bytes(self._buf[1:]).split(b";"):
            if part.isdigit() and int(part) in _TRACKED_MODES:
                if on:
                    self.modes.add(int(part))
                else:
                    self.modes.discard(int(part))

    def _osc(self, events: list[dict[str, Any]]) -> None:
        if self._overflow:
            return
        text = self._buf.decode("utf-8", "replace")
        code, _, rest = text.partition(";")
        if code in ("0", "2"):
            if rest != self.title:
                self.title = rest
                events.append({"type": "title", "title": rest})
        elif code == "7":
            cwd = _cwd_from_url(rest)
            if cwd is not None and cwd != self.cwd:
                self.cwd = cwd
                events.append({"type": "cwd", "cwd": cwd})
        elif code == "9":
            if not _DIGITS_RE.fullmatch(rest):
                events.append({"type": "notification", "source": "osc9", "title": "", "body": rest})
        elif code == "777":
            parts = rest.split(";", 2)
            if parts[0] == "notify":
                title = parts[1] if len(parts) > 1 else ""
                body = parts[2] if len(parts) > 2 else ""
                events.append(
                    {"type": "notification", "source": "osc777", "title": title, "body": body}
                )

    def mode_sequence(self) -> str:
        """Escape sequences that turn the tracked input modes on in a fresh terminal."""
        return "".join(f"\x1b[?{m}h" for m in sorted(self.modes))


def cell_runs(cells: list[tuple[Any, ...]]) -> list[tuple[str, tuple[Any, ...]]]:
    """Cells (as ``Terminal.cells()`` gives them) as runs of neighbours that look alike:
    ``(characters, attributes)``, one character per cell (a wide character's right half
    too), the attributes as in a cell after its character."""
    runs: list[tuple[list[str], tuple[Any, ...]]] = []
    for cell in cells:
        look = cell[1:]
        if runs and runs[-1][1] == look:
            runs[-1][0].append(cell[0] or " ")
        else:
            runs.append(([cell[0] or " "], look))
    return [("".join(chars), look) for chars, look in runs]


def _nth_feed_before(data: bytes, end: int, n: int, start: int) -> int:
    """Where the ``n``-th LF before ``end`` is, counting back; -1 when it is before ``start``."""
    pos = end
    for _ in range(n):
        pos = data.rfind(b"\n", start, pos) if pos > start else -1
        if pos < 0:
            return -1
    return pos


def _cwd_from_url(value: str) -> str | None:
    """``file://host/a%20b`` -> ``/a b``; a bare absolute path is accepted too."""
    if value.startswith("/"):
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme not in ("file", "kitty-shell-cwd") or not parts.path.startswith("/"):
        return None
    return unquote(parts.path)


_ERASE_SCROLLBACK = b"\x1b[3J"
# Output the emulator can skip without changing what it shows (``Terminal._unseen``): plain
# lines, printable ASCII with CR and LF. Only a chunk with few other bytes is searched for them.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n"
_NOT_PLAIN = re.compile(rb"[^ -~\r\n]")
_MAX_SEARCHED_BREAKS = 64
_BREAKS_SLICE = 64 << 10
_AVT_MARGINS = re.compile("\x9b\\d+;\\d+r")  # DECSTBM in avt's dump (cells never hold U+009B)
FEED_CHUNK = 4 << 10  # avt's feed is superlinear in the chunk: 1 MiB costs 8x 256 x 4 KiB


class Terminal(ABC):
    """A screen model fed with raw PTY bytes. Implementations differ only in the emulator."""

    backend = ""

    def __init__(self, rows: int, cols: int, scrollback: int = 0) -> None:
        self.rows = rows
        self.cols = cols
        self.scrollback = scrollback
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._scanner = EscapeScanner()
        self._erase_tail = b""  # the last bytes rendered, to find a split CSI 3 J

    @property
    def title(self) -> str:
        """The last OSC 0/2 title ("" until one is set)."""
        return self._scanner.title

    @property
    def cwd(self) -> str | None:
        """The last OSC 7 working directory, or None."""
        return self._scanner.cwd

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Feeds raw output; returns the events in it (see the module docstring)."""
        events = self.scan(data)
        self.render(data)
        return events

    def scan(self, data: bytes | memoryview) -> list[dict[str, Any]]:
        """The events in raw output (title, cwd, notifications, bell, modes), without drawing.

        ``feed`` is ``scan`` then ``render``; a caller may run ``render`` later over the same
        bytes in other chunks (the session process does, to keep the emulator off the
        forwarding path)."""
        return self._scanner.feed(data)

    def render(self, data: bytes | memoryview) -> None:
        """Draws raw output on the screen model. CSI 3 J drops the scrollback, as xterm and
        tmux do, wherever it falls in the chunks (the last bytes are kept to find one that a
        chunk boundary splits)."""
        for _ in self.render_steps(data):
            pass

    def render_steps(self, data: bytes | memoryview) -> Iterator[None]:
        """``render`` a ``FEED_CHUNK`` at a time: yields after each chunk it draws, so a caller
        can do other work between them. The model is exact once this is exhausted; until
        then nothing else may draw, resize or read the model."""
        data = bytes(data)
        tail = self._erase_tail
        ends = []  # where each CSI 3 J ends in data (memmem: no regex pass over a flood)
        split = (tail + data[:3]).find(_ERASE_SCROLLBACK)
        if split >= 0:
            ends.append(split + len(_ERASE_SCROLLBACK) - len(tail))
        # memchr for two of its bytes first: the 4-byte search costs 0.6 ms a MiB
        found = data.find(_ERASE_SCROLLBACK) if b"\x1b" in data and b"J" in data else -1
        while found >= 0:
            ends.append(found + len(_ERASE_SCROLLBACK))
            found = data.find(_ERASE_SCROLLBACK, found + 1)
        self._erase_tail = (tail + data)[-3:] if len(data) < 3 else data[-3:]
        start = 0
        for end in ends:
            yield from self._feed_bytes(data[start:end])
            self._clear_scrollback()
            start = end
        yield from self._feed_bytes(data[start:] if start else data)

    def _feed_bytes(self, data: bytes) -> Iterator[None]:
        start = 0
        for skip_from, skip_to in self._unseen(data):
            yield from self._draw(data[start:skip_from])
            # The skip is exact only with the scroll region at full screen: only then does
            # every line feed past the bottom push a line into the scrollback.
            start = skip_to if self._full_scroll_region() else skip_from
        yield from self._draw(data[start:] if start else data)

    def _unseen(self, data: bytes) -> list[tuple[int, int]]:
        """Spans of ``data`` whose drawing nothing can show: inside a run of plain lines
        (printable ASCII, CR, LF), from just after one CR to just after a later CR, followed in
        the run by ``rows`` line feeds, a CR, and ``rows + scrollback + 2`` more line feeds.

        Why that is exact: both ends follow a CR, so the cursor is in column 0 either way, and
        plain text changes no pen, mode, margin or saved state. Only the cursor's row and the
        lines differ. The first ``rows`` line feeds bring the cursor to the bottom from any row;
        the CR after them puts both cursors at the same place (a line feed that scrolls and one
        that does not may leave a pending wrap differently); the last line feeds scroll every
        line that differed out of the screen and the scrollback. So a flood of plain lines
        costs the emulator only its last screenfuls."""
        lead, tail = self.rows, self.rows + self.scrollback + 2
        if len(data) <= lead + tail:
            return []
        breaks = 0
        for i in range(0, len(data), _BREAKS_SLICE):  # coloured output stops at the first
            breaks += len(data[i : i + _BREAKS_SLICE].translate(None, _PLAIN))
            if breaks > _MAX_SEARCHED_BREAKS:
                return []  # escapes all through: no run is long enough to be worth looking for
        edges = [-1, *(m.start() for m in _NOT_PLAIN.finditer(data))] if breaks else [-1]
        edges.append(len(data))
        spans = []
        for run_start, run_end in zip(edges, edges[1:], strict=False):
            if run_end - run_start <= lead + tail:
                continue
            skip_from = data.find(b"\r", run_start + 1, run_end) + 1
            if not skip_from:
                continue
            pos = _nth_feed_before(data, run_end, tail, skip_from)
            pos = data.rfind(b"\r", skip_from, pos) if pos > 0 else -1
            pos = _nth_feed_before(data, pos, lead, skip_from) if pos > 0 else -1
            skip_to = data.rfind(b"\r", skip_from, pos) + 1 if pos > 0 else 0
            if skip_to > skip_from:
                spans.append((skip_from, skip_to))
        return spans

    def _full_scroll_region(self) -> bool:
        """Whether line feeds scroll the whole screen (no DECSTBM margins in force)."""
        return False  # an emulator that cannot tell draws every byte

    def _draw(self, data: bytes) -> Iterator[None]:
        for i in range(0, len(data), FEED_CHUNK):
            text = self._decoder.decode(data[i : i + FEED_CHUNK])
            if not text.isascii() and _ZERO_WIDTH.search(text):
                # A terminal draws these in no cell of their own; avt gives each one a cell,
                # which shifts the rest of the line away from where the program (wcwidth) put
                # it. Compose what Unicode can (e + U+0301 -> é) and drop the rest.
                text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFC", text))
            if text:
                self._feed_text(text)
            yield

    def _clear_scrollback(self) -> None:  # noqa: B027 - optional: pyte keeps no scrollback
        """Forgets the lines scrolled off the top (no scrollback: nothing to do)."""

    def resize(self, rows: int, cols: int) -> None:
        """Resizes the screen (lines reflow or clip as the emulator does)."""
        self.rows, self.cols = rows, cols
        self._resize(rows, cols)

    def snapshot(self) -> bytes:
        """ANSI bytes that rebuild this exact screen in a fresh terminal of the same size."""
        return (self._dump() + self._scanner.mode_sequence()).encode()

    @property
    def modes(self) -> frozenset[int]:
        """The tracked input modes (mouse, focus, bracketed paste) currently on."""
        return frozenset(self._scanner.modes)

    @abstractmethod
    def _feed_text(self, text: str) -> None: ...

    @abstractmethod
    def _resize(self, rows: int, cols: int) -> None: ...

    @abstractmethod
    def _dump(self) -> str: ...

    @abstractmethod
    def text(self) -> str:
        """The visible screen as plain text: one line per row, trailing blanks removed."""

    @property
    @abstractmethod
    def cursor(self) -> Cursor:
        """The cursor."""

    @property
    @abstractmethod
    def alt_screen(self) -> bool:
        """Whether the alternate screen is active."""

    @abstractmethod
    def cells(self) -> list[list[tuple[Any, ...]]]:
        """Every visible cell as ``(char, fg, bg, bold, italic, underline, blink, inverse,
        strikethrough, faint)``; colours are ``None``, ``"i<index>"`` or ``"#rrggbb"``."""

    def history(self) -> list[list[tuple[Any, ...]]]:
        """The lines scrolled off the top (oldest first, as many as the scrollback keeps), then
        the screen; cells as in ``cells()``. Without scrollback, just the screen."""
        return self.cells()

    def screen_rows(self) -> list[Any]:
        """The visible rows as opaque values that compare equal while a row's characters and
        attributes are unchanged; ``row_runs`` expands one. Cheaper than ``cells()`` where
        the emulator allows (a client redrawing only the rows that changed compares these)."""
        return self.cells()

    def row_runs(self, row: Any) -> list[tuple[str, tuple[Any, ...]]]:
        """One row from ``screen_rows`` as runs of cells that look alike (``cell_runs``)."""
        return cell_runs(row)

    @property
    def app_cursor(self) -> bool:
        """Whether the program asked for application cursor keys (DECCKM: ``SS3 A`` arrows)."""
        return False


class _AvtTerminal(Terminal):
    backend = "avt"

    def __init__(self, rows: int, cols: int, scrollback: int) -> None:
        import avt

        super().__init__(rows, cols, scrollback)
        self._avt = avt
        self._vt = avt.Vt(cols, rows, scrollback)

    def _feed_text(self, text: str) -> None:
        self._vt.feed_str(text)

    def _clear_scrollback(self) -> None:
        # avt has no call for it: a fresh emulator rebuilt from the screen's dump, which
        # never holds the scrollback.
        vt = self._avt.Vt(self.cols, self.rows, self.scrollback)
        vt.feed_str(self._vt.dump())
        self._vt = vt

    def _resize(self, rows: int, cols: int) -> None:
        self._vt.resize(cols, rows)

    def _full_scroll_region(self) -> bool:
        return _AVT_MARGINS.search(self._vt.dump()) is None

    def _dump(self) -> str:
        # avt writes CSI as the 8-bit C1 byte; UTF-8 terminals want ESC [. A cell never holds
        # U+009B (the parser consumes it), so the replacement cannot touch text.
        return _portable(self._vt.dump().replace("\x9b", "\x1b["))

    def text(self) -> str:
        return "\n".join(line.text.rstrip() for line in self._vt.view())

    @property
    def cursor(self) -> Cursor:
        c = self._vt.cursor
        return Cursor(c.row, c.col, c.visible)

    @property
    def alt_screen(self) -> bool:
        return "\x9b?1047h" in self._vt.dump()

    def cells(self) -> list[list[tuple[Any, ...]]]:
        return [[self._cell(c) for c in line.cells] for line in self._vt.view()]

    def history(self) -> list[list[tuple[Any, ...]]]:
        return [[self._cell(c) for c in line.cells] for line in self._vt.lines()]

    def screen_rows(self) -> list[Any]:
        # avt's lines are copies that compare by characters and pens, in Rust: no cell
        # tuples are built for rows that did not change.
        return list(self._vt.view())

    def row_runs(self, row: Any) -> list[tuple[str, tuple[Any, ...]]]:
        # Cells are compared by their pens, in Rust; attribute tuples are built per run
        # only (this is on the path from a program's echo to the screen).
        runs: list[tuple[str, tuple[Any, ...]]] = []
        chars: list[str] = []
        pen = None
        for cell in row.cells:
            p = cell.pen
            if p != pen:
                if chars:
                    runs.append(("".join(chars), self._look(pen)))
                chars = []
                pen = p
            chars.append(cell.char)
        if chars:
            runs.append(("".join(chars), self._look(pen)))
        return runs

    @property
    def app_cursor(self) -> bool:
        return bool(self._vt.cursor_key_app_mode)

    def _cell(self, cell: Any) -> tuple[Any, ...]:
        return (cell.char, *self._look(cell.pen))

    def _look(self, p: Any) -> tuple[Any, ...]:
        return (
            self._colour(p.foreground),
            self._colour(p.background),
            p.bold,
            p.italic,
            p.underline,
            p.blink,
            p.inverse,
            p.strikethrough,
            p.faint,
        )

    def _colour(self, colour: Any) -> str | None:
        if colour is None:
            return None
        if isinstance(colour, self._avt.Color.RGB):
            return f"#{colour[0]:02x}{colour[1]:02x}{colour[2]:02x}"
        return f"i{colour[0]}"


# avt's dump uses two things common emulators (pyte, older xterm.js, many others) do not
# read: colon-separated SGR colours (38:5:208, 48:2:r:g:b) and REP (CSI n b, repeat the last
# character). Snapshots are written with semicolons and the characters spelled out instead.
_SGR = re.compile(r"\x1b\[([0-9:;]*)m")
_REP = re.compile(r"(.)\x1b\[(\d+)b", re.DOTALL)


def _sgr_semicolons(m: re.Match[str]) -> str:
    params = []
    for p in m.group(1).split(";"):
        if ":" in p and p.split(":", 1)[0] in ("38", "48", "58"):
            parts = p.split(":")
            if parts[1] == "2" and len(parts) == 6:  # ITU form, with a colour space id
                del parts[2]
            p = ";".join(parts)
        params.append(p)
    return "\x1b[" + ";".join(params) + "m"


def _portable(dump: str) -> str:
    return _REP.sub(lambda m: m.group(1) * (int(m.group(2)) + 1), _SGR.sub(_sgr_semicolons, dump))


# pyte colour names -> palette index (its own typo "bfightmagenta" included).
_PYTE_NAMES = {
    name: i
    for i, name in enumerate(["black", "red", "green", "brown", "blue", "magenta", "cyan", "white"])
}
_PYTE_NAMES.update({"bright" + name: i + 8 for name, i in list(_PYTE_NAMES.items())})
_PYTE_NAMES["bfightmagenta"] = 13
_PYTE_ALT_MODES = (47, 1047, 1049)


def _pyte_screen_class() -> type:
    import pyte

    class AltScreen(pyte.Screen):  # type: ignore[misc]
        """pyte's Screen plus the alternate screen (modes 47, 1047, 1049), which pyte lacks."""

        def __init__(self, columns: int, lines: int) -> None:
            self.alt_mode = 0
            self.primary: dict[int, dict[int, Any]] = {}
            self.primary_cursor: tuple[int, int] = (0, 0)
            super().__init__(columns, lines)

        def reset(self) -> None:
            self.alt_mode = 0
            self.primary = {}
            super().reset()

        def set_mode(self, *modes: int, **kwargs: Any) -> None:
            if kwargs.get("private"):
                for m in modes:
                    if m in _PYTE_ALT_MODES and not self.alt_mode:
                        self._enter_alt(m)
                modes = tuple(m for m in modes if m not in _PYTE_ALT_MODES)
            if modes:
                super().set_mode(*modes, **kwargs)

        def reset_mode(self, *modes: int, **kwargs: Any) -> None:
            if kwargs.get("private"):
                for m in modes:
                    if m in _PYTE_ALT_MODES and self.alt_mode:
                        self._exit_alt(m)
                modes = tuple(m for m in modes if m not in _PYTE_ALT_MODES)
            if modes:
                super().reset_mode(*modes, **kwargs)

        def _enter_alt(self, mode: int) -> None:
            if mode == 1049:
                self.save_cursor()
            self.primary_cursor = (self.cursor.y, self.cursor.x)
            self.primary = {y: dict(line) for y, line in self.buffer.items()}
            self.buffer.clear()
            self.alt_mode = mode
            self.dirty.update(range(self.lines))

        def _exit_alt(self, mode: int) -> None:
            self.buffer.clear()
            for y, line in self.primary.items():
                if y < self.lines:
                    self.buffer[y].update((x, c) for x, c in line.items() if x < self.columns)
            self.primary = {}
            self.alt_mode = 0
            if mode == 1049:
                hidden = self.cursor.hidden  # DECTCEM is not part of the saved cursor
                self.restore_cursor()
                self.cursor.hidden = hidden
            self.dirty.update(range(self.lines))

    return AltScreen


class _PyteTerminal(Terminal):
    backend = "pyte"

    def __init__(self, rows: int, cols: int, scrollback: int) -> None:
        import pyte

        super().__init__(rows, cols)
        self._screen = _pyte_screen_class()(cols, rows)
        self._stream = pyte.Stream(self._screen)
        self._mo = pyte.modes

    def _feed_text(self, text: str) -> None:
        self._stream.feed(text)

    def _resize(self, rows: int, cols: int) -> None:
        self._screen.resize(rows, cols)

    def _full_scroll_region(self) -> bool:
        return self._screen.margins is None

    def _lines(self, buffer: dict[int, Any]) -> list[list[Any]]:
        """Rows of pyte Chars, wide-char stubs as None (read-only: never grows the buffer)."""
        s = self._screen
        blank = s.default_char
        rows = []
        for y in range(s.lines):
            line = buffer.get(y, {})
            row: list[Any] = []
            x = 0
            while x < s.columns:
                ch = line.get(x, blank)
                if ch.data == "":  # a stub whose wide character was overwritten
                    ch = ch._replace(data=" ")
                row.append(ch)
                if _wide(ch.data) and x + 1 < s.columns:
                    row.append(None)
                    x += 1
                x += 1
            rows.append(row)
        return rows

    def _render(self, buffer: dict[int, Any]) -> list[str]:
        out = []
        blank = self._screen.default_char
        for y, row in enumerate(self._lines(buffer)):
            while row and row[-1] == blank:  # a fresh terminal's rows are blank already
                row.pop()
            out.append(f"\x1b[{y + 1};1H\x1b[0m")
            pen = _sgr(blank)
            for ch in row:
                if ch is None:
                    continue
                sgr = _sgr(ch)
                if sgr != pen:
                    out.append(f"\x1b[0{sgr}m")
                    pen = sgr
                out.append(ch.data)
        out.append("\x1b[0m")
        return out

    def _dump(self) -> str:
        s = self._screen
        mo = self._mo
        out: list[str] = []
        if s.alt_mode:
            out += self._render(s.primary)
            row, col = s.primary_cursor
            out.append(f"\x1b[{row + 1};{min(col, s.columns - 1) + 1}H\x1b[?{s.alt_mode}h")
        out += self._render(s.buffer)
        if s.margins is not None:
            out.append(f"\x1b[{s.margins.top + 1};{s.margins.bottom + 1}r")
        y, x = s.cursor.y, s.cursor.x
        if x >= s.columns:  # pending wrap: rewrite the last cell so the next char wraps
            last = self._lines(s.buffer)[y][s.columns - 1] or s.default_char
            out.append(f"\x1b[{y + 1};{s.columns}H\x1b[0{_sgr(last)}m{last.data}")
        else:
            out.append(f"\x1b[{y + 1};{x + 1}H")
        out.append(f"\x1b[0{_sgr(s.cursor.attrs)}m")
        if mo.IRM in s.mode:
            out.append("\x1b[4h")
        if mo.DECAWM not in s.mode:
            out.append("\x1b[?7l")
        if s.cursor.hidden:
            out.append("\x1b[?25l")
        return "".join(out)

    def text(self) -> str:
        return "\n".join(
            "".join(ch.data for ch in row if ch is not None).rstrip()
            for row in self._lines(self._screen.buffer)
        )

    @property
    def cursor(self) -> Cursor:
        c = self._screen.cursor
        return Cursor(c.y, c.x, not c.hidden)

    @property
    def alt_screen(self) -> bool:
        return bool(self._screen.alt_mode)

    @property
    def app_cursor(self) -> bool:
        return 1 << 5 in self._screen.mode  # DECCKM (?1): pyte keeps private modes << 5

    def cells(self) -> list[list[tuple[Any, ...]]]:
        out = []
        for row in self._lines(self._screen.buffer):
            cells = []
            for ch in row:
                if ch is None:
                    cells.append((" ", None, None) + (False,) * 7)
                    continue
                cells.append(
                    (
                        ch.data,
                        _pyte_colour(ch.fg),
                        _pyte_colour(ch.bg),
                        ch.bold,
                        ch.italics,
                        ch.underscore,
                        ch.blink,
                        ch.reverse,
                        ch.strikethrough,
                        False,
                    )
                )
            out.append(cells)
        return out


def _wide(ch: str) -> bool:
    from wcwidth import wcwidth  # pyte's own width function (a pyte dependency)

    return bool(ch) and wcwidth(ch[0]) == 2


def _pyte_colour(colour: str) -> str | None:
    if colour == "default":
        return None
    if colour in _PYTE_NAMES:
        return f"i{_PYTE_NAMES[colour]}"
    return f"#{colour.lower()}"


def _sgr(ch: Any) -> str:
    """SGR parameters (each prefixed with ';') for a pyte Char's pen."""
    parts = []
    for flag, code in (
        (ch.bold, "1"),
        (ch.italics, "3"),
        (ch.underscore, "4"),
        (ch.blink, "5"),
        (ch.reverse, "7"),
        (ch.strikethrough, "9"),
    ):
        if flag:
            parts.append(code)
    for colour, base in ((ch.fg, 30), (ch.bg, 40)):
        if colour == "default":
            continue
        index = _PYTE_NAMES.get(colour)
        if index is None:
            r, g, b = (int(colour[i : i + 2], 16) for i in (0, 2, 4))
            parts.append(f"{base + 8};2;{r};{g};{b}")
        elif index < 8:
            parts.append(str(base + index))
        else:
            parts.append(str(base + 60 + index - 8))
    return "".join(";" + p for p in parts)


def make_terminal(
    rows: int, cols: int, scrollback: int = 1000, backend: str | None = None
) -> Terminal:
    """The one place that picks the terminal emulator.

    Args:
        rows: screen height.
        cols: screen width.
        scrollback: lines kept above the screen (avt only; never part of a snapshot).
        backend: "avt" or "pyte"; default ``$BOTSTER_TERMINAL``, else avt, else pyte when avt
            cannot be imported.

    Returns:
        A Terminal.

    Raises:
        ValueError: an unknown backend name.
    """
    name = backend or os.environ.get("BOTSTER_TERMINAL") or ""
    if name and name not in BACKENDS:
        raise ValueError(f"unknown terminal backend {name!r} (known: {', '.join(BACKENDS)})")
    if name == "pyte":
        return _PyteTerminal(rows, cols, scrollback)
    try:
        return _AvtTerminal(rows, cols, scrollback)
    except ImportError:
        if name == "avt":
            raise
        return _PyteTerminal(rows, cols, scrollback)
