"""Raw keyboard input for the terminal pane: the bytes the user's terminal sent, untouched.

Textual decodes keys from the terminal's byte stream and guesses where an escape sequence
ends by timing: ``Esc`` followed quickly by ``:`` becomes the key ``colon``, ``Esc v`` becomes
``circumflex_accent``, and re-encoding its key names can never give back every byte (alt+b
came out as ``ctrl+left``). A terminal multiplexer does not decode at all: it passes the
bytes on. So while the terminal pane has the keyboard, ``InputRouter`` splits what the
terminal sends into what is the program's (every key, byte for byte) and what is the UI's
(mouse reports, focus events, replies to the UI's queries, pastes), and only the UI's part
goes through Textual's parser. ``RawInputDriver`` is Textual's Linux driver with that router
in front of the parser; it also leaves the kitty keyboard protocol off, so the terminal
sends keys in the legacy encoding every program understands, as it does inside tmux.

The prefix key leaves raw mode: the router gives it, and everything after it, to Textual
until the app says the UI key was handled (``release``), so keys typed into a dialog that
the UI key opened land in the dialog.

Pure splitting (``InputRouter``) is separate from the thread that reads the terminal, so it
is testable byte by byte.
"""

from __future__ import annotations

import os
import re
import selectors
from codecs import getincrementaldecoder
from collections.abc import Callable

from textual import constants
from textual.drivers.linux_driver import LinuxDriver

__all__ = ["InputRouter", "RawInputDriver", "PANE", "PASTE", "UI"]

PANE, PASTE, UI = "pane", "paste", "ui"
ESC = 0x1B
# Finished CSI sequences that are not keys: mouse reports (SGR ``<``, urxvt ``...M``),
# focus in/out, replies to queries (``?``/``>`` private replies, in-band resize ``t``).
_CSI_UI = re.compile(rb"\x1b\[(?:<[\d;]*[Mm]|[\d;]+M|[IO]|[?>][\x20-\x3f]*[\x40-\x7e]|[\d;]*t)")
_PASTE_START, _PASTE_END = b"\x1b[200~", b"\x1b[201~"
# OSC, DCS, APC, PM, SOS: strings the terminal sends only as replies.
_STRING_INTRO = frozenset(b"]P_^X")
PENDING_FLUSH_S = 0.05  # an unfinished sequence this old was typed, not sent at once


class InputRouter:
    """Splits the terminal's bytes between the program and the UI.

    Args:
        prefix: the byte sequences of the prefix key(s).
    """

    def __init__(self, prefix: list[bytes]) -> None:
        self.prefix = [p for p in prefix if p]
        self.held = False  # after the prefix: everything is the UI's until `release`
        self.pending = b""  # an escape sequence cut by the read, waiting for its end

    def release(self) -> None:
        """The UI key after the prefix was handled: keys are the program's again."""
        self.held = False

    def feed(self, data: bytes, raw: bool) -> list[tuple[str, bytes]]:
        """Splits one read.

        Args:
            data: the bytes read from the terminal.
            raw: the terminal pane has the keyboard (no dialog, not the list).

        Returns:
            ``(PANE, bytes)`` for the program, ``(PASTE, text)`` for a paste to it, ``(UI,
            bytes)`` for Textual, in order.
        """
        buf, self.pending = self.pending + data, b""
        out: list[tuple[str, bytes]] = []
        if not raw or self.held:
            return _add(out, UI, buf)
        i, n = 0, len(buf)
        while i < n:
            if self.held:
                return _add(out, UI, buf[i:])
            if buf[i] != ESC:
                j = buf.find(b"\x1b", i)
                j = n if j < 0 else j
                i = self._text(buf[i:j], out) + i
                continue
            end = _sequence_end(buf, i)
            if end is None:  # cut by the read: wait for the rest (or `flush`)
                self.pending = buf[i:]
                return out
            token = buf[i:end]
            if token.startswith(_PASTE_START):
                _add(out, PASTE, token[len(_PASTE_START) : -len(_PASTE_END)])
            elif token in self.prefix:
                self.held = True
                _add(out, UI, token)
            elif _CSI_UI.fullmatch(token) or (len(token) > 2 and token[1] in _STRING_INTRO):
                _add(out, UI, token)
            else:
                _add(out, PANE, token)
            i = end
        return out

    def _text(self, run: bytes, out: list[tuple[str, bytes]]) -> int:
        """Plain bytes (no ESC): the program's, up to a prefix key. Returns bytes used."""
        hits = [(run.find(p), p) for p in self.prefix if not p.startswith(b"\x1b")]
        hits = [(at, p) for at, p in hits if at >= 0]
        if not hits:
            _add(out, PANE, run)
            return len(run)
        at, p = min(hits)
        _add(out, PANE, run[:at])
        self.held = True
        _add(out, UI, p)
        return at + len(p)

    def flush(self, raw: bool) -> list[tuple[str, bytes]]:
        """An unfinished sequence that stayed unfinished: it was typed (alt+[, alt+O)."""
        buf, self.pending = self.pending, b""
        if not buf:
            return []
        return [(PANE if raw and not self.held else UI, buf)]


def _add(out: list[tuple[str, bytes]], kind: str, data: bytes) -> list[tuple[str, bytes]]:
    if data or kind == PASTE:
        if out and out[-1][0] == kind and kind != PASTE:
            out[-1] = (kind, out[-1][1] + data)
        else:
            out.append((kind, data))
    return out


def _sequence_end(buf: bytes, i: int) -> int | None:
    """Where the escape sequence at `i` ends, or None when the read cut it."""
    n = len(buf)
    if i + 1 >= n:
        return n  # a lone Esc: the key itself, sent at once as tmux would after escape-time
    nxt = buf[i + 1]
    if nxt == 0x5B:  # CSI
        if buf.startswith(_PASTE_START, i):
            end = buf.find(_PASTE_END, i)
            return None if end < 0 else end + len(_PASTE_END)
        j = i + 2
        while j < n and 0x20 <= buf[j] <= 0x3F:
            j += 1
        if j >= n:
            return None
        if not 0x40 <= buf[j] <= 0x7E:
            return j  # not a sequence after all: Esc [ was alt+[
        if buf[j] == 0x4D and j == i + 2:  # X10 mouse: CSI M and three bytes
            return j + 4 if j + 4 <= n else None
        return j + 1
    if nxt == 0x4F:  # SS3: one more byte
        return i + 3 if i + 2 < n else None
    if nxt in _STRING_INTRO:
        for term in (b"\x07", b"\x1b\\"):
            end = buf.find(term, i + 2)
            if end >= 0:
                return end + len(term)
        return i + 2  # no terminator: alt+] (or alt+P ...) typed
    if nxt == ESC:
        return i + 1
    # Esc and one character (alt+key); a UTF-8 character keeps its continuation bytes.
    j = i + 2
    while j < n and 0x80 <= buf[j] <= 0xBF:
        j += 1
    return j


class RawInputDriver(LinuxDriver):
    """Textual's Linux driver, with the terminal pane's keys passed on as raw bytes.

    The app provides ``raw_keys() -> bool`` (the pane has the keyboard), ``raw_input(data)``
    and ``raw_paste(text)`` (run on the app's loop), and ``raw_prefix() -> list[bytes]``.
    """

    def start_application_mode(self) -> None:
        # Legacy key encoding, as a program inside tmux gets it (the kitty protocol would
        # make the terminal send CSI u for Esc, alt+b ...).
        constants.DISABLE_KITTY_KEY = True  # type: ignore[misc]
        self.router = InputRouter(self._app.raw_prefix())  # type: ignore[attr-defined]
        super().start_application_mode()

    def release_raw(self) -> None:
        """The prefix's UI key was handled (called on the app's loop)."""
        router = getattr(self, "router", None)
        if router is not None:
            router.release()

    def run_input_thread(self) -> None:
        from textual._xterm_parser import XTermParser

        app = self._app
        raw_keys: Callable[[], bool] = app.raw_keys  # type: ignore[attr-defined]
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")(errors="replace").decode
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        router: InputRouter = self.router
        call = self._loop.call_soon_threadsafe

        def deliver(items: list[tuple[str, bytes]]) -> None:
            for kind, data in items:
                if kind == PANE:
                    call(app.raw_input, data)  # type: ignore[attr-defined]
                elif kind == PASTE:
                    call(app.raw_paste, data)  # type: ignore[attr-defined]
                else:
                    for event in parser.feed(decode(data)):
                        self.process_message(event)

        try:
            while not self.exit_event.is_set():
                timeout = PENDING_FLUSH_S if router.pending else 0.1
                ready = selector.select(timeout)
                if ready:
                    data = os.read(self.fileno, 4096)
                    if not data:
                        break
                    deliver(router.feed(data, _safe(raw_keys)))
                elif router.pending:
                    deliver(router.flush(_safe(raw_keys)))
                for event in parser.tick():
                    self.process_message(event)
        finally:
            selector.close()


def _safe(check: Callable[[], bool]) -> bool:
    # Read from the input thread while the app's loop changes screens: any doubt is "no".
    try:
        return bool(check())
    except Exception:
        return False
