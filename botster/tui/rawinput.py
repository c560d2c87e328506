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

Pure splitting (``InputRouter``) is separate from reading the terminal, so it is testable
byte by byte.

The driver also takes two hops out of the way of a key and its echo: it reads the terminal
on the app's loop instead of in Textual's input thread (which handed every read to the loop
with ``call_soon_threadsafe``), and writes each frame in one piece, from the loop itself
while Textual's writer thread has nothing queued (``_Writer``), instead of queueing its
pieces for that thread. Where either cannot work (a terminal the loop cannot poll, output
that is not a terminal) Textual's threads do it as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import selectors
import threading
from codecs import getincrementaldecoder
from collections.abc import Callable
from typing import IO

from textual import constants
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers._writer_thread import WriterThread
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
TICK_MARGIN_S = 0.005  # a timer may fire this early
# BOTSTER_TUI_FAST_PAINT=0 leaves output to Textual's writer thread (for comparison).
DIRECT_OUTPUT = os.environ.get("BOTSTER_TUI_FAST_PAINT", "1") != "0"
LOOP_INPUT = True  # False: Textual's input thread reads the terminal (tests compare both)

log = logging.getLogger("tui")


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

    Two changes for latency, each falling back to Textual's own way where it cannot work:
    the terminal is read on the app's loop (``loop.add_reader``), not by Textual's input
    thread, whose every key then waited for a hop to the loop; and output leaves in one
    write per frame, straight from the loop when nothing is queued (``_Writer``), instead of
    a queue the writer thread is woken for once per piece.
    """

    _writer: _Writer | None = None
    _reading_on_loop = False
    _batch: list[str] | None = None
    _batch_thread = 0
    _flush_timer: asyncio.TimerHandle | None = None
    _tick_timer: asyncio.TimerHandle | None = None

    @property  # type: ignore[override]
    def _writer_thread(self) -> WriterThread | None:
        return self._writer

    @_writer_thread.setter
    def _writer_thread(self, thread: WriterThread | None) -> None:
        # Textual makes a WriterThread in start_application_mode and starts it right away:
        # ours takes its place (the same thread, plus the loop's direct writes).
        if thread is not None and not isinstance(thread, _Writer):
            thread = _Writer(thread._file, direct=DIRECT_OUTPUT)
        self._writer = thread

    def start_application_mode(self) -> None:
        # Legacy key encoding, as a program inside tmux gets it (the kitty protocol would
        # make the terminal send CSI u for Esc, alt+b ...).
        constants.DISABLE_KITTY_KEY = True  # type: ignore[misc]
        self.router = InputRouter(self._app.raw_prefix())  # type: ignore[attr-defined]
        self._parser = XTermParser(self._debug)
        self._decode = getincrementaldecoder("utf-8")(errors="replace").decode
        # Decided before Textual starts its input thread, which then has nothing to do.
        self._reading_on_loop = self._read_on_loop()
        super().start_application_mode()

    def release_raw(self) -> None:
        """The prefix's UI key was handled (called on the app's loop)."""
        router = getattr(self, "router", None)
        if router is not None:
            router.release()

    # Output ------------------------------------------------------------------------------

    def write(self, data: str) -> None:
        if self._batch is not None and threading.get_ident() == self._batch_thread:
            self._batch.append(data)
            return
        super().write(data)

    def begin_frame(self) -> bool:
        """Until ``end_frame``, what the loop writes leaves as one write, at once if it can.

        Returns False (and nothing changes) when a frame is begun already or there is no
        writer; only a True needs its ``end_frame``.
        """
        if self._batch is not None or self._writer is None:
            return False
        self._batch, self._batch_thread = [], threading.get_ident()
        return True

    def end_frame(self) -> None:
        """Writes what the loop wrote since ``begin_frame``."""
        batch, self._batch = self._batch, None
        if batch and self._writer is not None:
            text = "".join(batch)
            if not self._writer.write_now(text):
                self._writer.write(text)

    # Input on the loop -------------------------------------------------------------------

    def _read_on_loop(self) -> bool:
        if not LOOP_INPUT:
            return False
        try:
            self._loop.add_reader(self.fileno, self._readable)
        except (OSError, ValueError, NotImplementedError):
            return False  # not pollable (a regular file): Textual's thread reads it
        return True

    def _stop_reading(self) -> None:
        if not self._reading_on_loop:
            return
        self._reading_on_loop = False
        for timer in (self._flush_timer, self._tick_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._tick_timer = None
        try:
            in_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._loop.remove_reader(self.fileno)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.remove_reader, self.fileno)

    def disable_input(self) -> None:
        self._stop_reading()
        super().disable_input()

    def _readable(self) -> None:
        try:
            data = os.read(self.fileno, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the terminal is gone: as Textual's thread, stop reading
            self._stop_reading()
            return
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        router = self.router
        self._deliver(router.feed(data, _safe(self._app.raw_keys)))  # type: ignore[attr-defined]
        if router.pending:
            self._flush_timer = self._loop.call_later(PENDING_FLUSH_S, self._flush_pending)

    def _flush_pending(self) -> None:
        self._flush_timer = None
        self._deliver(self.router.flush(_safe(self._app.raw_keys)))  # type: ignore[attr-defined]

    def _deliver(self, items: list[tuple[str, bytes]]) -> None:
        """Hands each part to its reader, in order; one that fails does not stop the rest."""
        app = self._app
        for kind, data in items:
            try:
                if kind == PANE:
                    app.raw_input(data)  # type: ignore[attr-defined]
                elif kind == PASTE:
                    app.raw_paste(data)  # type: ignore[attr-defined]
                else:
                    for event in self._parser.feed(self._decode(data)):
                        self.process_message(event)
                    self._schedule_tick()
            except Exception:
                log.exception("handling %s input failed", kind)

    def _schedule_tick(self) -> None:
        # A lone Esc (in a dialog) becomes the escape key once Textual's parser has waited
        # ESCAPE_DELAY for more; the thread ticked it every read and every 0.1 s.
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        due = getattr(self._parser, "_timeout_time", 0.0)
        if due is None:
            return
        delay = constants.ESCAPE_DELAY if not due else max(0.0, due - get_time())
        self._tick_timer = self._loop.call_later(delay + TICK_MARGIN_S, self._tick)

    def _tick(self) -> None:
        self._tick_timer = None
        try:
            for event in self._parser.tick():
                self.process_message(event)
        except Exception:
            log.exception("handling input failed")
        if getattr(self._parser, "_timeout_time", None) is not None:
            self._schedule_tick()  # woken a little early: not yet due

    # Input on Textual's thread (when the loop cannot poll the terminal) ------------------

    def run_input_thread(self) -> None:
        if self._reading_on_loop:
            return  # the loop reads the terminal
        app = self._app
        raw_keys: Callable[[], bool] = app.raw_keys  # type: ignore[attr-defined]
        parser = self._parser
        decode = self._decode
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


class _Writer(WriterThread):
    """Textual's writer thread, which also lets the loop write at once while it is idle.

    Textual queues every write for this thread: output waits for a thread switch. The
    loop's ``write_now`` writes to the terminal itself instead, through a non-blocking
    descriptor of its own, but only when nothing is queued or being written, so output
    keeps its order; whatever the terminal does not take at once is queued, and then
    everything queues behind it until the thread has written it.

    Args:
        file: the terminal (Textual writes to stderr).
        direct: whether the loop may write itself (False: Textual's queue only).
    """

    def __init__(self, file: IO[str], direct: bool = True) -> None:
        super().__init__(file)
        self._lock = threading.Lock()
        self._unwritten = 0  # queued writes not yet flushed to the terminal
        self._fd = _nonblocking_twin(file) if direct else None
        self._encoding = getattr(file, "encoding", None) or "utf-8"
        self._errors = getattr(file, "errors", None) or "strict"

    def write(self, text: str | bytes) -> None:  # type: ignore[override]
        with self._lock:
            self._unwritten += 1
        self._queue.put(text)  # type: ignore[arg-type]

    def write_now(self, text: str) -> bool:
        """Writes at once if nothing is queued; False: not written (queue it)."""
        with self._lock:
            if self._fd is None or self._unwritten:
                return False
            data = text.encode(self._encoding, self._errors)
            try:
                n = os.write(self._fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                return False
            if n < len(data):
                self._unwritten += 1
                self._queue.put(data[n:])  # type: ignore[arg-type]
        return True

    def run(self) -> None:
        file = self._file
        get, qsize = self._queue.get, self._queue.qsize
        done = 0
        while True:
            item = get()
            if item is None:
                break
            if isinstance(item, bytes):  # what a direct write left over
                file.flush()
                _write_all(file.fileno(), item)
            else:
                file.write(item)
            done += 1
            if qsize() == 0:
                file.flush()
                with self._lock:
                    self._unwritten -= done
                done = 0
        file.flush()

    def stop(self) -> None:
        super().stop()
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _nonblocking_twin(file: IO[str]) -> int | None:
    """The terminal `file` writes to, opened again non-blocking (a description of its own:
    the writer thread's stays blocking). None when it is not a terminal."""
    try:
        fd = file.fileno()
        if not os.isatty(fd):
            return None
        return os.open(os.ttyname(fd), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError, AttributeError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _safe(check: Callable[[], bool]) -> bool:
    # Read from the input thread while the app's loop changes screens: any doubt is "no".
    try:
        return bool(check())
    except Exception:
        return False
