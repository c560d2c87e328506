"""Watchers: read-only terminal streams a session serves straight to local clients.

The hub decides who may see a session's terminal; once it has, the bytes need not pass through
it. For a client of the hub socket that asked for it, the hub takes a *ticket* from the session
(``watch_ticket``) and hands the client the session's socket path and the ticket; the client
connects to the session and sends ``{"type": "watch", "version": 1, "ticket"}`` first. From then
on that connection carries, in the client protocol's frames (``docs/protocol.md``): a SNAPSHOT of
the exact screen, every byte of output after it (PTY_OUTPUT), and PROCESS_EXITED once the
program has ended and its output was sent. Each output byte costs one process hop fewer than
through the hub (issue 11: key-to-echo).

A ticket is good for one connection, for ``TICKET_TTL`` seconds, and only while the hub that
took it stays connected: when that hub goes, or sends ``unwatch``, its watchers are closed.
A watcher sends nothing after its ``watch`` (it types through the hub). A watcher that reads
slower than the program writes is never fed an ever-longer queue: past ``HIGH_WATER`` bytes in
its buffer, output waits in the ring; if it has fallen more than ``RESYNC_BYTES`` behind when it
drains, it gets a fresh SNAPSHOT instead of the backlog (as the hub's forwarders do).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from botster.base.errors import ProtocolError
from botster.base.framing import PROCESS_EXITED, PTY_OUTPUT, SNAPSHOT, encode_frame
from botster.sessions.ring import OutputRing

__all__ = ["HIGH_WATER", "RESYNC_BYTES", "TICKET_TTL", "Watchers"]

TICKET_TTL = 10.0
MAX_WATCHERS = 64
HIGH_WATER = 64 << 10  # bytes waiting for a watcher before its output is held in the ring
RESYNC_BYTES = 128 << 10  # behind by more once drained: a fresh snapshot instead
KERNEL_SNDBUF = 32 << 10  # the kernel's share of what waits, kept small as for hub clients
_FRAME_HEADER = struct.Struct("<IB")


class Connection(Protocol):
    """What the session's connection class offers a watcher."""

    transport: asyncio.WriteTransport | None
    paused: bool
    closing: bool
    offset: int

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class _Watch:
    __slots__ = ("conn", "hub", "exit_sent")

    def __init__(self, conn: Connection, hub: object) -> None:
        self.conn = conn
        self.hub = hub
        self.exit_sent = False


class Watchers:
    """One session's tickets and watching connections.

    Args:
        session_id: the id frames carry.
        ring: the session's output.
        screen: returns (rows, cols, snapshot bytes) of the model caught up with the ring's end.
    """

    def __init__(
        self, session_id: str, ring: OutputRing, screen: Callable[[], tuple[int, int, bytes]]
    ) -> None:
        raw = session_id.encode()
        self._sid = struct.pack("<H", len(raw)) + raw
        self._ring = ring
        self._screen = screen
        self._tickets: dict[str, tuple[object, asyncio.TimerHandle]] = {}
        self._watching: dict[str, _Watch] = {}  # ticket -> its watcher
        self._exit: bytes | None = None  # the PROCESS_EXITED frame, once the program ended
        self._shared: tuple[int, int, bytes] | None = None  # (start, end, frame) last built

    def __len__(self) -> int:
        return len(self._watching)

    def issue(self, hub: object) -> str:
        """A fresh ticket for one watcher, revoked with `hub` (the connection that asked)."""
        ticket = os.urandom(18).hex()
        timer = asyncio.get_running_loop().call_later(TICKET_TTL, self._tickets.pop, ticket, None)
        self._tickets[ticket] = (hub, timer)
        return ticket

    def revoke(self, ticket: str) -> None:
        """Forgets an unused ticket, or closes the watcher that used it."""
        entry = self._tickets.pop(ticket, None)
        if entry is not None:
            entry[1].cancel()
        watch = self._watching.pop(ticket, None)
        if watch is not None:
            watch.conn.close()

    def revoke_hub(self, hub: object) -> None:
        """The hub that issued tickets is gone: its tickets and watchers with it."""
        for ticket, (issuer, _) in list(self._tickets.items()):
            if issuer is hub:
                self.revoke(ticket)
        for ticket, watch in list(self._watching.items()):
            if watch.hub is hub:
                self.revoke(ticket)

    def watch(self, conn: Connection, message: dict[str, Any]) -> None:
        """Turns `conn`, whose first frame was `message` (``{"type": "watch"}``), into a
        watcher: the snapshot now, output after it as it comes.

        Raises:
            ProtocolError: a bad version, an unknown, used or expired ticket, or too many.
        """
        version = message.get("version")
        if version != 1:
            raise ProtocolError(f"watch: version {version!r} is not supported (use 1)")
        ticket = message.get("ticket")
        entry = self._tickets.pop(ticket, None) if isinstance(ticket, str) else None
        if entry is None:
            raise ProtocolError("watch: unknown, used or expired ticket (ask the hub for one)")
        hub, timer = entry
        timer.cancel()
        if len(self._watching) >= MAX_WATCHERS:
            raise ProtocolError(f"watch: the session already has {MAX_WATCHERS} watchers")
        transport = conn.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=HIGH_WATER, low=HIGH_WATER // 4)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SNDBUF)
        watch = _Watch(conn, hub)
        self._watching[ticket] = watch
        self._send_snapshot(watch)
        self._pump_one(watch)

    def lost(self, conn: Connection) -> None:
        """A connection ended (a watcher or not)."""
        for ticket, watch in list(self._watching.items()):
            if watch.conn is conn:
                del self._watching[ticket]

    def exited(self, code: int, signal: int | None) -> None:
        """The program ended and its output is all in the ring: watchers get PROCESS_EXITED
        once they have the rest."""
        value = -1 if signal else code
        self._exit = encode_frame(PROCESS_EXITED, self._sid + struct.pack("<i", value))
        self.pump()

    def pump(self) -> None:
        """Sends every watcher that can take it what it has not seen."""
        if not self._watching:
            return
        for watch in list(self._watching.values()):
            self._pump_one(watch)

    def close(self) -> None:
        """Ends every watcher and forgets every ticket. A watcher still held back gets the
        rest and the exit first: the session is going, nothing will wait for it to drain."""
        for watch in self._watching.values():
            watch.conn.paused = False
            self._pump_one(watch)
        for ticket in list(self._tickets):
            self.revoke(ticket)
        for ticket in list(self._watching):
            self.revoke(ticket)

    def _pump_one(self, watch: _Watch) -> None:
        conn, ring = watch.conn, self._ring
        if conn.paused or conn.closing:
            return
        if conn.offset < ring.end:
            if conn.offset < ring.start or ring.end - conn.offset > RESYNC_BYTES:
                self._send_snapshot(watch)  # too far behind: the screen, not the backlog
            else:
                conn.send(self._frame(conn.offset, ring.end))
                conn.offset = ring.end
        if self._exit is not None and not watch.exit_sent and not conn.paused:
            watch.exit_sent = True
            conn.send(self._exit)

    def _frame(self, start: int, end: int) -> bytes:
        """PTY_OUTPUT of ring[start:end], built once for every watcher at the same place."""
        shared = self._shared
        if shared is not None and shared[0] == start and shared[1] == end:
            return shared[2]
        parts = []
        at = start
        while at < end:
            data = self._ring.read(at, end - at)
            parts.append(data)
            at += len(data)
        header = _FRAME_HEADER.pack(len(self._sid) + end - start + 1, PTY_OUTPUT)
        frame = b"".join([header, self._sid, *parts])
        self._shared = (start, end, frame)
        return frame

    def _send_snapshot(self, watch: _Watch) -> None:
        rows, cols, data = self._screen()
        watch.conn.send(encode_frame(SNAPSHOT, self._sid + struct.pack("<HH", rows, cols) + data))
        watch.conn.offset = self._ring.end
