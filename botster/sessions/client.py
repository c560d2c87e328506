"""The hub side of sessions: start them, find them again, and talk to one.

* ``await spawn_session(config, runtime_dir)`` starts ``python -m botster.sessions`` detached
  (nobody's child: it forks away, so the hub never reaps it) and returns once its socket
  listens and its child runs, or raises SessionError with the session's own reason.
* ``discover_sessions_blocking(runtime_dir)`` (and ``await discover_sessions(...)``, which runs it
  on a thread) lists live sessions from their discovery records and removes stale ones.
* ``await SessionClient.connect(socket_path, seen_offset, seen_event)`` attaches as the session's
  hub (replacing any other), then delivers output and events either to callbacks or through
  ``async for item in client``. Requests: ``write``, ``resize``, ``snapshot``, ``text``,
  ``ping``, ``kill``, ``close``, ``ack_exit``; ``disconnect`` leaves the session running.

What goes over the socket is described in ``botster.sessions.process``. Not here: deciding which
sessions a hub adopts, and routing bytes to clients (the hub's ``pty`` primitive does that).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from botster.base.errors import ProtocolError, SessionError
from botster.base.framing import Frame
from botster.base.loop import loop_only
from botster.base.paths import runtime_dir as default_runtime_dir
from botster.base.pids import pid_alive
from botster.sessions.files import (
    SESSION_MALLOC_ENV,
    SessionInfo,
    read_info,
    remove_quietly,
    sessions_dir,
    socket_path,
    write_json_atomic,
)
from botster.sessions.protocol import (
    JSON,
    MAX_FRAME,
    OUTPUT,
    OUTPUT_CHUNK,
    PROTOCOL_VERSION,
    SNAPSHOT,
    FrameDecoder,
    SpawnConfig,
    decode_output,
    decode_snapshot,
    encode_input,
    encode_message,
    new_session_id,
)
from botster.sessions.pty_input import InputQueue, take_pty_fd

__all__ = [
    "Output",
    "SessionClient",
    "SessionEvent",
    "Snapshot",
    "discover_sessions",
    "discover_sessions_blocking",
    "spawn_session",
]

log = logging.getLogger("botster.sessions")

_QUEUE_HIGH, _QUEUE_LOW = 4 << 20, 1 << 20  # bytes of undelivered output before pause/resume


@dataclass(frozen=True, slots=True)
class Output:
    """PTY output: ``data`` starts at byte ``offset`` of the session's output."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Anything but output, as the session sent it (``data`` holds the JSON message).

    ``type`` is one of the protocol's: title, cwd, notification, bell, exit (these carry
    ``seq`` and ``offset``), dropped, events_dropped, input_dropped, error, replaced, closed;
    and, last of all, ``disconnected`` (``data["error"]`` says why when it was not a clean end).
    """

    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The screen: ``data`` redraws it in a fresh terminal of ``rows`` x ``cols``."""

    data: bytes
    rows: int
    cols: int
    cursor_row: int
    cursor_col: int
    cursor_visible: bool
    alt_screen: bool
    output_offset: int
    title: str
    cwd: str | None


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, client: SessionClient) -> None:
        self.client = client
        self.decoder = FrameDecoder(MAX_FRAME)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self.decoder.feed(data):
                self.client._on_frame(frame)
        except ProtocolError as e:
            log.error("session %s broke the protocol: %s", self.client.session_id, e)
            self.client._error = str(e)
            if self.client._transport is not None:
                self.client._transport.abort()
        finally:
            if self.client._on_read_end_cb is not None:
                self.client._on_read_end_cb()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(exc)


class SessionClient:
    """A hub's connection to one session process. Create it with ``connect``.

    State kept current from what the session sends: ``metadata`` (as of connecting),
    ``output_offset`` (output bytes seen, i.e. where the next output starts), ``event_seq``
    (last event seen), ``title``, ``cwd``, ``exit`` (``{"exit_code", "signal"}`` or None),
    ``rows``, ``cols``. Pass ``output_offset`` and ``event_seq`` to the next ``connect`` to
    continue without gap or duplicate.
    """

    def __init__(
        self,
        on_output: Callable[[Output], None] | None,
        on_event: Callable[[SessionEvent], None] | None,
        on_read_end: Callable[[], None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._on_output_cb = on_output
        self._on_event_cb = on_event
        self._on_read_end_cb = on_read_end
        self._transport: asyncio.Transport | None = None
        self._metadata_future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._queue: deque[Output | SessionEvent] = deque()
        self._queued_bytes = 0
        self._reading_paused = False
        self._wakeup = asyncio.Event()
        self._lost = asyncio.Event()
        self._error: str | None = None
        self._pty: InputQueue | None = None  # the session's PTY, when this hub writes input
        self.metadata: dict[str, Any] = {}
        self.output_offset = 0
        self.event_seq = 0
        self.title = ""
        self.cwd: str | None = None
        self.exit: dict[str, Any] | None = None
        self.rows = 0
        self.cols = 0
        self.socket_path = Path()

    @classmethod
    async def connect(
        cls,
        socket_path: Path | str,
        seen_offset: int = 0,
        seen_event: int = 0,
        *,
        on_output: Callable[[Output], None] | None = None,
        on_event: Callable[[SessionEvent], None] | None = None,
        on_read_end: Callable[[], None] | None = None,
        timeout_s: float = 5.0,
        live_only: bool = False,
    ) -> SessionClient:
        """Connects as the session's hub and waits for its metadata.

        Args:
            socket_path: the session's socket.
            seen_offset: output bytes already seen; the session sends the rest it still has.
            seen_event: the last event ``seq`` already seen.
            on_output: called with each Output on the loop; without it, use ``async for``.
            on_event: called with each SessionEvent; without it, use ``async for``.
            on_read_end: called after the output and events of each read from the socket
                have been delivered: where what they brought can be sent on at once, as one
                batch, without waiting for another loop turn.
            timeout_s: seconds for connecting and the metadata.
            live_only: skip the output kept so far (`seen_offset` is ignored): only output
                produced from now on arrives. A hub that adopts a session needs no replay of
                its ring; a client that attaches later gets the screen as a snapshot.

        Returns:
            The connected client (``metadata`` filled in).

        Raises:
            SessionError: nothing listens there, or the session refused the hello.
        """
        client = cls(on_output, on_event, on_read_end)
        client.socket_path = Path(socket_path)
        client.output_offset = seen_offset
        client.event_seq = seen_event
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_unix_connection(lambda: _ClientProtocol(client), str(socket_path)),
                timeout_s,
            )
        except (OSError, TimeoutError) as e:
            raise SessionError(f"cannot connect to the session at {socket_path}: {e}") from None
        # Asked for at the same time as the metadata: no input can be written before
        # ``connect`` returns, so none can be overtaken (``pty_input``).
        pty = asyncio.ensure_future(_take_pty_quietly(client.socket_path, timeout_s))
        client._send(
            encode_message(
                {
                    "type": "hello",
                    "version": PROTOCOL_VERSION,
                    "output_offset": seen_offset,
                    "event_seq": seen_event,
                    **({"output_from": "end"} if live_only else {}),
                }
            )
        )
        try:
            await asyncio.wait_for(asyncio.shield(client._metadata_future), timeout_s)
        except TimeoutError:
            client._metadata_future.cancel()
            client._abort()
            _close_quietly(await pty)
            raise SessionError(f"the session at {socket_path} sent no metadata") from None
        except SessionError:
            client._abort()
            _close_quietly(await pty)
            raise
        fd = await pty
        if fd is not None and client.running and client.connected:
            client._pty = InputQueue(fd, client._input_dropped)
        else:
            _close_quietly(fd)
        return client

    # -- state ------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return str(self.metadata.get("session_id", ""))

    @property
    def pid(self) -> int:
        """The session process."""
        return int(self.metadata.get("pid", 0))

    @property
    def child_pid(self) -> int:
        """The program in the PTY."""
        return int(self.metadata.get("child_pid", 0))

    @property
    def running(self) -> bool:
        """Whether the child runs (as far as this connection knows)."""
        return self.exit is None

    @property
    def connected(self) -> bool:
        return not self._lost.is_set()

    @property
    def writes_pty(self) -> bool:
        """Whether input goes straight to the session's PTY (else as INPUT frames)."""
        return self._pty is not None

    # -- requests ---------------------------------------------------------------------------

    @loop_only
    def write(self, data: bytes) -> None:
        """Sends input to the child (never blocks; what it has not read yet is queued).

        Raises:
            SessionError: the connection is closed.
        """
        self._check_open("write")
        if self._pty is not None:
            self._pty.write(data)
            return
        view = memoryview(data)
        for i in range(0, len(view), OUTPUT_CHUNK):
            self._send(encode_input(bytes(view[i : i + OUTPUT_CHUNK])))

    @loop_only
    def resize(self, rows: int, cols: int) -> None:
        """Resizes the PTY (the child gets SIGWINCH) and the session's screen model.

        Raises:
            ValueError: a size outside 1-1000.
            SessionError: the connection is closed.
        """
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ValueError(
                    f"resize: {name}: expected an integer from 1 to 1000, got {value!r}"
                )
        self._check_open("resize")
        self.rows, self.cols = rows, cols
        self._send(encode_message({"type": "resize", "rows": rows, "cols": cols}))

    async def snapshot(self, timeout_s: float = 5.0) -> Snapshot:
        """The current screen.

        Raises:
            SessionError: the connection closed or the session did not answer in time.
        """
        header, data = await self._request("get_snapshot", timeout_s)
        cursor = header.get("cursor") or {}
        return Snapshot(
            data=data,
            rows=int(header["rows"]),
            cols=int(header["cols"]),
            cursor_row=int(cursor.get("row", 0)),
            cursor_col=int(cursor.get("col", 0)),
            cursor_visible=bool(cursor.get("visible", True)),
            alt_screen=bool(header.get("alt_screen")),
            output_offset=int(header["output_offset"]),
            title=str(header.get("title") or ""),
            cwd=header.get("cwd"),
        )

    async def text(self, timeout_s: float = 5.0) -> str:
        """The visible screen as plain text."""
        message = await self._request("get_text", timeout_s)
        return str(message.get("text", ""))

    @property
    def serves_watchers(self) -> bool:
        """Whether the session streams its terminal to local clients itself (``watchers.py``);
        sessions started before watchers existed do not."""
        return self.metadata.get("watch") == 1

    async def watch_ticket(self, timeout_s: float = 5.0) -> tuple[str, str]:
        """A one-time ticket with which a local client may watch the terminal straight from
        the session; returns (ticket, the session's socket path).

        Raises:
            SessionError: the session did not answer, or the connection is closed.
        """
        message = await self._request("watch_ticket", timeout_s)
        return str(message["ticket"]), str(message["socket"])

    @loop_only
    def send_output(self, send: bool) -> None:
        """Asks the session for OUTPUT frames (true, from now on) or for events only."""
        self._check_open("output")
        self._send(encode_message({"type": "output", "send": send}))

    @loop_only
    def unwatch(self, ticket: str) -> None:
        """Ends the watcher that used `ticket` (or voids it if unused); quiet once closed."""
        if self.connected:
            self._send(encode_message({"type": "unwatch", "ticket": ticket}))

    async def ping(self, timeout_s: float = 5.0) -> None:
        """A round trip: once it returns, everything the session sent before has arrived."""
        await self._request("ping", timeout_s)

    @loop_only
    def kill(self, grace: float | None = None) -> None:
        """SIGTERM to the child's process group, SIGKILL after ``grace`` s (default: config's).

        The exit arrives as an ``exit`` event.
        """
        self._check_open("kill")
        message: dict[str, Any] = {"type": "kill"}
        if grace is not None:
            message["grace"] = grace
        self._send(encode_message(message))

    async def close(self, timeout_s: float = 10.0) -> None:
        """Ends the session: kills the child, lets the exit event through, waits for the end.

        Raises:
            SessionError: the session did not finish within ``timeout_s``.
        """
        await self._finish("close", timeout_s)

    async def ack_exit(self, timeout_s: float = 10.0) -> None:
        """After the exit event: tells the session it may go, and waits until it has.

        Raises:
            SessionError: no exit has been seen yet, or the session did not finish in time.
        """
        if self.exit is None:
            raise SessionError(f"ack_exit: the child of session {self.session_id} is still running")
        await self._finish("ack_exit", timeout_s)

    async def disconnect(self) -> None:
        """Leaves the session running (a hub restart looks like this); waits for the close."""
        if self._transport is not None:
            self._transport.close()
        await self._lost.wait()

    async def wait_closed(self) -> None:
        """Returns once the connection has ended, for whatever reason."""
        await self._lost.wait()

    # -- async iteration (when no callbacks were given) -------------------------------------

    def __aiter__(self) -> SessionClient:
        return self

    async def __anext__(self) -> Output | SessionEvent:
        while not self._queue:
            if self._lost.is_set():
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._queue.popleft()
        if isinstance(item, Output):
            self._queued_bytes -= len(item.data)
            if self._reading_paused and self._queued_bytes <= _QUEUE_LOW and self._transport:
                self._reading_paused = False
                self._transport.resume_reading()
        return item

    # -- internals --------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._lost.is_set() or self._transport is None or self._transport.is_closing():
            raise SessionError(f"{what}: the connection to session {self.session_id} is closed")

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _input_dropped(self, size: int) -> None:
        self._deliver(SessionEvent("input_dropped", {"type": "input_dropped", "bytes": size}))

    def _release_pty(self) -> None:
        pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()
            _close_quietly(pty.fd)

    async def _request(self, kind: str, timeout_s: float) -> Any:
        self._check_open(kind)
        self._next_id += 1
        rid = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = future
        self._send(encode_message({"type": kind, "id": rid}))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise SessionError(f"{kind}: session {self.session_id} did not answer") from None
        finally:
            self._waiters.pop(rid, None)

    async def _finish(self, kind: str, timeout_s: float) -> None:
        self._check_open(kind)
        self._send(encode_message({"type": kind}))
        try:
            await asyncio.wait_for(self._lost.wait(), timeout_s)
        except TimeoutError:
            raise SessionError(f"{kind}: session {self.session_id} did not finish") from None

    def _on_frame(self, frame: Frame) -> None:
        ftype, payload = frame.type, frame.payload
        if ftype == OUTPUT:
            offset, data = decode_output(payload)
            if offset != self.output_offset:
                raise ProtocolError(f"output at offset {offset}, expected {self.output_offset}")
            self.output_offset += len(data)
            self._deliver(Output(offset, data))
        elif ftype == SNAPSHOT:
            header, data = decode_snapshot(payload)
            self._resolve(header.get("id"), (header, data))
        elif ftype == JSON:
            self._on_message(frame.json())
        else:
            raise ProtocolError(f"frame type 0x{ftype:02x} is not sent by sessions")

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "metadata":
            self.metadata = message
            if isinstance(message.get("output_from"), int):
                self.output_offset = message["output_from"]  # where this connection's output starts
            self.title = message.get("title") or ""
            self.cwd = message.get("cwd")
            self.rows, self.cols = message.get("rows", 0), message.get("cols", 0)
            if not message.get("running", True):
                self.exit = {"exit_code": message.get("exit_code"), "signal": message.get("signal")}
            if not self._metadata_future.done():
                self._metadata_future.set_result(message)
            return
        if kind in ("pong", "text", "watch_ticket"):
            self._resolve(message.get("id"), message)
            return
        if kind == "error" and not self._metadata_future.done():
            self._metadata_future.set_exception(SessionError(str(message.get("message"))))
            return
        if isinstance(message.get("seq"), int):
            self.event_seq = message["seq"]
        if kind in ("dropped", "output_from"):
            self.output_offset = int(message["offset"])
        elif kind == "title":
            self.title = str(message.get("title", ""))
        elif kind == "cwd":
            self.cwd = message.get("cwd")
        elif kind == "exit":
            self.exit = {"exit_code": message.get("exit_code"), "signal": message.get("signal")}
            self._release_pty()
        self._deliver(SessionEvent(str(kind), message))

    def _resolve(self, rid: Any, value: Any) -> None:
        future = self._waiters.get(rid) if isinstance(rid, int) else None
        if future is not None and not future.done():
            future.set_result(value)

    def _deliver(self, item: Output | SessionEvent) -> None:
        callback: Callable[[Any], None] | None
        callback = self._on_output_cb if isinstance(item, Output) else self._on_event_cb
        if callback is not None:
            try:
                callback(item)
            except Exception:
                log.exception("session %s: a %s callback failed", self.session_id, type(item))
            return
        self._queue.append(item)
        self._wakeup.set()
        if isinstance(item, Output):
            self._queued_bytes += len(item.data)
            if not self._reading_paused and self._queued_bytes > _QUEUE_HIGH and self._transport:
                self._reading_paused = True  # the session holds the rest in its ring
                self._transport.pause_reading()

    def _on_lost(self, exc: Exception | None) -> None:
        self._release_pty()
        error = self._error or (str(exc) if exc else None)
        if not self._metadata_future.done():
            self._metadata_future.set_exception(
                SessionError(f"the session closed the connection{': ' + error if error else ''}")
            )
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(SessionError(f"session {self.session_id}: connection lost"))
        if self._metadata_future.done() and not self._metadata_future.exception():
            self._deliver(SessionEvent("disconnected", {"type": "disconnected", "error": error}))
        self._lost.set()
        self._wakeup.set()


async def _take_pty_quietly(socket_path: Path, timeout_s: float) -> int | None:
    try:
        return await take_pty_fd(socket_path, timeout_s)
    except SessionError as e:  # e.g. a session of an older version: INPUT frames it is
        log.debug("session at %s: %s; input goes as frames", socket_path, e)
        return None


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


async def spawn_session(
    spawn_config: SpawnConfig | dict[str, Any],
    runtime_dir: Path | str | None = None,
    *,
    timeout_s: float = 10.0,
) -> tuple[str, Path]:
    """Starts a detached session process and waits until it serves.

    The config travels in a 0600 file (never on the command line, where ``ps`` shows it), which
    is removed once the session has answered.

    Args:
        spawn_config: a SpawnConfig or its JSON form (see ``protocol.SpawnConfig``).
        runtime_dir: default ``$BOTSTER_RUNTIME_DIR`` and its fallbacks.
        timeout_s: seconds until the session must be ready.

    Returns:
        ``(session_id, socket_path)``.

    Raises:
        SessionError: a bad config, a session with that id already running, a program that
            cannot start, or no answer within ``timeout_s`` (the session is then killed).
    """
    config = (
        spawn_config
        if isinstance(spawn_config, SpawnConfig)
        else SpawnConfig.from_dict(spawn_config)
    )
    if config.session_id is None:
        config = dataclasses.replace(config, session_id=new_session_id())
    sid = str(config.session_id)
    runtime = Path(runtime_dir) if runtime_dir else default_runtime_dir()
    sock = socket_path(runtime, sid)
    config_file = sessions_dir(runtime) / f"{sid}.spawn.json"

    def write_config_blocking() -> None:
        sessions_dir(runtime, create=True)
        write_json_atomic(config_file, config.to_dict())

    await asyncio.to_thread(write_config_blocking)
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    pid = 0
    proc: asyncio.subprocess.Process | None = None
    transport: asyncio.BaseTransport | None = None
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "botster.sessions",
                "--runtime-dir",
                str(runtime),
                "--config-file",
                str(config_file),
                "--ready-fd",
                str(write_fd),
                "--daemonize",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(write_fd,),
                env={**os.environ, **SESSION_MALLOC_ENV},
            )
        except OSError as e:
            raise SessionError(f"cannot start a session process: {e}") from None
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        read_fd = -1
        deadline = loop.time() + timeout_s
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if pid:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)  # it kills its child and cleans up
                raise SessionError(
                    f"session {sid} did not become ready within {timeout_s:g} s"
                ) from None
            if not line:
                status = await proc.wait()
                raise SessionError(
                    f"session {sid} exited (status {status}) before it was ready"
                    if status
                    else f"session {sid} ended before it was ready"
                )
            report = json.loads(line)
            if report.get("event") == "started":
                pid = int(report["pid"])
            elif report.get("event") == "error":
                with contextlib.suppress(TimeoutError):  # end of file: the process is gone
                    await asyncio.wait_for(reader.read(), max(0.0, deadline - loop.time()))
                raise SessionError(str(report.get("error")))
            elif report.get("event") == "ready":
                break
        return sid, sock
    finally:
        if transport is not None:
            transport.close()
        if read_fd >= 0:
            os.close(read_fd)
        if proc is not None:  # the forking parent exits at once; never leave it unreaped
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(remove_quietly, config_file)


def discover_sessions_blocking(runtime_dir: Path | str | None = None) -> list[SessionInfo]:
    """Live sessions under ``runtime_dir``, from their discovery records (blocks on files).

    Records whose process is gone are removed with their socket; so are sockets without a
    record that refuse connections. A socket that still accepts is never removed.

    Returns:
        One SessionInfo per live session, sorted by start time.
    """
    root = sessions_dir(runtime_dir or default_runtime_dir())
    if not root.is_dir():
        return []
    found: list[SessionInfo] = []
    for path in root.glob("*.json"):
        if path.name.endswith(".spawn.json") or path.name.startswith("."):
            continue
        info = read_info(path)
        if info is None:
            continue
        if pid_alive(info.pid) and _is_session_process(info.pid):
            found.append(info)
            continue
        remove_quietly(path)
        if info.socket.parent == root and not _accepts(info.socket):
            remove_quietly(info.socket)
    for sock in root.glob("*.sock"):
        if not sock.with_suffix(".json").exists() and not _accepts(sock):
            remove_quietly(sock)
    return sorted(found, key=lambda i: (i.started_at, i.id))


async def discover_sessions(runtime_dir: Path | str | None = None) -> list[SessionInfo]:
    """``discover_sessions_blocking`` on a worker thread."""
    return await asyncio.to_thread(discover_sessions_blocking, runtime_dir)


def _is_session_process(pid: int) -> bool:
    """Guards against pid reuse: the process must be a ``botster.sessions`` (when /proc says)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"botster.sessions" in cmdline


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except TimeoutError:
            return True
        except OSError:
            return False
        return True
