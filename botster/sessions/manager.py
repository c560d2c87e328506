"""The hub's side of its sessions: spawn, adopt after a restart, route signals to Lua.

Owns the ``HubSession`` records of this hub: the ``SessionClient`` connection, what the
session was started as (``labels``, including the hub id so hubs sharing a runtime dir never
adopt each other's sessions), its forwarded port, and whether it still runs. Session signals
become Lua events and hooks (``process_exited``, ``pty_notification``, ``pty_title_changed``,
``pty_cwd_changed``). PTY bytes never go to Lua: Python output listeners (``listen``) get them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botster.base.errors import SessionError
from botster.base.loop import loop_only
from botster.sessions.client import (
    Output,
    SessionClient,
    SessionEvent,
    discover_sessions_blocking,
    spawn_session,
)

__all__ = ["HubSession", "SessionManager", "free_loopback_port"]

log = logging.getLogger("sessions")

OutputListener = Callable[["HubSession", Output], None]


class Fence(Protocol):
    """The spawning task's creation fence (``botster.lua.scheduler.Fence``): while it holds,
    signals about what the task is creating wait, so the task cannot miss them."""

    @property
    def holding(self) -> bool: ...

    def run(self, fn: Callable[..., None], *args: Any) -> None: ...


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the child binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class HubSession:
    """One session this hub talks to."""

    id: str
    client: SessionClient
    labels: dict[str, str]
    port: int | None = None
    running: bool = True
    exit_code: int | None = None
    signal: int | None = None
    listeners: list[OutputListener] = field(default_factory=list)
    # Called once the output of one read from the session has gone to every listener.
    read_end_listeners: list[Callable[[], None]] = field(default_factory=list)
    exit_listeners: list[Callable[[], None]] = field(default_factory=list)
    title: str | None = None
    cwd: str | None = None
    # Adopted: the program rang the bell or notified while no hub saw it.
    missed_attention: bool = False
    # The spawning task's creation fence: signals wait until that task has run on.
    fence: Fence | None = None
    # The last output frame built for this session's watchers, (start, end, bytes): the
    # forwarders (transports/forwarder.py) encode a chunk once and all send the same bytes.
    output_frame: tuple[int, int, bytes] | None = None
    # Whether the session sends this hub its output: only while an output listener needs it
    # (a relaying forwarder); clients that read the session directly do not.
    output_on: bool = True

    @property
    def pid(self) -> int:
        """The child program's pid."""
        return self.client.child_pid

    def add_output_listener(self, listener: OutputListener) -> None:
        """Gets `listener` every output chunk from now on (the session is asked for them)."""
        self.listeners.append(listener)
        self.sync_output()

    def remove_output_listener(self, listener: OutputListener) -> None:
        """Stops `listener` (no error if it is not there)."""
        with contextlib.suppress(ValueError):
            self.listeners.remove(listener)
        self.sync_output()

    def sync_output(self) -> None:
        """Asks the session for output only while some listener wants it."""
        want = bool(self.listeners)
        client = self.client
        if want == self.output_on or not client.serves_watchers or not client.connected:
            return
        self.output_on = want
        with contextlib.suppress(SessionError):
            client.send_output(want)

    def info(self) -> dict[str, Any]:
        """What Lua sees of the session (``pty.list()``)."""
        return {
            "id": self.id,
            "pid": self.pid,
            "labels": self.labels,
            "running": self.running,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "port": self.port,
            "title": self.title,
            "cwd": self.cwd,
            "missed_attention": self.missed_attention,
        }


class _Hub(Protocol):
    """What the session manager needs of its hub (``Hub`` has it)."""

    hub_id: str
    paths: Any

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def notify_hook(self, name: str, data: Any = None) -> None: ...

    def emit(self, event: str, data: Any = None) -> None: ...


class SessionManager:
    """Every session of one hub."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
        self.sessions: dict[str, HubSession] = {}
        self._closing = False  # the hub is stopping: disconnects are expected
        # Signals wait here until Lua has booted (`release_signals`): before, no listener
        # would hear them (an adopted agent's bell would be lost, hooks would fail).
        self._held: list[tuple[str, dict[str, Any]]] | None = []

    # Spawning and adopting --------------------------------------------------------------

    async def spawn(
        self,
        config: dict[str, Any],
        labels: dict[str, str],
        port_forward: bool,
        fence: Fence | None = None,
    ) -> HubSession:
        """Starts a session process for `config` (a SpawnConfig dict) and connects to it.

        The session's signals go through `fence` (the spawning task's, see ``Fence``).

        Raises:
            SessionError: the session could not start (the message says why).
        """
        config = dict(config)
        port = free_loopback_port() if port_forward else None
        if port is not None:
            config["env"] = {**config.get("env", {}), "PORT": str(port)}
        config["labels"] = {
            **labels,
            "hub_id": self.hub.hub_id,
            **({"port": str(port)} if port is not None else {}),
        }
        sid, sock = await spawn_session(config, self.hub.paths.runtime)
        return await self._connect(sid, str(sock), config["labels"], fence)

    async def _connect(
        self,
        sid: str,
        sock: str,
        labels: dict[str, str],
        fence: Fence | None = None,
        *,
        adopting: bool = False,
    ) -> HubSession:
        port = labels.get("port")
        # The record exists before the connection: events the session sends while the
        # handshake completes (a first title, a bell) must already have somewhere to go.
        s = HubSession(sid, None, labels, port=int(port) if port else None, fence=fence)  # type: ignore[arg-type]
        # Adopting, the session first replays the events it kept. Those a previous hub was
        # sent are history (their effect is in the metadata: title, cwd, exit); the rest
        # happened while no hub ran (a bell) and are news, signalled like live ones (held
        # until Lua has booted). Which is which needs the metadata: events that come before
        # it wait.
        replayed: list[SessionEvent] = []
        seen: list[int] = []  # the previous hub's last event, once the metadata is read

        def on_output(out: Output) -> None:
            for listener in list(s.listeners):
                try:
                    listener(s, out)
                except Exception:
                    log.exception("output listener of session %s failed", s.id)

        def on_read_end() -> None:
            for listener in list(s.read_end_listeners):
                try:
                    listener()
                except Exception:
                    log.exception("read-end listener of session %s failed", s.id)

        def on_event(ev: SessionEvent) -> None:
            seq = ev.data.get("seq")
            if adopting and isinstance(seq, int):
                if not seen:
                    replayed.append(ev)
                    return
                if seq <= seen[0]:
                    return
                if ev.type in ("bell", "notification"):
                    s.missed_attention = True
            self._on_event(s, ev)

        # Adopting, the ring is not replayed (20 full rings took 650 ms): nobody watches yet,
        # and a client that attaches gets the exact screen as a snapshot from the session.
        s.client = await SessionClient.connect(
            sock,
            on_output=on_output,
            on_event=on_event,
            on_read_end=on_read_end,
            live_only=adopting,
        )
        meta = s.client.metadata
        if not meta.get("running", True) and s.running:
            s.running, s.exit_code, s.signal = False, meta.get("exit_code"), meta.get("signal")
        s.title, s.cwd = meta.get("title") or None, meta.get("cwd") or None
        if adopting:
            seen.append(int(meta.get("hub_event_seq", 0)))
            for ev in replayed:
                on_event(ev)
        s.sync_output()  # no listener yet: events only
        self.sessions[sid] = s
        return s

    async def adopt_all(self) -> list[HubSession]:
        """Reconnects to every live session this hub started before a restart."""
        started = time.monotonic()
        found = await self.hub.run_blocking(discover_sessions_blocking, self.hub.paths.runtime)
        mine = [
            info
            for info in found
            if info.labels.get("hub_id") == self.hub.hub_id and info.id not in self.sessions
        ]
        # All at once: each is a connect and a round trip to its own process.
        results = await asyncio.gather(
            *(
                self._connect(info.id, str(info.socket), info.labels, adopting=True)
                for info in mine
            ),
            return_exceptions=True,
        )
        adopted = []
        for info, result in zip(mine, results, strict=True):
            if isinstance(result, HubSession):
                self.sessions[result.id] = self.sessions.pop(result.id)  # discovery order
                adopted.append(result)
            elif isinstance(result, (SessionError, OSError)):
                log.warning("could not adopt session %s: %s", info.id, result)
            else:
                raise result
        if adopted:
            ms = (time.monotonic() - started) * 1000
            log.info("adopted %d sessions in %.0f ms", len(adopted), ms)
        return adopted

    # Signals ----------------------------------------------------------------------------

    @loop_only
    def _on_event(self, s: HubSession, ev: SessionEvent) -> None:
        base = {"session_id": s.id, "agent_key": s.labels.get("agent_key")}
        d = ev.data
        if ev.type == "title":
            s.title = d.get("title") or None
            self._signal(s, "pty_title_changed", {**base, "title": d.get("title", "")})
        elif ev.type == "cwd":
            s.cwd = d.get("cwd") or None
            self._signal(s, "pty_cwd_changed", {**base, "cwd": d.get("cwd", "")})
        elif ev.type == "notification":
            self._signal(
                s,
                "pty_notification",
                {
                    **base,
                    "kind": d.get("source", "osc9"),  # the scanner says which OSC
                    "title": d.get("title"),
                    "body": d.get("body"),
                },
            )
        elif ev.type == "bell":
            self._signal(s, "pty_notification", {**base, "kind": "bell"})
        elif ev.type == "exit":
            s.running = False
            s.exit_code, s.signal = d.get("exit_code"), d.get("signal")
            for listener in list(s.exit_listeners):
                listener()
            self._signal(
                s, "process_exited", {**base, "exit_code": s.exit_code, "signal": s.signal}
            )
        elif ev.type == "disconnected":
            if self.sessions.get(s.id) is s and not self._closing:
                log.warning("lost session %s: %s", s.id, d.get("error") or "it ended")
                self.sessions.pop(s.id, None)
                if s.running:
                    # The session process itself died (kill -9, OOM): its program lost its
                    # terminal. Watchers get PROCESS_EXITED (-1: no exit code) like any exit.
                    s.running = False
                    s.exit_code, s.signal = None, None
                    for listener in list(s.exit_listeners):
                        listener()
                    self._signal(
                        s,
                        "process_exited",
                        {**base, "exit_code": None, "signal": None, "lost": True},
                    )
        elif ev.type in ("dropped", "input_dropped", "events_dropped"):
            log.warning("session %s: %s %s", s.id, ev.type, d)

    def _signal(self, s: HubSession, name: str, data: dict[str, Any]) -> None:
        """Delivers a session signal to Lua as a hook notification and an event, once the
        task that spawned the session has run on (its creation fence) and Lua has booted."""
        if s.fence is not None and s.fence.holding:
            s.fence.run(self._signal_now, name, data)
        else:
            s.fence = None
            self._signal_now(name, data)

    def _signal_now(self, name: str, data: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append((name, data))
            return
        self.hub.notify_hook(name, data)
        self.hub.emit(name, data)

    def release_signals(self) -> None:
        """Lua has booted: signals held until now are delivered, in order, and then at once."""
        held, self._held = self._held or [], None
        for name, data in held:
            self._signal_now(name, data)

    # Control ------------------------------------------------------------------------------

    def get(self, sid: str) -> HubSession | None:
        return self.sessions.get(sid)

    async def close(self, s: HubSession) -> None:
        """Ends the session for good: its program is stopped and the process exits."""
        self.sessions.pop(s.id, None)
        with contextlib.suppress(SessionError, OSError, ConnectionError, TimeoutError):
            await s.client.close()
        s.running = False

    async def detach_all(self) -> None:
        """Hub shutdown: leaves every session running for the next hub."""
        self._closing = True
        for s in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.client.disconnect(), 2)
        self.sessions.clear()
