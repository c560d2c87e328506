"""Session processes: real PTYs, real children, real sockets, nothing mocked.

    runtime (a short private dir) -> sessions (factory: spawn_session + teardown checks)

Every wait has a deadline and a predicate (output seen, an event, a process gone); the
teardown closes what a test left running, kills what would not close, and fails the test if any
session process or child survived.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from botster.base.errors import SessionError
from botster.base.framing import (
    JSON,
    PROCESS_EXITED,
    PTY_OUTPUT,
    SNAPSHOT,
    encode_frame,
    encode_json,
    split_session,
)
from botster.base.pids import pid_alive
from botster.sessions.client import (
    Output,
    SessionClient,
    SessionEvent,
    discover_sessions,
    discover_sessions_blocking,
    spawn_session,
)
from botster.sessions.files import read_info
from botster.sessions.process import PROGRAM_NICE, SESSION_NICE
from botster.sessions.protocol import (
    OUTPUT,
    FrameDecoder,
    decode_output,
    encode_input,
    encode_message,
)
from botster.sessions.pty_input import take_pty_fd
from botster.sessions.ring import OutputRing
from botster.sessions.terminal import (
    BACKENDS,
    FEED_CHUNK,
    EscapeScanner,
    _quiet_prefix,
    make_terminal,
)
from harness.sockets import first_frame, raw_connection
from harness.wait import wait_until

PY = sys.executable


# -- helpers ------------------------------------------------------------------------------------


async def pid_gone_within(pid: int, timeout: float) -> bool:
    """Whether a process (any parent's) ends within ``timeout``, seen through a pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def wait_pid_gone(pid: int, timeout: float = 10.0) -> None:
    assert await pid_gone_within(pid, timeout), f"process {pid} still runs after {timeout} s"


class Recorder:
    """Collects a client's output and events; ``wait`` blocks on a predicate with a deadline."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.events: list[SessionEvent] = []
        self.offsets: list[int] = []
        self._changed = asyncio.Event()

    def on_output(self, item: Output) -> None:
        self.offsets.append(item.offset)
        self.output += item.data
        self._changed.set()

    def on_event(self, item: SessionEvent) -> None:
        self.events.append(item)
        self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == kind]

    async def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(remaining, 0))
            except TimeoutError:
                pytest.fail(
                    f"timed out waiting for {what}\noutput: {bytes(self.output[-3000:])!r}\n"
                    f"events: {[e.data for e in self.events]}"
                )

    async def wait_output(self, needle: bytes, timeout: float = 10.0) -> None:
        await self.wait(lambda: needle in self.output, f"output {needle!r}", timeout)

    async def wait_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        await self.wait(lambda: self.of(kind), f"a {kind} event", timeout)
        return self.of(kind)[0]


async def attach(sock: Path, seen_offset: int = 0, seen_event: int = 0) -> tuple[Any, Recorder]:
    rec = Recorder()
    client = await SessionClient.connect(
        sock, seen_offset, seen_event, on_output=rec.on_output, on_event=rec.on_event
    )
    return client, rec


def python_child(source: str) -> tuple[str, list[str]]:
    return PY, ["-c", textwrap.dedent(source)]


def session_processes(runtime: Path) -> list[int]:
    """Live (non-zombie) processes whose command line names this test's runtime dir."""
    found = []
    marker = str(runtime).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"botster.sessions" in cmdline and marker in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def runtime() -> Iterator[Path]:
    # Short: a Unix socket path must stay under 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="bts-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def sessions(runtime: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``sid, sock, info = await sessions(cmd, args, **config)``."""
    started: list[tuple[Path, int, int]] = []

    async def spawn(
        cmd: str, args: list[str] | None = None, **config: Any
    ) -> tuple[str, Path, Any]:
        sid, sock = await spawn_session({"cmd": cmd, "args": args or [], **config}, runtime)
        info = read_info(sock.with_suffix(".json"))
        assert info is not None and info.id == sid and info.socket == sock
        started.append((sock, info.pid, info.child_pid))
        return sid, sock, info

    yield spawn

    survivors = []
    for sock, pid, child in started:
        if pid_alive(pid):
            try:
                client = await SessionClient.connect(sock, timeout_s=2)
                await client.close(timeout_s=10)
            except SessionError:
                pass
            if not await pid_gone_within(pid, 5):
                survivors.append(pid)
                os.kill(pid, signal.SIGKILL)
        if pid_alive(child):
            survivors.append(child)
            os.killpg(child, signal.SIGKILL)
    assert not survivors, f"processes outlived their session: {survivors}"
    assert session_processes(runtime) == []


# -- the escape scanner and the terminal model (no processes) ------------------------------------

OSC_STREAM = (
    b"plain \x1b]0;first title\x07text\x1b]2;second \xc3\xa9\x1b\\"
    b"\x1b]7;file://host/tmp/some%20dir\x07"
    b"\x1b]9;hello nine\x07\x1b]9;4;1;50\x07"  # ConEmu progress: ignored
    b"\x1b]777;notify;Build;done; all good\x07"
    b"\x1bP1$r\x07ignored bell in DCS\x1b\\"
    b"\x1b[?2004h\x1b[31mred\x07\x1b]2;second \xc3\xa9\x07end"
)
OSC_EVENTS = [
    {"type": "title", "title": "first title"},
    {"type": "title", "title": "second é"},
    {"type": "cwd", "cwd": "/tmp/some dir"},
    {"type": "notification", "source": "osc9", "title": "", "body": "hello nine"},
    {"type": "notification", "source": "osc777", "title": "Build", "body": "done; all good"},
    {"type": "bell"},
]


def test_scanner_reports_the_same_events_however_the_stream_is_split():
    whole = EscapeScanner().feed(OSC_STREAM)
    assert whole == OSC_EVENTS
    for cut in range(len(OSC_STREAM) + 1):
        scanner = EscapeScanner()
        events = scanner.feed(OSC_STREAM[:cut]) + scanner.feed(OSC_STREAM[cut:])
        assert events == OSC_EVENTS, f"split at {cut}"
        assert scanner.modes == {2004}
    scanner = EscapeScanner()
    assert [e for i in range(len(OSC_STREAM)) for e in scanner.feed(OSC_STREAM[i : i + 1])] == (
        OSC_EVENTS
    )


# Pieces a program's output is made of, the tricky ones included: escapes the ground state
# skips in bulk (CSI, ESC 7, ESC ( B) next to ones it must stop at (ESC c, strings, private
# modes, BEL inside CSI, ESC ESC, ESC BEL), and controls that cut sequences short.
STREAM_PIECES = st.sampled_from(
    [
        b"text ",
        b"\xc3\xa9",
        b"\x07",
        b"\x1b",
        b"\x1b\x1b",
        b"\x1b\x07",
        b"\x18",
        b"\x1a",
        b"\x1b[",
        b"\x1b[12;4H",
        b"\x1b[38;2;1;2;3m",
        b"\x1b[K",
        b"\x1b[1\x072m",
        b"\x1b[>1;2c",
        b"\x1b[?",
        b"\x1b[?2004h",
        b"\x1b[?1000;1006h",
        b"\x1b[?1006l",
        b"\x1b[?25l",
        b"\x1bc",
        b"\x1b7",
        b"\x1b(B",
        b"\x1b\\",
        b"\x1b]",
        b"\x1b]0;t\x07",
        b"\x1b]2;\xc3\xa9\x1b\\",
        b"\x1b]9;note\x07",
        b"\x1b]777;notify;a;b\x07",
        b"\x1b]7;/tmp\x07",
        b"\x1bPq\x07\x1b\\",
        b"\x1b_apc\x1b",
        b";",
        b"h",
        b"\\",
    ]
)


# What coloured output is made of: text and CSI sequences that report nothing. The scanner
# skips a chunk of these up to its last ESC without stepping through them (``_quiet_prefix``).
QUIET_PIECES = st.sampled_from(
    [b"text ", b"ok\r\n", b"\x1b[31m", b"\x1b[0m", b"\x1b[38;5;208m", b"\x1b[12;4H", b"\x1b[K",
     b"\x1b[3J", b"\x1b[>1;2c", b"\xc3\xa9"]
)  # fmt: skip
CUTS = st.lists(st.integers(0, 400), max_size=6)


def assert_scanner_agrees_with_itself_fed_byte_by_byte(stream: bytes, cuts: list[int]) -> None:
    # Fed one byte at a time every escape goes through the state machine; fed in chunks most
    # are skipped by the ground-state regex or the quiet-prefix search. Both must see the
    # same events and modes.
    slow = EscapeScanner()
    want = [e for i in range(len(stream)) for e in slow.feed(stream[i : i + 1])]
    fast = EscapeScanner()
    got, start = [], 0
    for cut in sorted({min(c, len(stream)) for c in cuts}) + [len(stream)]:
        got += fast.feed(stream[start:cut])
        start = cut
    assert got == want
    assert fast.modes == slow.modes


@given(st.lists(STREAM_PIECES, max_size=40), CUTS)
def test_scanner_agrees_with_itself_fed_byte_by_byte(pieces, cuts):
    assert_scanner_agrees_with_itself_fed_byte_by_byte(b"".join(pieces), cuts)


@given(
    st.lists(QUIET_PIECES, max_size=30),
    st.lists(STREAM_PIECES, max_size=2),
    st.lists(QUIET_PIECES, max_size=30),
    CUTS,
)
def test_scanner_skips_coloured_text_and_still_sees_what_follows(before, tricky, after, cuts):
    stream = b"".join(before + tricky + after)
    event(f"quiet prefix skipped: {_quiet_prefix(stream) > 0}")
    assert_scanner_agrees_with_itself_fed_byte_by_byte(stream, cuts)


def test_scanner_drops_an_overlong_osc_and_recovers():
    scanner = EscapeScanner()
    events = scanner.feed(b"\x1b]2;" + b"x" * (70 << 10) + b"\x07\x1b]2;ok\x07")
    assert events == [{"type": "title", "title": "ok"}]


SCREEN = (
    "plain \x1b[1;31mbold red\x1b[0m \x1b[3;4;9mstyled\x1b[m \x1b[7minverse\x1b[m\r\n"
    "\x1b[38;5;200m256\x1b[48;2;10;20;30m truecolor bg\x1b[m \x1b[92;104mbright\x1b[m\r\n"
    "wide: 日本語 😀 é\r\n"
    "\x1b[2;5r"  # a scroll region
    "\x1b[?1049h\x1b[2J\x1b[H\x1b[44;1malt screen\x1b[m\x1b[5;3Hmiddle\x1b[4;7H"
    "\x1b[?25l\x1b[?2004h\x1b[32m"  # hidden cursor, bracketed paste, a green pen
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_snapshot_rebuilds_the_exact_screen(backend):
    rows, cols = 8, 40
    source = make_terminal(rows, cols, backend=backend)
    data = SCREEN.encode()
    for i in range(len(data)):  # byte by byte: every UTF-8 character arrives split
        source.feed(data[i : i + 1])
    assert source.alt_screen and not source.cursor.visible
    replay = make_terminal(rows, cols, backend=backend)
    replay.feed(source.snapshot())
    assert replay.cells() == source.cells()
    assert replay.cursor == source.cursor
    assert replay.alt_screen and replay.modes == source.modes == {2004}
    # The pen, the scroll region and the primary screen behind the alternate one come back too.
    more = b"green\r\n\n\n\nscrolled\x1b[?1049l after"
    source.feed(more)
    replay.feed(more)
    assert replay.cells() == source.cells()
    assert replay.cursor == source.cursor
    assert "wide: 日本語 😀 é" in replay.text()
    assert "\ufffd" not in replay.text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pending_wrap_and_text(backend):
    t = make_terminal(3, 10, backend=backend)
    t.feed(b"0123456789")
    replay = make_terminal(3, 10, backend=backend)
    replay.feed(t.snapshot())
    t.feed(b"AB")
    replay.feed(b"AB")
    assert t.text() == replay.text() == "0123456789\nAB\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_title_and_cwd_follow_the_stream(backend):
    t = make_terminal(5, 20, backend=backend)
    assert t.feed(b"\x1b]0;one\x07\x1b]7;file:///w\x07\x1b]0;one\x07") == [
        {"type": "title", "title": "one"},
        {"type": "cwd", "cwd": "/w"},
    ]
    assert (t.title, t.cwd) == ("one", "/w")
    t.resize(6, 30)
    assert (t.rows, t.cols) == (6, 30)
    assert len(t.cells()) == 6 and len(t.cells()[0]) == 30


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_and_application_cursor_keys(backend):
    term = make_terminal(3, 20, 100, backend=backend)
    term.feed(b"one\r\ntwo\r\nthree\r\nfour\r\nfive")
    assert not term.app_cursor
    term.feed(b"\x1b[?1h")
    assert term.app_cursor
    rows = ["".join(c[0] for c in row).rstrip() for row in term.history()]
    # avt keeps what scrolled off; pyte keeps no scrollback, only the screen.
    assert rows == (["one", "two", "three", "four", "five"] if backend == "avt" else rows[-3:])
    assert rows[-3:] == ["three", "four", "five"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_width_characters_take_no_cell(backend):
    # macOS file names arrive decomposed (e + U+0301); emoji carry variation selectors and
    # joiners. A terminal gives none of them a cell, and neither may the model: what follows
    # stays where the program put it.
    term = make_terminal(2, 20, 0, backend=backend)
    term.feed("e\u0301b|a\u2764\ufe0fb|x\u200dy".encode())
    assert term.text().splitlines()[0] == "\u00e9b|a\u2764b|xy"
    assert (term.cursor.row, term.cursor.col) == (0, 9)
    term.feed(b"\x1b[1;12HX")  # absolute positions still land where asked
    assert term.text().splitlines()[0] == "\u00e9b|a\u2764b|xy  X"


# Pieces that change what plain lines do: margins, origin, insert and newline modes, autowrap,
# the alternate screen, reset, saved cursor, charsets, scrolling, erasing, wide characters.
STATE_PIECES = st.sampled_from(
    [
        b"\x1b[2;3r", b"\x1b[r", b"\x1b[1;2r", b"\x1b[?6h", b"\x1b[?6l", b"\x1b[4h", b"\x1b[4l",
        b"\x1b[20h", b"\x1b[20l", b"\x1b[?7l", b"\x1b[?7h", b"\x1b[?1049h", b"\x1b[?1049l",
        b"\x1b[?47h", b"\x1b[?47l", b"\x1bc", b"\x1b7", b"\x1b8", b"\x1b(0", b"\x1b(B",
        b"\x1b[2S", b"\x1b[T", b"\x1b[2L", b"\x1b[M", b"\x1b[2J", b"\x1b[K", b"\x1b[3J",
        b"\x1b[1;31m", b"\x1b[m", b"\x1b[3;2H", b"\x1b[H", b"\t", b"\x08", b"\x1bM",
        "日本".encode(), b"\xc3", b"\xa9", b"\r", b"\n",
    ]
)  # fmt: skip
PLAIN_LINE = st.tuples(
    st.binary(max_size=14).map(lambda b: bytes(32 + x % 95 for x in b)),
    st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\n\r", b"\r"]),
).map(b"".join)
PLAIN_LINES = st.one_of(
    PLAIN_LINE,
    st.builds(lambda line, count: line * count, PLAIN_LINE, st.integers(20, 80)),
    st.lists(PLAIN_LINE, min_size=20, max_size=80).map(b"".join),
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=400)
@example(size=(3, 3, 0), pieces=[b"\x1b[2;3r", b"\r\n", b" !\n\r" * 20], suffix=[])  # margins
@example(size=(3, 5, 0), pieces=[b"\r\n\r\n", b"     \n" * 20], suffix=[])  # pending wrap
@example(size=(6, 8, 0), pieces=[b"xxxxxxxx\r\n" * 6, b"\x1b[H", b"a\r\n" * 30], suffix=[])  # top
@given(
    size=st.tuples(st.integers(2, 6), st.integers(3, 12), st.integers(0, 8)),
    pieces=st.lists(st.one_of(PLAIN_LINES, STATE_PIECES), max_size=30),
    suffix=st.lists(st.one_of(PLAIN_LINES, STATE_PIECES), max_size=4),
)
def test_a_flood_drawn_at_once_matches_every_byte_drawn(backend, size, pieces, suffix):
    # Drawn in one go, the model skips plain lines that scroll out of sight within the batch;
    # drawn in pieces too short to hold that many line feeds, it draws every byte. The screen,
    # scrollback, cursor, modes and what later output does must be the same.
    rows, cols, scrollback = size
    stream, tail = b"".join(pieces), b"".join(suffix) + b"X\x1b[1;1HY"
    short = 2 * rows + scrollback + 2
    at_once = make_terminal(rows, cols, scrollback, backend=backend)
    every_byte = make_terminal(rows, cols, scrollback, backend=backend)
    at_once.render(stream)
    event(f"lines skipped: {bool(at_once._unseen(stream))}")
    for i in range(0, len(stream), short):
        every_byte.render(stream[i : i + short])
    for term in (at_once, every_byte):
        for i in range(0, len(tail), short):
            term.render(tail[i : i + short])
    assert at_once.history() == every_byte.history()
    assert at_once.snapshot() == every_byte.snapshot()
    assert (at_once.cursor, at_once.alt_screen) == (every_byte.cursor, every_byte.alt_screen)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_drawn_in_steps_lets_the_caller_in_between_and_ends_exact(backend):
    # The session draws a batch a few chunks per turn of its loop and reads the PTY in between
    # (``Session._model_step``): nothing is drawn before the first step, every step draws at
    # most a chunk, and the screen at the end is the one drawing all at once gives.
    coloured = b"".join(
        b"\x1b[3%dmword%d \x1b[0m" % (i % 8, i) + (b"\r\n" if i % 9 == 0 else b"")
        for i in range(3000)
    )
    at_once = make_terminal(24, 80, 100, backend=backend)
    at_once.render(coloured)
    stepped = make_terminal(24, 80, 100, backend=backend)
    steps = stepped.render_steps(coloured)
    assert stepped.text() == make_terminal(24, 80, 100, backend=backend).text()
    drawn = [stepped.text()]
    for _ in steps:
        drawn.append(stepped.text())
    assert len(drawn) > len(coloured) // FEED_CHUNK
    assert len(set(drawn)) > len(drawn) // 2  # the screen moves step by step
    assert (stepped.history(), stepped.snapshot()) == (at_once.history(), at_once.snapshot())


def test_make_terminal_refuses_unknown_backends():
    with pytest.raises(ValueError, match="unknown terminal backend 'vt52'"):
        make_terminal(24, 80, backend="vt52")


def test_ring_keeps_the_last_bytes_by_offset():
    ring = OutputRing(10)
    ring.append(b"abcdef")
    assert (ring.start, ring.end, ring.read(2, 100)) == (0, 6, b"cdef")
    ring.append(b"ghijkl")  # wraps
    assert (ring.start, ring.end) == (2, 12)
    assert ring.read(2, 100) == b"cdefghijkl"
    assert ring.read(9, 2) == b"jk"
    ring.append(b"0123456789ABCDEF")  # longer than the ring
    assert (ring.start, ring.end, ring.read(18, 100)) == (18, 28, b"6789ABCDEF")
    with pytest.raises(ValueError):
        ring.read(17, 1)


# -- session processes --------------------------------------------------------------------------


async def test_echo_through_a_shell_and_files_on_disk(sessions, runtime):
    sid, sock, info = await sessions("bash", ["--norc", "--noprofile"], env={"PS1": "$ "})
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.with_suffix(".json").stat().st_mode) == 0o600
    assert [s.id for s in await discover_sessions(runtime)] == [sid]
    assert not list(sock.parent.glob("*.spawn.json"))  # the config file is gone
    client, rec = await attach(sock)
    assert client.metadata["session_id"] == sid
    assert (client.pid, client.child_pid) == (info.pid, info.child_pid)
    assert client.metadata["running"] and client.metadata["exit_code"] is None
    client.write(b"echo hi-$((40+2)) $BOTSTER_SESSION_ID $TERM\r")
    await rec.wait_output(f"hi-42 {sid} xterm-256color".encode())
    assert "hi-42" in await client.text()
    await client.close()  # a shell ignores SIGTERM; close hangs up, so this is quick
    assert rec.of("exit")[0]["signal"] == signal.SIGHUP
    assert rec.events[-2:][0].type == "closed" and rec.events[-1].type == "disconnected"
    await wait_pid_gone(info.pid)
    assert not sock.exists() and not sock.with_suffix(".json").exists()
    assert discover_sessions_blocking(runtime) == []


async def test_resize_reaches_the_child(sessions):
    cmd, args = python_child(
        """
        import os, signal, sys
        def show(*_):
            r = os.get_terminal_size(0)
            print(f"size {r.lines}x{r.columns}", flush=True)
        signal.signal(signal.SIGWINCH, show)
        show()
        while True:
            signal.pause()
        """
    )
    _, sock, _ = await sessions(cmd, args, rows=24, cols=80)
    client, rec = await attach(sock)
    await rec.wait_output(b"size 24x80")
    client.resize(30, 100)
    await rec.wait_output(b"size 30x100")
    snap = await client.snapshot()
    assert (snap.rows, snap.cols) == (30, 100)
    with pytest.raises(ValueError, match="rows"):
        client.resize(0, 10)


async def test_stty_sees_the_new_size(sessions):
    _, sock, _ = await sessions("bash", ["--norc", "--noprofile"], rows=10, cols=50)
    client, rec = await attach(sock)
    client.resize(33, 111)
    await client.ping()
    client.write(b"stty size\r")
    await rec.wait_output(b"33 111")


async def test_snapshot_over_the_socket_reproduces_the_screen(sessions):
    cmd, args = python_child(
        f"""
        import sys, time
        sys.stdout.write({SCREEN!r} + "\\x1b]0;snap title\\x07READY")
        sys.stdout.flush()
        time.sleep(600)
        """
    )
    _, sock, _ = await sessions(cmd, args, rows=8, cols=40)
    client, rec = await attach(sock)
    await rec.wait_output(b"READY")
    snap = await client.snapshot()
    assert snap.alt_screen and not snap.cursor_visible
    assert snap.output_offset == len(rec.output) == client.output_offset
    assert snap.title == "snap title"
    reference = make_terminal(8, 40)
    reference.feed(bytes(rec.output))
    replay = make_terminal(8, 40)
    replay.feed(snap.data)
    assert replay.cells() == reference.cells()
    assert (snap.cursor_row, snap.cursor_col) == (reference.cursor.row, reference.cursor.col)
    assert replay.cursor == reference.cursor
    for t in (reference, replay):
        t.feed(b"\x1b[?1049l")  # the primary screen behind it matches as well
    assert replay.cells() == reference.cells()


async def test_utf8_split_across_writes(sessions):
    # The child writes one byte per line of input, so every byte is a read of its own.
    cmd, args = python_child(
        """
        import os, sys, termios
        attrs = termios.tcgetattr(0)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(0, termios.TCSANOW, attrs)
        os.write(1, b"[")
        for byte in "é€😀日本".encode():
            sys.stdin.readline()
            os.write(1, bytes([byte]))
        sys.stdin.readline()
        os.write(1, b"] DONE")
        sys.stdin.readline()
        """
    )
    _, sock, _ = await sessions(cmd, args)
    client, rec = await attach(sock)
    await rec.wait_output(b"[")
    data = "é€😀日本".encode()
    for i in range(len(data)):
        client.write(b"\r")
        await rec.wait(lambda n=i + 2: len(rec.output) == n, f"byte {i}")
        if i == 0:
            assert "\ufffd" not in await client.text()  # half a character shows nothing yet
    client.write(b"\r")
    await rec.wait_output(b"DONE")
    assert rec.offsets[: len(data) + 1] == list(range(len(data) + 1))  # one frame per byte
    text = await client.text()
    assert "[é€😀日本] DONE" in text and "\ufffd" not in text


async def test_osc_and_bell_are_reported_in_order(sessions):
    cmd, args = python_child(
        f"""
        import os, time
        os.write(1, {OSC_STREAM!r})
        time.sleep(600)
        """
    )
    _, sock, _ = await sessions(cmd, args)
    client, rec = await attach(sock)
    await rec.wait(lambda: len(rec.of("bell")) == 1 and rec.output.endswith(b"end"), "the bell")
    kinds = ("title", "cwd", "notification", "bell")
    got = [{k: v for k, v in e.data.items() if k not in ("seq", "offset")} for e in rec.events]
    assert [e for e in got if e["type"] in kinds] == OSC_EVENTS
    seqs = [e.data["seq"] for e in rec.events if e.type in kinds]
    assert seqs == list(range(1, len(OSC_EVENTS) + 1))
    assert all(e.data["offset"] <= len(rec.output) for e in rec.events if e.type in kinds)
    assert (client.title, client.cwd) == ("second é", "/tmp/some dir")


async def test_exit_code_and_signal_are_reported(sessions):
    _, sock_a, info_a = await sessions("sh", ["-c", "printf 'last words'; exit 3"])
    cmd, args = python_child("import os, signal; os.kill(os.getpid(), signal.SIGUSR1)")
    _, sock_b, _ = await sessions(cmd, args)
    cmd, args = python_child("import time; print('sleeping', flush=True); time.sleep(600)")
    _, sock_c, _ = await sessions(cmd, args)
    a, rec_a = await attach(sock_a)
    b, rec_b = await attach(sock_b)
    c, rec_c = await attach(sock_c)
    exit_a = await rec_a.wait_event("exit")
    assert (exit_a["exit_code"], exit_a["signal"]) == (3, None)
    assert rec_a.output.endswith(b"last words") and exit_a["offset"] == len(rec_a.output)
    exit_b = await rec_b.wait_event("exit")
    assert (exit_b["exit_code"], exit_b["signal"]) == (128 + signal.SIGUSR1, signal.SIGUSR1)
    await rec_c.wait_output(b"sleeping")
    c.kill(grace=5)
    exit_c = await rec_c.wait_event("exit")
    assert (exit_c["exit_code"], exit_c["signal"]) == (128 + signal.SIGTERM, signal.SIGTERM)
    # The session outlives its child until the exit is acknowledged; a new hub sees the end.
    await a.disconnect()
    a2, rec_a2 = await attach(sock_a, seen_offset=a.output_offset, seen_event=a.event_seq)
    assert a2.metadata["running"] is False and a2.metadata["exit_code"] == 3
    assert a2.exit == {"exit_code": 3, "signal": None}
    await a2.ack_exit()
    await wait_pid_gone(info_a.pid)
    assert not sock_a.exists()


async def test_ack_exit_while_running_is_refused(sessions):
    cmd, args = python_child("import time; time.sleep(600)")
    _, sock, info = await sessions(cmd, args)
    client, _ = await attach(sock)
    with pytest.raises(SessionError, match="still running"):
        await client.ack_exit()
    await client.disconnect()
    # The session's own refusal: an error, and the connection stays usable.
    async with raw_connection(sock) as (reader, writer):
        writer.write(encode_message({"type": "hello", "version": 1}))
        writer.write(encode_message({"type": "ack_exit"}))
        writer.write(encode_message({"type": "ping", "id": 7}))
        decoder, messages = FrameDecoder(), []
        while not messages or messages[-1]["type"] != "pong":
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk, messages
            messages += [f.json() for f in decoder.feed(chunk) if f.type == JSON]
    assert [m["type"] for m in messages] == ["metadata", "error", "pong"]
    assert "still running" in messages[1]["message"]
    assert pid_alive(info.pid)


def lines_child(stop: int) -> tuple[str, list[str]]:
    """A child printing ``%07d`` lines 0..stop-1, then END."""
    return python_child(
        f"""
        import sys
        out = sys.stdout.buffer
        for i in range({stop}):
            out.write(b"%07d\\n" % i)
        out.write(b"END\\n")
        """
    )


def expected_lines(start: int, stop: int) -> bytes:
    return b"".join(b"%07d\r\n" % i for i in range(start, stop))


async def test_hub_restart_loses_nothing_and_repeats_nothing(sessions):
    cmd, args = python_child(
        """
        import sys
        out = sys.stdout.buffer
        for i in range(3000):
            out.write(b"%07d\\n" % i)
        out.flush()
        sys.stdin.readline()
        for i in range(3000, 60000):
            out.write(b"%07d\\n" % i)
        out.write(b"END\\n")
        """
    )
    _, sock, info = await sessions(cmd, args)
    first, rec1 = await attach(sock)
    await rec1.wait_output(b"0002999\r\n")
    first.write(b"go\r")
    await first.disconnect()  # the hub goes away while the child keeps printing
    await wait_pid_gone(info.child_pid)  # ... all the way to its end
    second, rec2 = await attach(sock, seen_offset=first.output_offset, seen_event=first.event_seq)
    assert second.metadata["output_offset"] > first.output_offset  # output happened meanwhile
    await rec2.wait_event("exit")
    assert rec2.offsets[0] == first.output_offset
    stream = bytes(rec1.output) + bytes(rec2.output)
    assert len(stream) == second.output_offset == second.metadata["output_offset"]
    assert stream == expected_lines(0, 3000) + b"go\r\n" + expected_lines(3000, 60000) + b"END\r\n"
    assert not rec2.of("dropped")


async def test_a_live_only_hub_gets_no_replay_and_an_exact_snapshot(sessions):
    """Issue 11: a hub adopting a session asks for output from the end (``output_from``):
    nothing kept is replayed, output goes on from there, and the screen comes as a snapshot."""
    cmd, args = python_child(
        """
        import sys
        out = sys.stdout.buffer
        for i in range(5000):
            out.write(b"\\x1b[3%dmline %07d\\n" % (i % 8, i))
        out.write(b"\\x1b]0;kept title\\x07READY")
        out.flush()
        sys.stdin.readline()
        out.write(b"AFTER\\n")
        out.flush()
        sys.stdin.readline()
        """
    )
    _, sock, _ = await sessions(cmd, args, rows=10, cols=30)
    first, rec1 = await attach(sock)
    await rec1.wait_output(b"READY")
    await first.disconnect()
    rec2 = Recorder()
    second = await SessionClient.connect(
        sock, on_output=rec2.on_output, on_event=rec2.on_event, live_only=True
    )
    assert second.metadata["output_from"] == second.metadata["output_offset"] == len(rec1.output)
    assert second.output_offset == len(rec1.output)
    await second.ping()  # everything the session had to send before the pong has arrived
    assert not rec2.output and not rec2.of("dropped")
    assert [e["title"] for e in rec2.of("title")] == ["kept title"]  # events still come
    snap = await second.snapshot()
    reference = make_terminal(10, 30)
    reference.feed(bytes(rec1.output))
    replay = make_terminal(10, 30)
    replay.feed(snap.data)
    assert replay.cells() == reference.cells()
    assert snap.output_offset == len(rec1.output)
    second.write(b"go\r")
    await rec2.wait_output(b"AFTER\r\n")
    assert rec2.offsets[0] == len(rec1.output)  # live output continues where the ring ended
    second.write(b"x\r")
    await second.disconnect()


async def test_hello_refuses_an_unknown_output_from(sessions):
    cmd, args = python_child("import time; time.sleep(600)")
    _, sock, _ = await sessions(cmd, args)
    async with raw_connection(sock) as (reader, writer):
        hello = {"type": "hello", "version": 1, "output_from": "start"}
        writer.write(encode_message(hello))
        frame = next(FrameDecoder().feed(await asyncio.wait_for(reader.read(1 << 16), 10)))
        assert frame.json() == {
            "type": "error",
            "message": "hello: output_from: expected \"end\", got 'start'",
        }


async def test_a_slow_hub_catches_up_from_the_ring(sessions):
    cmd, args = lines_child(300_000)
    _, sock, info = await sessions(cmd, args)
    decoder, data, expected = FrameDecoder(), bytearray(), expected_lines(0, 300_000) + b"END\r\n"
    async with raw_connection(sock) as (reader, writer):
        writer.write(encode_message({"type": "hello", "version": 1, "output_offset": 0}))
        # 2.4 MB produced while this hub reads nothing: 1.5-3 s alone, far more under load.
        await wait_pid_gone(info.child_pid, timeout=60)
        seen_exit = False
        while not seen_exit:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk, "the session closed the connection"
            for frame in decoder.feed(chunk):
                if frame.type == OUTPUT:
                    offset, payload = decode_output(frame.payload)
                    assert offset == len(data)
                    data += payload
                else:
                    message = frame.json()
                    assert message["type"] in ("metadata", "exit"), message
                    seen_exit = message["type"] == "exit"
    assert bytes(data) == expected


async def test_a_wrapped_ring_reports_dropped_bytes(sessions):
    cmd, args = lines_child(20_000)
    _, sock, info = await sessions(cmd, args, buffer_size=65536)
    await wait_pid_gone(info.child_pid)  # ~180 KB while no hub is connected
    client, rec = await attach(sock)
    expected = expected_lines(0, 20_000) + b"END\r\n"
    await rec.wait_event("exit")
    dropped = rec.of("dropped")
    assert dropped == [
        {"type": "dropped", "bytes": len(expected) - 65536, "offset": len(expected) - 65536}
    ]
    assert bytes(rec.output) == expected[-65536:]
    assert client.metadata["buffer_start"] == len(expected) - 65536


async def test_events_are_kept_while_no_hub_is_connected(sessions):
    cmd, args = python_child("import os; os.write(1, b'\\a' * 1100 + b'rang')")
    _, sock, info = await sessions(cmd, args)
    await wait_pid_gone(info.child_pid)
    client, rec = await attach(sock)
    await rec.wait_event("exit")
    # 1100 bells and the exit: the oldest 101 were evicted, the newest 1000 arrive in order.
    assert rec.of("events_dropped") == [{"type": "events_dropped", "count": 101}]
    assert [e["seq"] for e in rec.of("bell")] == list(range(102, 1101))
    assert rec.of("exit")[0]["seq"] == 1101 == client.event_seq
    await client.disconnect()
    again, rec2 = await attach(sock, client.output_offset, client.event_seq)
    await again.ping()
    assert not rec2.output and not [e for e in rec2.events if "seq" in e.data]


async def test_input_to_a_child_that_does_not_read_never_blocks(sessions):
    cmd, args = python_child("import time; print('deaf', flush=True); time.sleep(600)")
    _, sock, _ = await sessions(cmd, args)
    client, rec = await attach(sock)
    await rec.wait_output(b"deaf")
    client.write(b"x" * (3 << 20))
    dropped = await rec.wait_event("input_dropped")
    assert dropped["bytes"] > 0
    await client.ping()  # the session still answers at once
    assert client.running


async def test_orphan_timeout_kills_the_child_and_cleans_up(sessions):
    cmd, args = python_child("import time; time.sleep(600)")
    _, sock, info = await sessions(cmd, args, orphan_timeout=1)
    client, _ = await attach(sock)
    await client.disconnect()
    await wait_pid_gone(info.pid, timeout=10)
    assert not pid_alive(info.child_pid)
    assert not sock.exists() and not sock.with_suffix(".json").exists()


async def test_a_second_client_replaces_the_first(sessions):
    _, sock, _ = await sessions("bash", ["--norc", "--noprofile"])
    first, rec1 = await attach(sock)
    second, rec2 = await attach(sock)
    await rec1.wait_event("replaced")
    await first.wait_closed()
    assert rec1.events[-1].type == "disconnected"
    second.write(b"echo second-$((6*7))\r")
    await rec2.wait_output(b"second-42")
    with pytest.raises(SessionError, match="closed"):
        first.write(b"x")


async def raw_exchange(sock: Path, payload: bytes, *, hello: bool) -> list[dict[str, Any]]:
    """Sends ``payload`` on a fresh connection; returns the JSON messages until the session hangs up."""
    async with raw_connection(sock) as (reader, writer):
        if hello:
            writer.write(encode_message({"type": "hello", "version": 1}))
        writer.write(payload)
        decoder, messages = FrameDecoder(), []
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 10):
            messages += [f.json() for f in decoder.feed(chunk) if f.type == JSON]
    return messages


async def test_malformed_frames_disconnect_only_that_client(sessions):
    _, sock, info = await sessions("bash", ["--norc", "--noprofile"])
    hub, rec = await attach(sock)
    cases = [
        (struct.pack("<IB", 0, 1), False, "frame length 0"),  # a bad header
        (encode_frame(JSON, b"{not json"), True, "not valid JSON"),
        (encode_frame(JSON, b"[1]"), True, "must hold an object"),
        (encode_message({"type": "self_destruct"}), True, "unknown message type"),
        (encode_message({"type": "resize", "rows": "x", "cols": 80}), True, "rows"),
        (encode_frame(OUTPUT, b"12345678"), True, "not accepted from a hub"),
        (encode_input(b"input before hello"), False, "first frame must be a JSON hello"),
        (encode_message({"type": "hello", "version": 99}), False, "version 99"),
        (encode_message({"type": "hello", "version": 1, "output_offset": 10**9}), False, "0 to"),
    ]
    for payload, hello, message in cases:
        replies = await raw_exchange(sock, payload, hello=hello)
        assert replies[-1]["type"] == "error" and message in replies[-1]["message"], replies
    # Bad hellos never displaced the hub; the ones after a good hello did, so reconnect.
    assert pid_alive(info.pid) and pid_alive(info.child_pid)
    hub2, rec2 = await attach(sock)
    hub2.write(b"echo still-$((1+1))\r")
    await rec2.wait_output(b"still-2")


async def test_a_stranger_without_hello_does_not_disturb_the_hub(sessions):
    _, sock, _ = await sessions("bash", ["--norc", "--noprofile"])
    hub, rec = await attach(sock)
    with socket.socket(socket.AF_UNIX) as stranger:
        stranger.connect(str(sock))
        stranger.sendall(b"\xff" * 3)  # an incomplete header: nothing happens yet
        await hub.ping()
        assert hub.connected and not rec.of("replaced")


async def test_spawn_failures_are_clear(runtime, sessions):
    with pytest.raises(SessionError, match="cannot start '/nonexistent/prog': No such file"):
        await spawn_session({"cmd": "/nonexistent/prog"}, runtime)
    with pytest.raises(SessionError, match=r"unknown key\(s\) 'colums'.*known: cmd"):
        await spawn_session({"cmd": "sh", "colums": 80}, runtime)
    with pytest.raises(SessionError, match="rows: expected an integer from 1 to 1000"):
        await spawn_session({"cmd": "sh", "rows": 0}, runtime)
    with pytest.raises(SessionError, match="not a directory"):
        await spawn_session({"cmd": "sh", "cwd": "/nonexistent/dir"}, runtime)
    cmd, args = python_child("import time; time.sleep(600)")
    sid, _, _ = await sessions(cmd, args, session_id="twin")
    with pytest.raises(SessionError, match="session twin is already running"):
        await spawn_session({"cmd": cmd, "args": args, "session_id": "twin"}, runtime)
    assert [p.name for p in sorted((runtime / "sessions").iterdir())] == ["twin.json", "twin.sock"]
    assert session_processes(runtime) == [read_info(runtime / "sessions" / "twin.json").pid]


def _nice(pid: int) -> int:
    # Field 19 of /proc/<pid>/stat; the command name before it may hold spaces.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _autogroup_nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def _autogroups_on() -> bool:
    flag = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return flag.exists() and flag.read_text().strip() == "1"


async def test_the_session_and_its_program_run_nice_issue_11(sessions):
    # The hub ahead of its sessions, each session ahead of its program. Five at once: an
    # unprivileged user may renice one autogroup per 100 ms, system-wide, so agents started
    # together must each get there.
    started = await asyncio.gather(*(sessions("sleep", ["100"]) for _ in range(5)))
    levels = [
        (pid, nice)
        for _, _, info in started
        for pid, nice in ((info.pid, SESSION_NICE), (info.child_pid, PROGRAM_NICE))
    ]
    pids = [pid for pid, _ in levels]
    assert [_nice(pid) for pid in pids] == [max(os.nice(0), nice) for _, nice in levels]
    if not _autogroups_on():
        return
    await wait_until(
        lambda: all(_autogroup_nice(pid) == nice for pid, nice in levels),
        f"the autogroups of the session processes at nice {SESSION_NICE} and of their programs"
        f" at {PROGRAM_NICE}",
    )
    # Empty when this process is in the root autogroup (never under a setsid, as in some CI
    # containers): every session leader's own group then differs from it by construction.
    mine = Path("/proc/self/autogroup").read_text().split()[:1]
    assert all(Path(f"/proc/{pid}/autogroup").read_text().split()[:1] != mine for pid in pids)


async def test_discovery_cleans_stale_records(runtime, sessions):
    _, sock, info = await sessions("bash", ["--norc", "--noprofile"], session_id="alive")
    stale = runtime / "sessions" / "dead.json"
    stale.write_text(
        json.dumps(
            {
                "id": "dead",
                "pid": 2**22 + 1,
                "child_pid": 2**22 + 2,
                "socket": str(runtime / "sessions" / "dead.sock"),
                "started_at": "2020-01-01T00:00:00Z",
                "cmd": ["x"],
                "cwd": "/",
            }
        )
    )
    with socket.socket(socket.AF_UNIX) as s:  # a socket file nobody listens on any more
        s.bind(str(runtime / "sessions" / "dead.sock"))
    found = discover_sessions_blocking(runtime)
    assert [(i.id, i.pid) for i in found] == [("alive", info.pid)]
    assert not stale.exists() and not (runtime / "sessions" / "dead.sock").exists()
    assert sock.exists()


def test_the_client_runs_on_uvloop(runtime):
    uvloop = pytest.importorskip("uvloop")

    async def flow() -> None:
        _, sock = await spawn_session(
            {"cmd": "sh", "args": ["-c", "echo uv-$((2+3)); read x"]}, runtime
        )
        client, rec = await attach(sock)
        try:
            await rec.wait_output(b"uv-5")
            client.write(b"\r")
            assert (await rec.wait_event("exit"))["exit_code"] == 0
            assert "uv-5" in (await client.snapshot()).data.decode()
            await client.ack_exit()
        finally:
            if client.connected:
                await client.close()
        await wait_pid_gone(client.pid)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(flow())
    assert session_processes(runtime) == []


FLOOD_CHILD = """
import os, random, sys
rnd = random.Random(11)
words = ["build", "ok", "日本語", "é", "😀", "warning:", "\\t", "x" * 150]
out = []
for i in range(150000):
    r = rnd.random()
    if r < 0.05:
        out.append(f"\\x1b[{rnd.randint(1, 60)};{rnd.randint(1, 200)}H")
    elif r < 0.15:
        out.append(f"\\x1b[{rnd.choice([1, 3, 4, 7, 31, 42, 38;5;208, 0])}m")
    elif r < 0.17:
        out.append(rnd.choice(["\\x1b[2K", "\\x1b[J", "\\x1b[?1049h", "\\x1b[?1049l", "\\x1b[5;20r",
                               "\\x1b[r", "\\x1b]0;t%d\\x07" % i, "\\x1b[3L", "\\x1b[2M"]))
    out.append(rnd.choice(words) + (" " if rnd.random() < 0.8 else "\\r\\n"))
data = "".join(out).encode()
sys.stdout.buffer.write(b"READY\\r\\n")
sys.stdout.flush()
sys.stdin.readline()
for i in range(0, len(data), 3000):
    os.write(1, data[i:i + 3000])
os.write(1, b"\\x1b[0mDONE")
import time
time.sleep(600)
""".replace("38;5;208", "'38;5;208'")


async def test_lazy_model_snapshots_are_exact_during_and_after_a_flood(sessions):
    """The model lags the forwarded bytes; every snapshot (mid-flood and at the end) equals a
    model fed the same output synchronously up to the snapshot's offset. A 256 KiB ring makes
    the ring wrap past bytes the model has not drawn yet."""
    cmd, args = python_child(FLOOD_CHILD)
    _, sock, _ = await sessions(cmd, args, rows=60, cols=200, buffer_size=1 << 18)
    client, rec = await attach(sock)
    await rec.wait_output(b"READY")
    client.write(b"go\n")
    snaps = []
    while b"DONE" not in rec.output:
        snaps.append(await client.snapshot())
        await asyncio.sleep(0.05)
    snaps.append(await client.snapshot())
    assert snaps[-1].output_offset == len(rec.output)
    assert len(rec.output) > 8 << 20 >> 2  # many times the ring
    for snap in snaps[:: max(1, len(snaps) // 8)] + [snaps[-1]]:
        reference = make_terminal(60, 200)
        data = bytes(rec.output[: snap.output_offset])
        for i in range(0, len(data), 4096):
            reference.feed(data[i : i + 4096])
        replay = make_terminal(60, 200)
        replay.feed(snap.data)
        assert replay.cells() == reference.cells(), f"snapshot at {snap.output_offset}"
        assert (snap.cursor_row, snap.cursor_col) == (reference.cursor.row, reference.cursor.col)
        assert snap.alt_screen == reference.alt_screen


# -- the hub writes input to the PTY itself (sessions/pty_input.py) -----------------------------


def ptmx_fds() -> dict[int, bool]:
    """This process's PTY masters: fd -> close-on-exec."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/ptmx":
                found[int(name)] = bool(fcntl.fcntl(int(name), fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    return found


async def test_the_hub_writes_keys_to_the_pty_and_lets_it_go_with_the_child(sessions):
    cmd, args = python_child(
        """
        import sys, tty
        tty.setraw(0)
        print("raw", flush=True)
        while (b := sys.stdin.buffer.read(1)) != b"q":
            sys.stdout.buffer.write(b"<" + b + b">"); sys.stdout.flush()
        """
    )
    _, sock, _ = await sessions(cmd, args)
    before = ptmx_fds()
    client, rec = await attach(sock)
    await rec.wait_output(b"raw")
    assert client.writes_pty
    held = set(ptmx_fds()) - set(before)
    assert len(held) == 1 and all(ptmx_fds()[fd] for fd in held), "one copy, close-on-exec"
    for key in b"hello":
        client.write(bytes([key]))
    await rec.wait_output(b"<h><e><l><l><o>")
    client.write(b"q")
    await rec.wait_event("exit")
    assert ptmx_fds() == before  # released at the exit, not at the disconnect
    assert not client.writes_pty


async def test_a_hub_that_disconnects_closes_its_copy_of_the_pty(sessions):
    _, sock, _ = await sessions("bash", ["--norc", "--noprofile"])
    before = ptmx_fds()
    client, rec = await attach(sock)
    assert len(ptmx_fds()) == len(before) + 1
    await client.disconnect()
    assert ptmx_fds() == before
    again, rec2 = await attach(sock)
    again.write(b"echo back-$((40+2))\r")
    await rec2.wait_output(b"back-42")


async def test_a_hub_never_takes_the_pty_while_input_waits_in_the_session(sessions, tmp_path):
    # A raw hub sends 200 KB the program does not read yet: the session queues most of it. A
    # hub connecting now must not write keys itself (they would overtake the queue): it gets
    # the session's refusal and sends frames, which come after the queued input.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    cmd, args = python_child(
        f"""
        import sys, tty
        tty.setraw(0)
        print("raw", flush=True)
        open({str(gate)!r}).read()
        data = b""
        while not data.endswith(b"!"):
            data += sys.stdin.buffer.read1(1 << 16)
        first_b = data.index(b"B")
        print("A", data.count(b"A"), "first B at", first_b, "B", data.count(b"B"), flush=True)
        """
    )
    _, sock, _ = await sessions(cmd, args)
    first, rec = await attach(sock)
    await rec.wait_output(b"raw")
    await first.disconnect()
    async with raw_connection(sock) as (reader, writer):
        writer.write(encode_message({"type": "hello", "version": 1}))
        for _ in range(4):
            writer.write(encode_input(b"A" * 50_000))
        writer.write(encode_message({"type": "ping", "id": 1}))
        decoder, seen = FrameDecoder(), []
        while not any(m.get("type") == "pong" for m in seen):
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk, seen
            seen += [f.json() for f in decoder.feed(chunk) if f.type == JSON]
        with pytest.raises(SessionError, match="input is still waiting to be written"):
            await take_pty_fd(sock, 5)
        second, rec2 = await attach(sock)
    assert not second.writes_pty
    second.write(b"BBB!")
    opener = await asyncio.to_thread(os.open, gate, os.O_WRONLY)
    os.close(opener)
    await rec2.wait_output(b"A 200000 first B at 200000 B 3")


async def test_input_fd_is_refused_clearly(sessions):
    cmd, args = python_child("print('bye')")
    _, sock, info = await sessions(cmd, args)
    replies = await raw_exchange(
        sock, encode_message({"type": "input_fd", "version": 2}), hello=False
    )
    assert replies == [
        {"type": "error", "message": "protocol version 2 is not supported (use 1)"}
    ], replies
    await wait_pid_gone(info.child_pid)
    with pytest.raises(SessionError, match="the session refused: input_fd: the child has exited"):
        await take_pty_fd(sock, 5)
    # A hub connecting now reads the exit and writes (nowhere) through frames, without error.
    client, rec = await attach(sock)
    assert not client.writes_pty
    await rec.wait_output(b"bye")
    client.write(b"ignored")
    await client.ping()


# -- watchers: the terminal straight to a local client (watchers.py) ------------------------


async def test_tickets_are_one_time_and_watchers_only_watch(sessions):
    sid, sock, _ = await sessions("cat")
    hub, hub_rec = await attach(sock)
    assert hub.serves_watchers

    def watch(ticket: object, version: object = 1) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        s.sendall(encode_json({"type": "watch", "version": version, "ticket": ticket}))
        return s

    ticket, path = await hub.watch_ticket()
    assert path == str(sock)
    with watch(ticket) as first:
        frame = first_frame(first)
        assert frame.type == SNAPSHOT and split_session(frame.payload)[0] == sid
        with watch(ticket) as second:  # used
            assert "unknown, used or expired" in first_frame(second).json()["message"]
        # A watcher may not type: its frame is refused and it is closed.
        first.sendall(encode_input(b"sneaky\n"))
        first.settimeout(10)
        rest = b""
        while chunk := first.recv(1 << 16):
            rest += chunk
        assert b"a watcher sends nothing after its watch" in rest
    for bad, why in (("forged", "unknown, used"), (None, "unknown, used"), (7, "unknown, used")):
        with watch(bad) as s:
            assert why in first_frame(s).json()["message"]
    ticket, _ = await hub.watch_ticket()
    with watch(ticket, version=2) as s:
        assert "version 2 is not supported" in first_frame(s).json()["message"]
    # Unused tickets can be revoked; the session and its hub carry on.
    ticket, _ = await hub.watch_ticket()
    hub.unwatch(ticket)
    await hub.ping()
    with watch(ticket) as s:
        assert "unknown, used" in first_frame(s).json()["message"]
    hub.write(b"still-typing\n")
    await hub_rec.wait_output(b"still-typing")  # the echo comes back when the tty gets to it
    assert "still-typing" in await hub.text()
    await hub.disconnect()


async def test_a_watcher_sees_the_exit_after_all_output(sessions):
    sid, sock, _ = await sessions("sh", ["-c", "read x; seq 1 2000; exit 3"])
    hub, _ = await attach(sock)
    ticket, _ = await hub.watch_ticket()
    async with raw_connection(sock) as (reader, writer):
        writer.write(encode_json({"type": "watch", "version": 1, "ticket": ticket}))
        decoder, frames = FrameDecoder(), []
        async with asyncio.timeout(10):
            while not frames or frames[-1].type != PROCESS_EXITED:
                data = await reader.read(1 << 16)
                assert data, "closed before PROCESS_EXITED"
                frames.extend(decoder.feed(data))
                if len(frames) == 1 and frames[0].type == SNAPSHOT:
                    hub.write(b"\n")  # watching: now the program may run
        assert frames[0].type == SNAPSHOT
        out = b"".join(split_session(f.payload)[1] for f in frames if f.type == PTY_OUTPUT)
        expected = "".join(f"{i}\n" for i in range(1, 2001)).encode()
        assert out.replace(b"\r\n", b"\n") == b"\n" + expected
        assert split_session(frames[-1].payload) == (sid, struct.pack("<i", 3))
    # A hub that is replaced takes its watchers with it.
    ticket, _ = await hub.watch_ticket()
    async with raw_connection(sock) as (reader, writer):
        writer.write(encode_json({"type": "watch", "version": 1, "ticket": ticket}))
        await reader.readexactly(4)
        newer = await SessionClient.connect(sock)
        async with asyncio.timeout(10):
            while await reader.read(1 << 16):
                pass
    await newer.disconnect()
    await hub.wait_closed()


async def test_a_hub_may_take_events_without_the_output(sessions):
    """A hub whose clients all read the terminal from the session asks for events only; it
    gets output again, from the offset the session names, when a relaying client attaches."""
    _, sock, _ = await sessions("cat")
    hub, rec = await attach(sock)
    hub.send_output(False)
    hub.write(b"unseen\n\x1b]0;a title\x07\n")  # cat prints the OSC back: a title event
    assert (await rec.wait_event("title"))["title"] == "a title"
    assert "unseen" in await hub.text()
    assert b"unseen" not in rec.output
    hub.send_output(True)
    hub.write(b"seen again\n")
    await rec.wait_output(b"seen again\r\nseen again\r\n")
    assert b"unseen" not in rec.output
    resumed = rec.of("output_from")[0]["offset"]
    assert rec.offsets[-1] >= resumed == hub.output_offset - len(rec.output)
    replies = await raw_exchange(
        sock, encode_message({"type": "output", "send": "yes"}), hello=True
    )
    assert replies[-1] == {
        "type": "error",
        "message": "output: send: expected true or false, got 'yes'",
    }, replies
