"""Keystroke-to-echo latency through the real UI, a real hub and a session, and on a bare PTY.

Shared by ``tui_echo`` and ``tui_flood_input``:

    run = UiRun(sandbox, program=["cat"])     # one agent running `program`, the app on it
    async with run:                           # hub, agent, BotsterApp.run_test() attached
        ms = await run.keystroke("a", b"a")   # (to the model, to the painted pane) in ms
    bare = BarePty(["cat"]); bare.keystroke(b"a", b"a"); bare.close()

The UI is ``BotsterApp`` in this process (``run_test``, Textual's headless driver) on the
socket of a real ``botster hub`` child process; the agent is created with ``create_agent``, so
the session is the product's own (its PTY, its session process, the hub's routing). A key is
given to the app the way its driver gives it a key read from the terminal
(``driver.send_message(events.Key)``: the app, the focused ``TerminalView``, ``HubLink`` and
the socket). ``pilot.press`` is not used: it waits for the app to go idle (at least 2 x 20 ms),
longer than what is measured.

Nothing polls. Hooks on the app's ``TerminalView`` instance (the product's code is not
changed) stamp the moments: its ``feed`` (the terminal model has just been fed output that
contains the expected echo bytes) or ``load_snapshot`` (a resync brought a screen that shows
the echo), and its ``_render_lines`` (the pane's lines are rendered again, i.e. a frame of
the pane is produced; the first one after the model has the echo is when the UI shows it).
The pane draws output at once when it can, inside ``feed``: then the model's time is the
paint's (it was fed just before, in the same call). The headless driver computes every
frame (the compositor renders the dirty widgets) but does not write it to a real terminal,
so the cost of the terminal emulator the user runs is not included.

The baseline, ``BarePty``: ``os.openpty``, the same program on the slave, one byte written to
the master and the master read (``select`` + ``os.read``) until the expected echo bytes come.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events

from bench._common import fmt_ms, median, p99
from bench._hub import HubRun, Sandbox
from botster.tui.app import BotsterApp
from botster.tui.terminal import TerminalView

__all__ = ["FLOODER", "BarePty", "UiRun", "flooder_argv", "latency_line", "letter"]

APP_SIZE = (120, 36)  # the pane is 84 x 32 inside (sidebar, borders, header, footer)

# A full-screen program that redraws rows 2-15 as fast as its PTY takes them, and echoes
# each key itself on row 1 (raw mode, no kernel echo): key k lands at column k % 60 + 1 as
# ESC [ 1 ; <col> H <key>. One writer at a time (a lock), so sequences never interleave. Like
# an agent's TUI that keeps drawing while its input line echoes what is typed.
FLOODER = r"""
import os, sys, threading, tty
tty.setraw(0)
lock = threading.Lock()
FILL = b"flood " * 10

def write(data):
    with lock:
        while data:
            data = data[os.write(1, data):]

def flood():
    n = 0
    while True:
        write(b"".join(b"\x1b[%d;1H%08d %s\x1b[K" % (r, n + r, FILL) for r in range(2, 16)))
        n += 14

threading.Thread(target=flood, daemon=True).start()
k = 0
while True:
    for b in os.read(0, 64):
        write(b"\x1b[1;%dH%c" % (k % 60 + 1, b))
        k += 1
"""


def latency_line(label: str, values: list[float]) -> str:
    """One row of key-to-echo latencies (ms) for the report."""
    return (
        f"  {label}: p50 {fmt_ms(median(values))}, p99 {fmt_ms(p99(values))}, "
        f"max {fmt_ms(max(values))} ({len(values)} keys)"
    )


def letter(k: int) -> str:
    """The k-th key typed: a-z in turn (a column never gets the same letter twice running)."""
    return chr(ord("a") + k % 26)


def _set_size(fd: int, rows: int = 24, cols: int = 80) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class BarePty:
    """The baseline: `argv` on the slave of an ``os.openpty``; keys written to the master."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        _set_size(slave)
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        self.bytes = 0

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while select.select([self.master], [], [], 0)[0]:
                self.bytes += len(os.read(self.master, 1 << 16))

    def keystroke(self, key: bytes, echo: bytes, within: float = 5.0) -> float:
        """Writes `key`, reads until `echo` is seen; the ms in between."""
        self.drain()
        tail = b""
        t0 = time.perf_counter()
        os.write(self.master, key)
        while True:
            ready = select.select([self.master], [], [], within)[0]
            if not ready:
                raise RuntimeError(f"no echo of {key!r} from the bare PTY within {within} s")
            try:
                data = os.read(self.master, 1 << 16)
            except BlockingIOError:
                continue
            self.bytes += len(data)
            if echo in tail + data:
                return (time.perf_counter() - t0) * 1000
            tail = (tail + data)[-len(echo) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        os.close(self.master)


class _Probe:
    """Hooks on the app's TerminalView instance: when the model got the echo, when it shows."""

    def __init__(self, view: TerminalView) -> None:
        self.view = view
        self.fed_bytes = 0
        self.feeds = 0
        self.paints: list[float] = []  # perf_counter of every frame of the pane
        self.pattern: re.Pattern[bytes] | None = None
        self.on_screen: Callable[[TerminalView], bool] | None = None
        self.snapshots = 0  # SNAPSHOT frames after the first: a resync, or a new attach
        self.tail = b""
        self.model_at = 0.0
        self.paint_at = 0.0
        self.painted = asyncio.Event()
        self._await_paint = False
        feed, render, snapshot = view.feed, view._render_lines, view.load_snapshot

        def hooked_feed(data: bytes) -> None:
            hit = False
            if self.pattern is not None:
                seen = self.tail + data
                hit = bool(self.pattern.search(seen))
                self.tail = seen[-16:]
            if hit:
                # The pane may draw the echo inside feed (output drawn at once): the paint
                # hook must be armed before it.
                self.pattern = None
                self._await_paint = True
            feed(data)
            self.fed_bytes += len(data)
            self.feeds += 1
            if hit:
                # Fed; if it was drawn inside feed, the model had it no later than that.
                self.model_at = self.paint_at if self.painted.is_set() else time.perf_counter()

        def hooked_snapshot(*args: Any) -> None:
            snapshot(*args)
            self.snapshots += 1
            # A hub resyncing a client that fell behind sends the screen, not the bytes: the
            # echo may arrive drawn in it.
            if self.pattern is not None and self.on_screen is not None and self.on_screen(view):
                self._seen()

        def hooked_render() -> Any:
            lines = render()
            now = time.perf_counter()
            self.paints.append(now)
            if self._await_paint:
                self._await_paint = False
                self.paint_at = now
                self.painted.set()
            return lines

        view.feed = hooked_feed  # type: ignore[method-assign]
        view._render_lines = hooked_render  # type: ignore[method-assign]
        view.load_snapshot = hooked_snapshot  # type: ignore[method-assign]

    def _seen(self) -> None:
        self.model_at = time.perf_counter()
        self.pattern = None
        self._await_paint = True

    def expect(
        self,
        pattern: re.Pattern[bytes] | None,
        on_screen: Callable[[TerminalView], bool] | None = None,
    ) -> None:
        self.pattern, self.tail, self.on_screen = pattern, b"", on_screen
        self._await_paint = False
        self.painted.clear()


class UiRun:
    """A hub, one agent running `program`, and ``BotsterApp`` attached to it (in this process).

    Args:
        sandbox: where the hub runs; an agent definition ``bench`` is committed to its repo.
        program: the agent's program (its ``initialization`` execs it).
    """

    def __init__(self, sandbox: Sandbox, program: list[str]) -> None:
        self.sandbox = sandbox
        self.program = program
        self.hub = HubRun(sandbox)
        self.app: BotsterApp | None = None
        self.probe: _Probe | None = None
        self.session_pid = 0
        self.child_pid = 0
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> UiRun:
        self.sandbox.define_agent(self.program)
        await self.hub.start()
        self._stack.push_async_callback(self.hub.stop)
        await self.hub.wait_for(r"hub ready:")
        conn = await self.hub.connect()
        self._stack.push_async_callback(conn.close)
        await conn.request("create_agent", {"agent": "bench", "branch": "bench"})
        app = BotsterApp(self.sandbox.hub_socket())
        pilot = await self._stack.enter_async_context(app.run_test(size=APP_SIZE))
        self.app = app
        deadline = time.monotonic() + 30
        while not (
            app.link.attached
            and app.terminal.term is not None
            and app.terminal.session_id == app.link.attached
            and (app.terminal.term.rows, app.terminal.term.cols)
            == (app.terminal.size.height, app.terminal.size.width)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the UI never attached to the agent; hub log:\n{self.hub.log}")
            await pilot.pause(0.02)  # setup only, not measured
        await pilot.pause(0.2)  # the first frames and the resize settle
        records = self.sandbox.session_records()
        if records:
            self.session_pid = int(records[0]["pid"])
            self.child_pid = int(records[0].get("child_pid", 0))
        self.probe = _Probe(app.terminal)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def keystroke(
        self,
        key: str,
        echo: bytes | re.Pattern[bytes],
        within: float = 5.0,
        on_screen: Callable[[TerminalView], bool] | None = None,
    ) -> tuple[float, float] | None:
        """Gives the app `key` as its driver would; returns ms until the terminal model was fed
        `echo` (bytes, or a pattern of them), or got a snapshot for which `on_screen(view)` is
        true, and until the pane is rendered with it; None when no echo came within `within` s
        (the key was lost)."""
        app, probe = self.app, self.probe
        assert app is not None and probe is not None and app._driver is not None
        probe.expect(
            echo if isinstance(echo, re.Pattern) else re.compile(re.escape(echo)), on_screen
        )
        event = events.Key(key, key)
        event.set_sender(app)
        t0 = time.perf_counter()
        app._driver.send_message(event)
        try:
            await asyncio.wait_for(probe.painted.wait(), within)
        except TimeoutError:
            probe.expect(None)
            return None
        return (probe.model_at - t0) * 1000, (probe.paint_at - t0) * 1000


def flooder_argv(root: Path) -> list[str]:
    """The FLOODER script, written under `root`, run by this interpreter."""
    path = root / "flooder.py"
    path.write_text(FLOODER)
    return [sys.executable, str(path)]
