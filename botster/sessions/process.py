"""The session process: one per PTY, outliving any hub. Run as ``python -m botster.sessions``.

A session process owns one child program in a PTY, the PTY master, a bounded ring of its output
(``ring.py``) and a terminal model (``terminal.py``). It listens on
``<runtime_dir>/sessions/<session_id>.sock`` and serves one hub at a time; the hub restarts,
upgrades or crashes without the child noticing, and the next hub catches up by output offset.
Files are described in ``files.py``; the hub side is ``client.py``.

Command line::

    python -m botster.sessions (--config JSON | --config-file PATH) [--runtime-dir DIR]
        [--orphan-timeout SECONDS] [--buffer-size BYTES] [--kill-grace SECONDS]
        [--ready-fd FD] [--daemonize]

The spawn config is ``protocol.SpawnConfig`` (``cmd``, ``args``, ``env``, ``cwd``, ``rows``,
``cols``, ``session_id``, ``buffer_size``, ``orphan_timeout``, ``kill_grace``, ``scrollback``);
the flags override the config's values. ``--daemonize`` forks once more so the session is nobody's
child (the hub never has to reap it). ``--ready-fd`` names a pipe on which the process writes JSON
lines: ``{"event": "started", "pid"}``, then ``{"event": "ready", "session_id", "pid",
"child_pid", "socket"}`` once the socket listens and the child runs, or ``{"event": "error",
"error"}``; then it closes the pipe. Exit status: 0 after a normal end, 1 when the session failed,
2 for a bad command line or config.

Session protocol (version 1)
============================

Frames are the hub's frame format with the payloads listed in ``protocol.py``: JSON (0x01),
OUTPUT (0x02: u64 LE offset + bytes), INPUT (0x03: bytes), SNAPSHOT (0x04: u32 LE header
length + JSON header + ANSI bytes). An *offset* counts output bytes since the session started.

1. The hub connects and sends, within 10 s, ``{"type": "hello", "version": 1,
   "output_offset": N, "event_seq": M}``: N output bytes and events up to sequence number M
   are already known to it (0 and 0 ask for everything still kept). With ``"output_from":
   "end"`` (a hub adopting the session: it takes the screen from snapshots when a client
   attaches) output starts at the end of what is kept and nothing is replayed; events still are.
2. The session answers ``{"type": "metadata", "version": 1, "session_id", "pid" (session
   process), "child_pid", "rows", "cols", "title", "cwd" (or null), "running", "exit_code",
   "signal" (both null while running), "output_offset" (bytes so far), "buffer_start" (oldest
   byte kept), "event_seq" (last event so far), "hub_event_seq" (the last event a previous
   hub was sent: a hub adopting the session tells what happened while none was connected),
   "started_at", "cmd", "output_from" (where this connection's output starts)}``. A hub that was
   connected before gets ``{"type": "replaced"}`` and is disconnected: the newest hub wins.
3. The session then sends, in stream order, what the hub has not seen and then live output:

   * ``{"type": "dropped", "bytes": K, "offset": S}``: K bytes before S are gone (the ring
     wrapped before this hub read them); output continues at S.
   * ``{"type": "events_dropped", "count": C}``: C events were evicted before this hub saw them.
   * OUTPUT frames. Offsets are contiguous: each frame starts where the previous one ended.
   * Events, each with ``seq`` (1, 2, ...) and ``offset`` (the output offset at which it
     happened; it arrives after the output before that offset and before the output after):
     ``{"type": "title", "title"}``, ``{"type": "cwd", "cwd"}``, ``{"type": "notification",
     "source": "osc9" | "osc777", "title", "body"}``, ``{"type": "bell"}``,
     ``{"type": "exit", "exit_code", "signal"}``. ``exit_code`` is the status, or 128 + the
     signal number when a signal killed the child (then ``signal`` holds that number).

Hub -> session, after the hello:

* INPUT frames: bytes for the child (queued without blocking; past 1 MiB the child is not
  reading and further input is dropped with ``{"type": "input_dropped", "bytes"}``).
* ``{"type": "resize", "rows", "cols"}`` (1-1000): TIOCSWINSZ on the PTY, so the child gets
  SIGWINCH, and the terminal model follows.
* ``{"type": "get_snapshot", "id"}``: a SNAPSHOT frame, header ``{"id", "rows", "cols",
  "cursor": {"row", "col", "visible"}, "alt_screen", "output_offset", "title", "cwd"}``;
  ``output_offset`` is the output the snapshot reflects, so a client can splice live output
  after it. The bytes redraw the screen in a fresh terminal of that size.
* ``{"type": "get_text", "id"}``: ``{"type": "text", "id", "text"}``, the visible screen.
* ``{"type": "ping", "id"}``: ``{"type": "pong", "id"}`` after everything sent before it.
* ``{"type": "kill", "grace"?}``: SIGTERM to the child's process group, SIGKILL after
  ``grace`` seconds (default: the config's ``kill_grace``, 3 s). The exit event follows.
  Interactive shells ignore SIGTERM, so a bare shell dies at the SIGKILL; ``close`` hangs up.
* ``{"type": "close"}``: hang up (SIGHUP, then SIGTERM at once, to the group: what a closing
  terminal or ``tmux kill-session`` does, and the signal interactive shells obey; SIGKILL after
  the grace), report the exit, send ``{"type": "closed", "reason": "closed"}`` and exit.
* ``{"type": "ack_exit"}``: after the exit event, the session sends ``{"type": "closed",
  "reason": "exit acknowledged"}`` and exits. Before it, ``{"type": "error"}`` and nothing else.

A connection whose first frame is ``{"type": "input_fd", "version": 1}`` is not a hub's: the
session answers ``{"type": "input_fd"}`` with its PTY master attached (SCM_RIGHTS) and closes it,
and the hub writes input itself from then on (``pty_input.py``). Refused with an error while
input sent earlier still waits to be written, or once the child has exited.

* ``{"type": "output", "send": false | true}``: with false, the session stops sending this
  hub OUTPUT frames (events still come, in order); with true, it sends ``{"type":
  "output_from", "offset"}`` and output from that offset on. A hub whose clients all read
  terminals straight from the session has no use for the bytes.
* ``{"type": "watch_ticket", "id"}``: ``{"type": "watch_ticket", "id", "ticket", "socket"}``, a
  one-time ticket a local client may watch the terminal with (``watchers.py``);
  ``{"type": "unwatch", "ticket"}`` voids it or closes the watcher that used it. Watchers go
  when the hub that took their tickets goes. (``metadata`` has ``"watch": 1``.)

A connection whose first frame is ``{"type": "watch", "version": 1, "ticket"}`` is a watcher:
it gets the terminal in the client protocol's frames (SNAPSHOT, PTY_OUTPUT, PROCESS_EXITED) and
may send nothing more (``watchers.py``).

A frame the protocol does not allow (bad header, unknown type, bad JSON, a wrong field, no
hello first) gets ``{"type": "error", "message"}`` and the connection is closed; the session and
its child carry on.

Flow control: output is never dropped on a slow hub's account. The session stops writing when
the socket's buffer holds 1 MiB and resumes from the ring when it drains; a hub that falls more
than the ring's size behind gets a ``dropped`` notice. Events are kept (the last 1000) while no
hub is connected.

Lifetime: when the child exits the session stays, so a hub can still read the last output and
snapshot, until a hub sends ``ack_exit`` or ``close``. Whenever no hub is connected (from the
start, and after each disconnect) the *orphan timeout* runs (``orphan_timeout``, default 24 h):
when it passes, the session hangs up its child as ``close`` does and exits. On exit it removes its
socket and discovery record. SIGTERM or SIGINT to the session process acts as ``close``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

from botster.base.errors import ProtocolError, SessionError
from botster.base.paths import runtime_dir as default_runtime_dir
from botster.sessions.files import (
    SESSION_MALLOC_ENV,
    info_path,
    remove_quietly,
    sessions_dir,
    socket_path,
    write_json_atomic,
)
from botster.sessions.heap import HeapTrimmer
from botster.sessions.protocol import (
    INPUT,
    JSON,
    MAX_FRAME,
    OUTPUT_CHUNK,
    PROTOCOL_VERSION,
    FrameDecoder,
    SpawnConfig,
    encode_message,
    encode_output,
    encode_snapshot,
    new_session_id,
)
from botster.sessions.pty_input import InputQueue, send_pty_fd
from botster.sessions.ring import OutputRing
from botster.sessions.terminal import FEED_CHUNK, make_terminal
from botster.sessions.watchers import Watchers

__all__ = ["Session", "main"]

log = logging.getLogger("botster.sessions")

# The most output one batch reads before it is forwarded (issue 11, 2 cores, 100 MB of
# base64 lines to a socket client): 16 KiB went at 0.95-0.99x a bare PTY reader's speed, 64 KiB
# at 0.72-0.83x. A 64 KiB frame fills a watcher's socket at once, so the client worked in bursts
# and fell behind into resyncs (8% of the bytes came as snapshots), and an echo waited for the
# whole batch behind it. Per frame the hub's and clients' costs barely show: `yes` went at the
# same speed, 20 flooding agents left the hub the same jitter. Reading on to 64 KiB a wake-up
# while still forwarding every 16 KiB took base64 into the hub from 0.75x to 0.82x (fewer loop
# turns while the PTY's ~12 KiB fills), but a UI typing into a flooding agent
# (``bench/tui_flood_input.py``, interleaved runs) saw the echo reach its model at p99 16-23 ms
# against 8-19 ms, also when reading on only while every reader had taken all it was sent: kept
# at 16 KiB.
READ_SIZE = 16 << 10
SHORT_READ = 512  # a PTY read under this found it drained (a flood's return KiBs)
# The terminal model takes the output in batches: this long after output, or as soon as this
# much waits for it. The larger the batch, the more of a flood of plain lines it never has to
# draw (``Terminal.render_steps`` skips what scrolls out of sight within the batch). It draws a
# batch a FEED_CHUNK per turn of the loop, plus what was read since its last turn (so a flood
# faster than the model cannot leave it behind), and the session reads in between. Drawn at
# once, 1 MiB of coloured output kept the PTY unread for 15 ms (``bench/flood_echo.py``).
MODEL_LAG_S = 0.05
MODEL_LAG_BYTES = 1 << 20
MODEL_STEP_CHUNKS = 1
EVENT_LIMIT = 1000
HELLO_TIMEOUT = 10.0
EXIT_DRAIN = 1.0  # how long to wait for the PTY's last bytes after the child is reaped
FLUSH_TIMEOUT = 2.0
WRITE_HIGH, WRITE_LOW = 1 << 20, 256 << 10


class _HubConnection(asyncio.Protocol):
    """One socket connection: a candidate until its hello, then (maybe) the session's hub."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.transport: asyncio.WriteTransport | None = None
        self.decoder = FrameDecoder(MAX_FRAME)
        self.active = False
        self.watching = False  # a read-only watcher (``watchers.py``), not a hub
        self.wants_output = True  # a hub may ask for events only (``output``)
        self.paused = False
        self.closing = False
        self.offset = 0
        self.event_seq = 0
        self.resumed = asyncio.Event()
        self.lost = asyncio.Event()
        self._hello_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(HELLO_TIMEOUT, self.fail, "no hello within 10 s")
        self.session._pending.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            for frame in self.decoder.feed(data):
                self.session._on_frame(self, frame)
                if self.closing:
                    return
        except ProtocolError as e:
            self.fail(str(e))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._hello_timer:
            self._hello_timer.cancel()
        self.lost.set()
        self.resumed.set()
        self.session._on_connection_lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.resumed.set()
        if self.watching:
            self.session._watchers.pump()
        else:
            self.session._pump()

    def activate(self, offset: int, event_seq: int) -> None:
        self.active = True
        self.offset = offset
        self.event_seq = event_seq
        if self._hello_timer:
            self._hello_timer.cancel()

    def send(self, data: bytes) -> None:
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def send_message(self, message: dict[str, Any]) -> None:
        self.send(encode_message(message))

    def fail(self, message: str) -> None:
        """Tells the peer what it did wrong and disconnects it."""
        if self.closing:
            return
        self.send_message({"type": "error", "message": message})
        self.close()

    def close(self) -> None:
        """Closes after the buffered frames are written."""
        if self.closing:
            return
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    async def close_and_wait(self, timeout_s: float) -> None:
        self.close()
        try:
            await asyncio.wait_for(self.lost.wait(), timeout_s)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


class _Ready:
    """The optional pipe on which the process tells its spawner how start-up went."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)

    def send(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (json.dumps(message) + "\n").encode())
        except OSError:
            self.close()  # the spawner is gone; carry on without it

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


# Agents may print as fast as they like; the hub that routes their output must stay
# responsive. With Linux autogroups every new session (setsid) gets its own CPU share, so 20
# flooding agents took ~95% of the CPU from the hub (measured: p99 timer jitter 36 ms). So
# each layer runs ahead of the one that feeds it: the hub at nice 0 (with a short scheduler
# slice, ``botster/base/cpu.py``), session processes at SESSION_NICE, their programs at
# PROGRAM_NICE (the process, plus its autogroup where there are autogroups). Issue 11, on 2
# cores, with the hub's short slice: sessions at nice 5 keep up better with a program
# printing `yes` (0.84-1.03x a plain PTY reader's speed to a client; at nice 7, 0.82-0.87x;
# at 10, 0.72-0.88x), and 20 agents flooding leave the hub's timers a p99 jitter of 5 ms (`yes`)
# and 10-14 ms (base64 lines; sessions at nice 0 without the short slice: 38-53 ms). The
# price: on a loaded machine an agent's work gets a smaller share than a nice-0 program's,
# and one flooding agent is read a little slower: base64 lines into the hub went at 0.74x a
# bare reader's speed against 0.80x with sessions at nice 0, `yes` to a client 0.84-0.91x
# against 0.93-1.00x; but with sessions at nice 0, 20 agents flooding base64 lines left the
# hub's timers a p99 jitter of 21-24 ms against 10-11 ms (`yes`: 2-3 ms either way).
SESSION_NICE = 5
PROGRAM_NICE = 10
# An unprivileged user may change an autogroup's nice once per 100 ms, system-wide (EAGAIN
# otherwise): when agents start together, each session retries until both of its land.
AUTOGROUP_RETRY_S = 0.15
AUTOGROUP_TRIES = 100


def _take_controlling_tty() -> None:  # runs in the child between fork and exec
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    _nice_at_least(PROGRAM_NICE)


def _nice_at_least(nice: int) -> None:
    """Nices this process to `nice` unless it is nicer already (its autogroup is
    ``Session._nice_autogroups``'s)."""
    with contextlib.suppress(OSError):
        os.nice(max(0, nice - os.nice(0)))


def _nice_autogroup(pid: int, nice: int) -> bool:
    """Sets the autogroup nice of `pid`, a session leader, to `nice`.

    Returns:
        False when the kernel asks to try again later (EAGAIN), True otherwise: done, or not
        possible here (no autogroups, no /proc, the process gone).
    """
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as e:
        return e.errno != errno.EAGAIN
    return True


class Session:
    """One session: the child in its PTY, the output ring, the screen model and the socket.

    Args:
        config: what to run (validated).
        runtime_dir: the directory holding ``sessions/``.
        cwd: the child's working directory (absolute).
    """

    def __init__(self, config: SpawnConfig, runtime_dir: Path, cwd: str) -> None:
        self.config = config
        self.id = config.session_id or new_session_id()
        self.runtime_dir = runtime_dir
        self.cwd = cwd
        self.socket_path = socket_path(runtime_dir, self.id)
        self.info_path = info_path(runtime_dir, self.id)
        self.rows, self.cols = config.rows, config.cols
        # time, not datetime: datetime costs every session ~0.4 MB for this one line
        now = time.time()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (
            f".{int(now % 1 * 1e6):06d}Z"
        )
        self._ring = OutputRing(config.buffer_size)
        self._term = make_terminal(config.rows, config.cols, config.scrollback)
        # The model lags the output (it draws after forwarding, in batches, a few KiB per turn
        # of the loop) and catches up before anyone looks at it (``_model``): bytes never wait
        # for the model.
        self._model_at = 0  # output offset handed to the model
        self._model_steps: Iterator[None] | None = None  # the batch it is drawing
        self._model_owed = 0  # output read since the model's last step, during a batch
        self._model_next: asyncio.Handle | None = None  # its next step
        self._model_timer: asyncio.TimerHandle | None = None  # the batch after MODEL_LAG_S
        self._read_view = memoryview(bytearray(READ_SIZE))
        self._events: deque[dict[str, Any]] = deque()
        self._seq = 0
        self._hub_seq = 0  # the last event sent to a hub that has since gone
        self._conn: _HubConnection | None = None
        self._pending: set[_HubConnection] = set()
        self._master = -1
        self._child: subprocess.Popen[bytes] | None = None
        self._status: tuple[int, int | None] | None = None
        # Whether this process's autogroup is its own to renice (``main``); the child's always
        # is (start_new_session).
        self.own_autogroup = False
        self._master_eof = False
        self._input: InputQueue | None = None  # once the child runs
        self._tasks: set[asyncio.Task[Any]] = set()
        self._orphan: asyncio.TimerHandle | None = None
        self._drain: asyncio.TimerHandle | None = None
        self._stopping = False
        self._reaped = asyncio.Event()
        self._exit_reported = asyncio.Event()
        self._socket_ino = 0
        self._watchers = Watchers(self.id, self._ring, self._screen)
        self._handlers: dict[str, Callable[[_HubConnection, dict[str, Any]], None]] = {
            "watch_ticket": self._on_watch_ticket,
            "output": self._on_output_wanted,
            "unwatch": self._on_unwatch,
            "resize": self._on_resize,
            "get_snapshot": self._on_get_snapshot,
            "get_text": self._on_get_text,
            "ping": self._on_ping,
            "kill": self._on_kill,
            "close": self._on_close,
            "ack_exit": self._on_ack_exit,
        }

    @property
    def child_pid(self) -> int:
        return self._child.pid if self._child else 0

    async def run(self, ready: _Ready) -> str:
        """Serves until the session ends; returns why it ended.

        Raises:
            SessionError: the socket is taken by a live session or the child cannot start.
        """
        self._loop = asyncio.get_running_loop()
        self._heap = HeapTrimmer(self._loop)  # the heap a flood freed goes back once it is over
        self._done: asyncio.Future[str] = self._loop.create_future()
        sessions_dir(self.runtime_dir, create=True)
        await self._bind()
        try:
            self._install_signals()
            self._spawn()
            write_json_atomic(
                self.info_path,
                {
                    "id": self.id,
                    "pid": os.getpid(),
                    "child_pid": self.child_pid,
                    "socket": str(self.socket_path),
                    "started_at": self.started_at,
                    "cmd": [self.config.cmd, *self.config.args],
                    "cwd": self.cwd,
                    "labels": self.config.labels,
                },
            )
        except BaseException:
            self._server.close()
            self._remove_files()
            if self._child is not None:
                self._signal_child(signal.SIGKILL)
            raise
        ready.send(
            {
                "event": "ready",
                "session_id": self.id,
                "pid": os.getpid(),
                "child_pid": self.child_pid,
                "socket": str(self.socket_path),
            }
        )
        ready.close()
        self._arm_orphan_timer()
        return await self._done

    # -- start-up ---------------------------------------------------------------------------

    async def _bind(self) -> None:
        path = self.socket_path
        if _lexists(path):
            if await _socket_accepts(path):
                raise SessionError(f"session {self.id} is already running ({path})")
            remove_quietly(path)
        old = os.umask(0o177)
        try:
            self._server = await self._loop.create_unix_server(
                lambda: _HubConnection(self), str(path)
            )
        finally:
            os.umask(old)
        self._socket_ino = path.stat().st_ino

    def _install_signals(self) -> None:
        loop = self._loop
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._begin_stop, "signal")
        # A handler, not SIG_IGN: an ignored signal would stay ignored in the child after exec.
        loop.add_signal_handler(signal.SIGHUP, lambda: None)

    def _spawn(self) -> None:
        cfg = self.config
        env = dict(os.environ)
        for key, value in SESSION_MALLOC_ENV.items():
            if env.get(key) == value:
                del env[key]
        env["TERM"] = "xterm-256color"
        for key, value in cfg.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env["BOTSTER_SESSION_ID"] = self.id
        master, slave = os.openpty()
        try:
            _set_winsize(slave, self.rows, self.cols)
            self._child = subprocess.Popen(
                [cfg.cmd, *cfg.args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_take_controlling_tty,
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            os.close(master)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise SessionError(f"cannot start {cfg.cmd!r}: {reason}") from None
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._input = InputQueue(master, self._input_dropped)
        self._loop.add_reader(master, self._on_readable)
        own = [os.getpid()] if self.own_autogroup else []
        self._nice_autogroups([*own, self._child.pid], AUTOGROUP_TRIES)

    def _nice_autogroups(self, pids: list[int], tries: int) -> None:
        child = self._child.pid if self._child is not None and self._status is None else None
        pending = [
            p
            for p in pids
            if (p == os.getpid() or p == child)
            and not _nice_autogroup(p, PROGRAM_NICE if p == child else SESSION_NICE)
        ]
        if pending and tries > 1:
            self._loop.call_later(AUTOGROUP_RETRY_S, self._nice_autogroups, pending, tries - 1)

    # -- the PTY ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        # One preallocated buffer: a flood of reads allocates nothing per read. A PTY read
        # returns at most ~4 KiB, so while the program keeps writing, reads continue into the
        # same buffer (up to READ_SIZE) and the batch is forwarded as one frame: fewer frames
        # for the session and the hub to handle. A short read (an echo, a prompt) found the
        # PTY empty: it goes at once, without a read that would only say so.
        buf, master = self._read_view, self._master
        got = 0
        while got < READ_SIZE:
            try:
                n = os.readv(master, [buf[got:]])
            except BlockingIOError:
                break
            except OSError:  # EIO: every holder of the slave side has closed it
                n = 0
            if n == 0:
                if got:
                    self._on_output(buf[:got])
                self._on_master_eof()
                return
            got += n
            if n < SHORT_READ:
                break
        if got:
            self._on_output(buf[:got])

    def _on_output(self, data: memoryview) -> None:
        self._heap.output(len(data))
        ring = self._ring
        if ring.end + len(data) - self._model_at > ring.capacity:
            self._feed_model()  # the ring is about to drop bytes the model has not drawn
        ring.append(data)
        try:
            # The scanner is cheap and cuts events at their exact offsets; the emulator is
            # what costs, and it runs later (``_model_step``).
            events = self._term.scan(data)
        except Exception:  # a model bug must not lose output or the session
            log.exception("terminal scanner failed on %d bytes", len(data))
            events = []
        for event in events:
            self._emit(event)
        self._watchers.pump()  # first: the client's echo is the latency that shows
        self._pump()
        if self._model_steps is not None:
            self._model_owed += len(data)
        if self._model_next is None:  # not drawing a batch
            if ring.end - self._model_at >= MODEL_LAG_BYTES:
                self._model_next = self._loop.call_soon(self._model_step)
            elif self._model_timer is None:
                self._model_timer = self._loop.call_later(MODEL_LAG_S, self._model_step)

    def _model_step(self) -> None:
        """Draws the next few KiB of the model's batch, taking a new batch if it has none."""
        self._cancel_model_calls()
        steps = self._model_steps or self._model_batch()
        if steps is None:
            return
        chunks = MODEL_STEP_CHUNKS + self._model_owed // FEED_CHUNK
        self._model_owed = 0
        try:
            for _ in range(chunks):
                next(steps)
        except StopIteration:
            self._model_steps = None
        except Exception:  # a model bug must not lose output or the session
            log.exception("terminal model failed on output before offset %d", self._model_at)
            self._model_steps = None
        else:
            self._model_next = self._loop.call_soon(self._model_step)
            return
        lag = self._ring.end - self._model_at
        if lag >= MODEL_LAG_BYTES:
            self._model_next = self._loop.call_soon(self._model_step)
        elif lag:
            self._model_timer = self._loop.call_later(MODEL_LAG_S, self._model_step)

    def _model_batch(self) -> Iterator[None] | None:
        """Hands the model the output it has not had, as a copy: the ring may wrap over it
        while the model draws."""
        ring = self._ring
        if self._model_at >= ring.end:
            return None
        data = ring.read(self._model_at, ring.end - self._model_at)
        self._model_at += len(data)
        self._model_owed = 0
        self._model_steps = self._term.render_steps(data)
        return self._model_steps

    def _cancel_model_calls(self) -> None:
        for call in (self._model_next, self._model_timer):
            if call is not None:
                call.cancel()
        self._model_next = self._model_timer = None

    def _feed_model(self) -> None:
        """Brings the terminal model up to the end of the output, at once."""
        self._cancel_model_calls()
        while (steps := self._model_steps or self._model_batch()) is not None:
            try:
                for _ in steps:
                    pass
            except Exception:  # a model bug must not lose output or the session
                log.exception("terminal model failed on output before offset %d", self._model_at)
            self._model_steps = None

    def _model(self) -> Any:
        """The terminal model, caught up with every byte of output so far."""
        self._feed_model()
        return self._term

    def _on_master_eof(self) -> None:
        self._loop.remove_reader(self._master)
        self._master_eof = True
        if self._status is not None:
            self._report_exit()

    def _write_input(self, data: bytes) -> None:
        if self._input is None or self._master_eof or self._status is not None:
            return
        self._input.write(data)

    def _input_dropped(self, size: int) -> None:
        if self._conn is not None:
            self._conn.send_message({"type": "input_dropped", "bytes": size})

    def _on_input_fd(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        # A hub takes over writing the input (``pty_input``).
        version = message.get("version")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {version!r} is not supported (use 1)")
        if self._input is None or self._master_eof or self._status is not None:
            raise ProtocolError("input_fd: the child has exited")
        if not self._input.empty:  # the hub's keys would overtake these
            raise ProtocolError("input_fd: input is still waiting to be written")
        sock = conn.transport.get_extra_info("socket") if conn.transport is not None else None
        if sock is None:
            raise ProtocolError("input_fd: this connection has no socket to pass it on")
        self._pending.discard(conn)
        conn.activate(0, 0)  # no hello timeout; never the session's hub (self._conn)
        try:
            send_pty_fd(sock, self._master)
        except OSError as e:
            log.warning("input_fd: could not hand over the PTY: %s", e)
        conn.close()

    # -- the child --------------------------------------------------------------------------

    def _on_sigchld(self) -> None:
        if self._child is None or self._status is not None:
            return
        try:
            pid, status = os.waitpid(self._child.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self._child.pid, 0
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        self._child.returncode = code
        self._status = (code, None) if code >= 0 else (128 - code, -code)
        self._reaped.set()
        if self._master_eof:
            self._report_exit()
        else:  # the last output may still be in the PTY; a grandchild may hold it open forever
            self._drain = self._loop.call_later(EXIT_DRAIN, self._report_exit)

    def _report_exit(self) -> None:
        if self._exit_reported.is_set() or self._status is None:
            return
        if self._drain is not None:
            self._drain.cancel()
        self._exit_reported.set()
        code, sig = self._status
        self._emit({"type": "exit", "exit_code": code, "signal": sig})
        self._pump()
        self._watchers.exited(code, sig)

    def _signal_child(self, sig: int) -> None:
        if self._child is None or self._status is not None:
            return  # once reaped, its pid and group id may belong to someone else
        for send in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(self._child.pid, sig)

    async def _kill_child(self, grace: float, *, hangup: bool = False) -> None:
        """SIGTERM (with ``hangup``, SIGHUP first) to the group; SIGKILL after ``grace`` s."""
        if self._child is None or self._status is not None:
            return
        if hangup:
            self._signal_child(signal.SIGHUP)
        self._signal_child(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._reaped.wait(), grace)
        except TimeoutError:
            self._signal_child(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reaped.wait(), 5.0)

    # -- events and output to the hub -------------------------------------------------------

    def _emit(self, event: dict[str, Any]) -> None:
        self._seq += 1
        event["seq"] = self._seq
        event["offset"] = self._ring.end
        self._events.append(event)
        if len(self._events) > EVENT_LIMIT:
            self._events.popleft()

    def _pump(self) -> None:
        """Sends the hub what it has not seen, in order, until done or its socket is full."""
        conn = self._conn
        if conn is None or conn.closing or conn.paused:
            return
        ring, events = self._ring, self._events
        while True:
            event = None
            if events and conn.event_seq < self._seq:
                first = events[0]["seq"]
                if conn.event_seq < first - 1:
                    conn.send_message(
                        {"type": "events_dropped", "count": first - 1 - conn.event_seq}
                    )
                    conn.event_seq = first - 1
                event = events[conn.event_seq - first + 1]
            if conn.offset < ring.start:
                conn.send_message(
                    {"type": "dropped", "bytes": ring.start - conn.offset, "offset": ring.start}
                )
                conn.offset = ring.start
            limit = ring.end if event is None else max(event["offset"], conn.offset)
            if not conn.wants_output:
                conn.offset = max(conn.offset, limit)  # events only: the output is skipped
            while conn.offset < limit:
                data = ring.read(conn.offset, min(limit - conn.offset, OUTPUT_CHUNK))
                conn.send(encode_output(conn.offset, data))
                conn.offset += len(data)
                if conn.paused:
                    return
            if event is None:
                return
            conn.send_message(event)
            conn.event_seq = event["seq"]
            if conn.paused:
                return

    def _caught_up(self, conn: _HubConnection) -> bool:
        return conn.offset >= self._ring.end and conn.event_seq >= self._seq

    # -- hub connections --------------------------------------------------------------------

    def _on_frame(self, conn: _HubConnection, frame: Any) -> None:
        if not conn.active:
            if frame.type != JSON:
                raise ProtocolError("the first frame must be a JSON hello")
            message = frame.json()
            if message.get("type") == "input_fd":
                self._on_input_fd(conn, message)
                return
            if message.get("type") == "watch":
                self._on_watch(conn, message)
                return
            if message.get("type") != "hello":
                raise ProtocolError(f"the first message must be hello, got {message.get('type')!r}")
            self._on_hello(conn, message)
            return
        if conn.watching:
            raise ProtocolError("a watcher sends nothing after its watch (it types via the hub)")
        if conn is not self._conn:
            return  # replaced while its last frames were being read
        if frame.type == INPUT:
            self._write_input(frame.payload)
            return
        if frame.type != JSON:
            raise ProtocolError(f"frame type 0x{frame.type:02x} is not accepted from a hub")
        message = frame.json()
        handler = self._handlers.get(message.get("type"))  # type: ignore[arg-type]
        if handler is None:
            raise ProtocolError(
                f"unknown message type {message.get('type')!r} "
                f"(known: {', '.join(sorted(self._handlers))})"
            )
        handler(conn, message)

    def _on_hello(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        version = message.get("version")
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {version!r} is not supported (use 1)")
        offset = _int_field(message, "output_offset", 0, self._ring.end, default=0)
        output_from = message.get("output_from")
        if output_from == "end":
            offset = self._ring.end  # a hub that adopts: the screen comes from snapshots
        elif output_from is not None:
            raise ProtocolError(f'hello: output_from: expected "end", got {output_from!r}')
        seq = _int_field(message, "event_seq", 0, self._seq, default=0)
        if self._stopping:
            raise ProtocolError("the session is closing")
        self._pending.discard(conn)
        old = self._conn
        if old is not None:
            self._hub_seq = max(self._hub_seq, old.event_seq)
            self._watchers.revoke_hub(old)
            old.send_message({"type": "replaced"})
            old.close()
        self._conn = conn
        conn.activate(offset, seq)
        if self._orphan is not None:
            self._orphan.cancel()
            self._orphan = None
        conn.send_message({**self._metadata(), "output_from": offset})
        self._pump()

    def _on_connection_lost(self, conn: _HubConnection) -> None:
        self._pending.discard(conn)
        if conn.watching:
            self._watchers.lost(conn)
            return
        if conn is self._conn:
            self._watchers.revoke_hub(conn)
            self._hub_seq = max(self._hub_seq, conn.event_seq)
            self._conn = None
            if not self._stopping:
                self._arm_orphan_timer()

    def _metadata(self) -> dict[str, Any]:
        exited = self._exit_reported.is_set() and self._status is not None
        return {
            "type": "metadata",
            "version": PROTOCOL_VERSION,
            "session_id": self.id,
            "pid": os.getpid(),
            "child_pid": self.child_pid,
            "rows": self.rows,
            "cols": self.cols,
            "title": self._term.title,
            "cwd": self._term.cwd,
            "running": not exited,
            "exit_code": self._status[0] if exited and self._status else None,
            "signal": self._status[1] if exited and self._status else None,
            "output_offset": self._ring.end,
            "buffer_start": self._ring.start,
            "event_seq": self._seq,
            "hub_event_seq": self._hub_seq,
            "started_at": self.started_at,
            "cmd": [self.config.cmd, *self.config.args],
            "labels": self.config.labels,
            "watch": 1,  # serves watchers (``watchers.py``), protocol version 1
        }

    def _on_resize(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        rows = _int_field(message, "rows", 1, 1000)
        cols = _int_field(message, "cols", 1, 1000)
        if (rows, cols) == (self.rows, self.cols):
            return
        self.rows, self.cols = rows, cols
        if self._master >= 0:
            with contextlib.suppress(OSError):
                _set_winsize(self._master, rows, cols)
        self._model().resize(rows, cols)

    def _on_get_snapshot(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        term = self._model()
        cursor = term.cursor
        header = {
            "id": message.get("id"),
            "rows": self.rows,
            "cols": self.cols,
            "cursor": {"row": cursor.row, "col": cursor.col, "visible": cursor.visible},
            "alt_screen": term.alt_screen,
            "output_offset": self._ring.end,
            "title": term.title,
            "cwd": term.cwd,
        }
        conn.send(encode_snapshot(header, term.snapshot()))

    def _screen(self) -> tuple[int, int, bytes]:
        return self.rows, self.cols, self._model().snapshot()

    def _on_watch_ticket(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        ticket = self._watchers.issue(conn)
        conn.send_message(
            {
                "type": "watch_ticket",
                "id": message.get("id"),
                "ticket": ticket,
                "socket": str(self.socket_path),
            }
        )

    def _on_output_wanted(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        send = message.get("send")
        if not isinstance(send, bool):
            raise ProtocolError(f"output: send: expected true or false, got {send!r}")
        if send and not conn.wants_output:
            # Output resumes here: what was skipped meanwhile is not sent.
            conn.offset = max(conn.offset, self._ring.end)
            conn.send_message({"type": "output_from", "offset": conn.offset})
        conn.wants_output = send
        self._pump()

    def _on_unwatch(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        ticket = message.get("ticket")
        if not isinstance(ticket, str):
            raise ProtocolError(f"unwatch: ticket: expected a string, got {ticket!r}")
        self._watchers.revoke(ticket)

    def _on_watch(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        if self._stopping:
            raise ProtocolError("the session is closing")
        self._pending.discard(conn)
        conn.activate(self._ring.end, 0)  # no hello timeout; never the session's hub
        conn.watching = True
        self._watchers.watch(conn, message)

    def _on_get_text(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        text = self._model().text()
        conn.send_message({"type": "text", "id": message.get("id"), "text": text})

    def _on_ping(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        conn.send_message({"type": "pong", "id": message.get("id")})

    def _on_kill(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        grace = message.get("grace", self.config.kill_grace)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 1e6:
            raise ProtocolError(f"kill: grace: expected a number of seconds >= 0, got {grace!r}")
        self._start(self._kill_child(float(grace)), "kill")

    def _on_close(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        self._begin_stop("closed")

    def _on_ack_exit(self, conn: _HubConnection, message: dict[str, Any]) -> None:
        if not self._exit_reported.is_set():
            conn.send_message({"type": "error", "message": "ack_exit: the child is still running"})
            return
        self._begin_stop("exit acknowledged")

    # -- the end ----------------------------------------------------------------------------

    def _arm_orphan_timer(self) -> None:
        if self._orphan is not None:
            self._orphan.cancel()
        self._orphan = self._loop.call_later(
            self.config.orphan_timeout, self._begin_stop, "orphan timeout"
        )

    def _start(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())
            if task.get_name() == "stop" and not self._done.done():
                self._remove_files()
                self._done.set_result("failed")

    def _begin_stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._start(self._stop(reason), "stop")

    async def _stop(self, reason: str) -> None:
        if self._orphan is not None:
            self._orphan.cancel()
        await self._kill_child(self.config.kill_grace, hangup=True)
        if self._status is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_reported.wait(), EXIT_DRAIN + 1.0)
        conn = self._conn
        if conn is not None:
            await self._flush(conn, FLUSH_TIMEOUT)
            conn.send_message({"type": "closed", "reason": reason})
            await conn.close_and_wait(FLUSH_TIMEOUT)
        for pending in list(self._pending):
            pending.close()
        self._watchers.close()
        self._server.close()
        self._remove_files()
        if self._master >= 0:
            self._loop.remove_reader(self._master)
            if self._input is not None:
                self._input.close()
            os.close(self._master)
            self._master = -1
        if not self._done.done():
            self._done.set_result(reason)

    async def _flush(self, conn: _HubConnection, timeout_s: float) -> None:
        """Lets a connected hub catch up before the end, for at most ``timeout_s`` seconds."""
        deadline = self._loop.time() + timeout_s
        while conn is self._conn and not conn.closing:
            self._pump()
            remaining = deadline - self._loop.time()
            if self._caught_up(conn) or remaining <= 0:
                return
            conn.resumed.clear()
            try:
                await asyncio.wait_for(conn.resumed.wait(), remaining)
            except TimeoutError:
                return

    def _remove_files(self) -> None:
        with contextlib.suppress(OSError):
            if self.socket_path.stat().st_ino == self._socket_ino:
                self.socket_path.unlink()
        remove_quietly(self.info_path)


def _int_field(
    message: dict[str, Any], key: str, lo: int, hi: int, *, default: int | None = None
) -> int:
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(
            f"{message.get('type')}: {key}: expected an integer from {lo} to {hi}, got {value!r}"
        )
    return value


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


async def _socket_accepts(path: Path) -> bool:
    """Whether something listens on ``path`` (a connect that hangs counts as yes)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except TimeoutError:
        return True
    except OSError:
        return False
    writer.close()
    return True


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m botster.sessions",
        description="Run one Botster session process (a program in a PTY, served on a socket).",
        # A fixed width: the default asks shutil for the terminal's, and shutil brings bz2,
        # lzma and zlib, ~0.6 MB of every session's memory.
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="the spawn config as JSON")
    source.add_argument("--config-file", help="a file holding the spawn config as JSON")
    parser.add_argument("--runtime-dir", help="default: $BOTSTER_RUNTIME_DIR and its fallbacks")
    parser.add_argument("--orphan-timeout", type=float, help="seconds without a hub before exit")
    parser.add_argument("--buffer-size", type=int, help="output ring size in bytes")
    parser.add_argument("--kill-grace", type=float, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("--ready-fd", type=int, help="pipe for start-up reports (JSON lines)")
    parser.add_argument("--daemonize", action="store_true", help="fork so no one must reap us")
    return parser.parse_args(argv)


def _load_config(args: argparse.Namespace) -> SpawnConfig:
    try:
        text = args.config if args.config is not None else Path(args.config_file).read_text()
        raw = json.loads(text)
    except OSError as e:
        raise SessionError(f"cannot read the spawn config: {e}") from None
    except ValueError as e:
        raise SessionError(f"the spawn config is not JSON: {e}") from None
    if isinstance(raw, dict):
        for key in ("orphan_timeout", "buffer_size", "kill_grace"):
            if getattr(args, key) is not None:
                raw[key] = getattr(args, key)
    return SpawnConfig.from_dict(raw)


def main(argv: list[str] | None = None) -> int:
    """Runs one session process; returns the exit status."""
    args = _parse_args(argv)
    ready = _Ready(args.ready_fd)
    try:
        config = _load_config(args)
        runtime = Path(args.runtime_dir) if args.runtime_dir else default_runtime_dir()
        runtime = runtime.expanduser().absolute()
        cwd = os.path.abspath(os.path.expanduser(config.cwd or os.getcwd()))
        if not os.path.isdir(cwd):
            raise SessionError(f"cwd {cwd}: not a directory")
        session = Session(config, runtime, cwd)
    except SessionError as e:
        ready.send({"event": "error", "error": str(e)})
        print(f"botster session: {e}", file=sys.stderr)
        return 2
    _nice_at_least(SESSION_NICE)
    # Only a session leader's autogroup is its own (the daemonized process keeps it):
    # otherwise renicing it would renice whoever started us (the hub, a shell).
    session.own_autogroup = os.getsid(0) == os.getpid()
    if args.daemonize and os.fork() != 0:
        os._exit(0)
    ready.send({"event": "started", "pid": os.getpid()})
    os.chdir("/")
    try:
        asyncio.run(session.run(ready))
    except SessionError as e:
        ready.send({"event": "error", "error": str(e)})
        print(f"botster session {session.id}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        ready.send({"event": "error", "error": f"session process failed: {e!r}"})
        raise
    # On failure the pipe stays open until the process exits: its end of file tells the
    # spawner that nothing is left running.
    return 0
