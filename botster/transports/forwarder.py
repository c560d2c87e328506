"""PTY forwarders: the Python route from a session's output to one client (never via Lua).

Two kinds, one interface (``id``, ``session``, ``active``, ``stop``): ``PtyForwarder`` relays
the session's output through the hub; ``DirectForwarder`` lets a local client that asked for
it (hello ``"direct_terminal": true``) read the terminal straight from the session process
(``sessions/watchers.py``), one process hop fewer per byte, and falls back to a
``PtyForwarder`` when the client cannot reach the session. What follows is the relay.

A forwarder sends the client, in order: a SNAPSHOT frame of the exact current screen, then
every byte of output produced after that snapshot (output that arrives while the snapshot is
being taken is held and trimmed at the snapshot's offset, so nothing is lost or repeated),
then PROCESS_EXITED when the program ends. Output is batched: the chunks one read from the
session brings leave as one frame, in order, at the end of that read (``read_end_listeners``):
an echo goes out in the same loop turn it came in. Forwarders of one session that are level
share that frame: it is encoded once (``HubSession.output_frame``) and the same bytes are
written to every watcher.

A client that reads slower than the program writes is not fed an ever-longer queue: past
``HIGH_WATER`` bytes waiting in its socket's buffer (the kernel's share is kept small by the
socket server), output is held; once more than ``RESYNC_BYTES`` are held, they are dropped
and, when the client has drained, it gets a fresh SNAPSHOT of the exact screen instead (as
tmux does). The client sees every state it has time to show and always ends on the exact
screen; the session itself keeps all output in its ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from botster.base.errors import SessionError
from botster.base.framing import (
    PROCESS_EXITED,
    PTY_OUTPUT,
    SNAPSHOT,
    encode_frame,
    encode_session,
)
from botster.sessions.client import Output
from botster.sessions.manager import HubSession

__all__ = ["DirectForwarder", "PtyForwarder"]

log = logging.getLogger("sessions")

Sink = Callable[[bytes], bool]  # takes an encoded frame; False once the client is gone
_ids = itertools.count(1)
MAX_BATCH = 256 << 10
# Both small: whatever waits for a client is latency between a keystroke and its echo. A
# client that cannot keep up is better served by a fresh screen (a snapshot is the size of
# one screen, tens of KiB) than by the backlog of every state it had no time to show.
_FRAME_HEADER = struct.Struct("<IB")
HIGH_WATER = 64 << 10  # bytes queued for the client before live output is held
RESYNC_BYTES = 128 << 10  # held bytes past which they are replaced by a fresh snapshot


class PtyForwarder:
    """Forwards one session's terminal to one sink.

    Args:
        session: the session.
        sink: sends an encoded frame to the client; returns False when it can't.
    """

    def __init__(
        self,
        session: HubSession,
        sink: Sink,
        queued: Callable[[], int] | None = None,
        drained: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.id = f"fwd_{next(_ids)}"
        self.session = session
        self.sink = sink
        self._queued = queued  # bytes waiting in the client's socket
        self._drained = drained  # waits until the client has read most of them
        self._waiting: asyncio.Task[None] | None = None
        self._resync = False
        self.active = True
        self._held: list[Output] | None = []  # output while the snapshot is in flight
        self._next = 0  # first output offset the client has not seen
        self._batch: list[bytes] = []
        self._batch_len = 0
        # Output offset of the batch's first byte; None when the batch is not one contiguous
        # range of the output (a gap: the session dropped bytes), so its frame is not shared.
        self._batch_start: int | None = 0
        self._sid = struct.pack("<H", len(session.id.encode())) + session.id.encode()
        self._exit_sent = False
        session.add_output_listener(self._on_output)
        session.read_end_listeners.append(self._flush)
        session.exit_listeners.append(self.process_exited)
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        s = self.session
        try:
            snap = await s.client.snapshot()
        except (SessionError, ConnectionError, TimeoutError) as e:
            log.warning("forwarder %s: no snapshot of %s: %s", self.id, s.id, e)
            self.stop()
            return
        if not self.active:
            return
        header = struct.pack("<HH", snap.rows, snap.cols)
        if not self.sink(encode_frame(SNAPSHOT, encode_session(s.id, header + snap.data))):
            self.stop()
            return
        self._next = snap.output_offset
        held, self._held = self._held or [], None
        for out in held:
            self._on_output(s, out)
        self._flush()
        if not s.running:
            self._send_exit()

    def _on_output(self, session: HubSession, out: Output) -> None:
        if not self.active:
            return
        if self._held is not None:
            self._held.append(out)
            return
        if out.end <= self._next:
            return  # already in the snapshot
        start = max(self._next, out.offset)
        data = out.data[start - out.offset :] if start > out.offset else out.data
        if not self._batch:
            self._batch_start = start
        elif start != self._next:
            self._batch_start = None
        self._next = out.end
        self._batch.append(data)
        self._batch_len += len(data)
        if self._waiting is not None:
            if self._batch_len > RESYNC_BYTES:
                self._drop_batch()
                self._resync = True
            return
        if self._batch_len >= MAX_BATCH:
            self._flush()
        # else the end of this read flushes (``_flush`` is a read-end listener)

    def _flush(self) -> None:
        if not self._batch or not self.active or self._waiting is not None:
            return
        if self._queued is not None and self._queued() > HIGH_WATER:
            self._hold()
            return
        frame = self._output_frame()
        self._drop_batch()
        if not self.sink(frame):
            self.stop()

    def _output_frame(self) -> bytes:
        """The batch as one PTY_OUTPUT frame: the session's shared one when another forwarder
        already built it for the same range, else built here (one copy) and shared."""
        s, start, end = self.session, self._batch_start, self._next
        shared = s.output_frame
        if start is not None and shared is not None and shared[0] == start and shared[1] == end:
            return shared[2]
        n = len(self._sid) + self._batch_len
        frame = b"".join([_FRAME_HEADER.pack(n + 1, PTY_OUTPUT), self._sid, *self._batch])
        if start is not None:
            s.output_frame = (start, end, frame)
        return frame

    def _drop_batch(self) -> None:
        self._batch = []
        self._batch_len = 0

    def _hold(self) -> None:
        """The client is behind: wait until it drains; too much held becomes a resync."""
        if self._batch_len > RESYNC_BYTES:
            self._drop_batch()
            self._resync = True
        if self._waiting is None and self._drained is not None:
            self._waiting = asyncio.get_running_loop().create_task(self._wait_drained())

    async def _wait_drained(self) -> None:
        try:
            assert self._drained is not None
            while self._queued is not None and self._queued() > HIGH_WATER // 4:
                await self._drained()
                await asyncio.sleep(0)  # drain() returns at once unless writing is paused
        except (ConnectionError, asyncio.CancelledError):
            self.stop()
            return
        finally:
            self._waiting = None
        if not self.active:
            return
        if self._resync:
            self._resync = False
            self._drop_batch()
            self._held = []  # output from now on waits for the new snapshot
            self._task = asyncio.get_running_loop().create_task(self._start())
        else:
            self._flush()
            if not self.session.running:
                self._send_exit()

    def process_exited(self) -> None:
        """Called when the program ends: flushes output, then sends PROCESS_EXITED."""
        if self._held is None:
            self._send_exit()

    def _send_exit(self) -> None:
        if self._exit_sent or not self.active or self._waiting is not None:
            return  # while held, the exit is sent once the client has drained
        self._flush()
        if self._batch or self._waiting is not None:
            return
        self._exit_sent = True
        code = self.session.exit_code
        code = -1 if code is None or self.session.signal else int(code)
        self.sink(
            encode_frame(PROCESS_EXITED, encode_session(self.session.id, struct.pack("<i", code)))
        )

    def stop(self) -> None:
        """Stops forwarding (idempotent)."""
        if not self.active:
            return
        self.active = False
        self.session.remove_output_listener(self._on_output)
        with contextlib.suppress(ValueError):
            self.session.read_end_listeners.remove(self._flush)
        with contextlib.suppress(ValueError):
            self.session.exit_listeners.remove(self.process_exited)
        if not self._task.done():
            self._task.cancel()
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()


class DirectForwarder:
    """Routes a session's terminal to a local client through the session's own socket.

    The hub takes a one-time ticket from the session and sends the client ``{"type":
    "terminal_direct", "session_id", "socket", "ticket"}``; the client connects there and gets
    SNAPSHOT, PTY_OUTPUT and PROCESS_EXITED frames exactly as a ``PtyForwarder`` would send
    them. Stopping revokes the ticket, which closes the client's stream. When the session
    cannot serve watchers, or the client reports it could not connect (``fall_back``), the
    forwarder relays through the hub instead; its id stays the same.

    Args:
        session: the session.
        client: the client (a ``ChannelClient``: ``send_json``, ``send_frame``, ``queued``,
            ``drained``).
    """

    def __init__(self, session: HubSession, client: Any) -> None:
        self.id = f"fwd_{next(_ids)}"
        self.session = session
        self.client = client
        self.active = True
        self.ticket: str | None = None
        self.relay: PtyForwarder | None = None
        session.exit_listeners.append(self._on_exit)
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        s = self.session
        if not s.client.serves_watchers:
            self.fall_back("the session does not serve watchers")
            return
        try:
            ticket, path = await s.client.watch_ticket()
        except (SessionError, ConnectionError, TimeoutError) as e:
            self.fall_back(f"no watch ticket: {e}")
            return
        if not self.active:
            s.client.unwatch(ticket)
            return
        self.ticket = ticket
        message = {"type": "terminal_direct", "session_id": s.id, "socket": path, "ticket": ticket}
        if not self.client.send_json(message):
            self.stop()

    def fall_back(self, why: str) -> None:
        """Relays through the hub from now on (idempotent)."""
        if not self.active or self.relay is not None:
            return
        log.info(
            "forwarder %s of %s to %s relays through the hub: %s",
            self.id,
            self.session.id,
            self.client.id,
            why,
        )
        self._revoke()
        c = self.client
        self.relay = PtyForwarder(self.session, c.send_frame, c.queued, c.drained)

    def _on_exit(self) -> None:
        # A session process that died (kill -9) sends nothing more: the hub says it instead.
        s = self.session
        lost = s.exit_code is None and s.signal is None
        if lost and self.relay is None and self.active:
            exited = encode_session(s.id, struct.pack("<i", -1))
            self.client.send_frame(encode_frame(PROCESS_EXITED, exited))

    def _revoke(self) -> None:
        if self.ticket is not None:
            with contextlib.suppress(SessionError, ConnectionError):
                self.session.client.unwatch(self.ticket)
            self.ticket = None

    def stop(self) -> None:
        """Stops forwarding (idempotent): the client's stream from the session is closed."""
        if not self.active:
            return
        self.active = False
        with contextlib.suppress(ValueError):
            self.session.exit_listeners.remove(self._on_exit)
        if not self._task.done():
            self._task.cancel()
        self._revoke()
        if self.relay is not None:
            self.relay.stop()
