"""The UI's connection to its hub: agents, the attached terminal, attention, reconnects.

``HubLink`` owns one ``HubConnection`` (``botster.transports.client``) whose hello says
``"client": "tui"``, so the hub's ``tui`` primitive knows it. It subscribes to the ``hub``
channel and keeps the agent list fresh on ``agents_changed`` / ``agent_attention``; it keeps
exactly one terminal subscription, for the agent being viewed, and moves it when the
selection changes; it types into that session; and when the hub goes away (restart,
upgrade) it reconnects to the same socket and restores all of that.

Attention: an agent that rang the bell or sent OSC 9/777 is marked by the hub until
``clear_attention``. The link clears it as soon as the user looks at the agent (selects it
while the UI has focus), and tells the UI to ring the real terminal's bell when the agent is
not the one on screen, or the UI is not focused.

Framework-free: it reports through a ``LinkListener`` (the Textual app implements it), so the
logic is testable without a screen. Not here: rendering and keys (``terminal.py``,
``keys.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from botster.base.framing import (
    BINARY,
    PROCESS_EXITED,
    PTY_OUTPUT,
    SNAPSHOT,
    Frame,
    split_session,
)
from botster.transports.client import HubConnection, RequestFailed

__all__ = ["HubLink", "LinkListener", "RequestFailed", "TUI_CLIENT"]

log = logging.getLogger("tui")

TUI_CLIENT = "tui"
RECONNECT_INTERVAL_S = 0.5


class LinkListener(Protocol):
    """What the link reports; every method runs on the UI's event loop."""

    def link_state(self, connected: bool, detail: str) -> None:
        """Connected (hub id in `detail`) or lost (the reason)."""

    def agents_updated(self, agents: list[dict[str, Any]]) -> None:
        """The fresh agent list (``list_agents``)."""

    def ring_bell(self, agent_key: str, info: dict[str, Any]) -> None:
        """An agent the user is not looking at needs attention."""

    def terminal_snapshot(self, session_id: str, rows: int, cols: int, data: bytes) -> None:
        """A fresh screen for the attached session: feed it to an empty terminal."""

    def terminal_output(self, session_id: str, data: bytes) -> None:
        """Live output of the attached session."""

    def terminal_exited(self, session_id: str, code: int) -> None:
        """The attached session's program ended (-1: killed by a signal)."""

    def tui_message(self, data: Any) -> None:
        """A ``tui.send(msg)`` from a plugin."""

    def tui_binary(self, data: bytes) -> None:
        """A ``tui.send_binary(data)`` from a plugin."""


class HubLink:
    """A reconnecting client of one hub socket.

    Args:
        socket_path: the hub's socket.
        listener: receives everything the link learns.
    """

    def __init__(self, socket_path: Path | str, listener: LinkListener) -> None:
        self.socket_path = Path(socket_path)
        self.listener = listener
        self.conn: HubConnection | None = None
        self.hub_id = ""
        self.agents: dict[str, dict[str, Any]] = {}
        self.viewed: str | None = None  # agent key on screen
        self.attached: str | None = None  # session id subscribed
        # The pane's size; None until it is laid out. No terminal is subscribed before:
        # subscribing sizes the session, and a guess would resize the program twice.
        self.size: tuple[int, int] | None = None
        self.focused = True  # whether the UI itself has the user's focus
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresh_pending = False
        self._refresh_again = False

    # Connection --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connects (once; raises if nothing listens) and starts following the hub.

        Raises:
            OSError: no hub listens at the socket.
            ProtocolError / TimeoutError: the hub refused the handshake.
        """
        await self._open()
        self._spawn(self._watch(), "hub link watcher")

    async def _open(self) -> None:
        conn = await HubConnection.connect(
            self.socket_path, TUI_CLIENT, on_message=self._on_message, on_frame=self._on_frame
        )
        self.conn = conn
        self.hub_id = conn.hub_id
        conn.subscribe("hub")
        self.attached = None
        self.listener.link_state(True, conn.hub_id)
        await self.refresh()
        if self.viewed is not None:
            self._attach(self.viewed)

    async def _watch(self) -> None:
        while not self._stopping:
            conn = self.conn
            if conn is not None:
                await conn.closed.wait()
                if self._stopping:
                    return
                self.listener.link_state(False, conn.close_reason or "connection closed")
                self.conn = None
                self.attached = None
                with contextlib.suppress(Exception):
                    await conn.close()  # the hub went: its socket is still ours to close
            try:
                await self._open()
            except Exception as e:  # nothing listens yet, or the hub is still starting
                log.debug("reconnect failed: %s", e)
                await asyncio.sleep(RECONNECT_INTERVAL_S)

    def expect_close(self) -> None:
        """The hub is being stopped on purpose: do not reconnect when it goes."""
        self._stopping = True

    async def close(self) -> None:
        """Disconnects for good (the hub and its agents keep running)."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    @property
    def connected(self) -> bool:
        """Whether a connection is up now."""
        return self.conn is not None and not self.conn.closed.is_set()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (ConnectionError, RequestFailed)):
                log.error("%s failed", task.get_name(), exc_info=exc)

    async def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Runs a hub command.

        Raises:
            ConnectionError: not connected.
            RequestFailed: the hub said no (the message is the hub's).
        """
        if self.conn is None:
            raise ConnectionError("not connected to the hub")
        return await self.conn.request(command, args)

    # Agents ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetches the agent list now and reports it."""
        agents = await self.request("list_agents")
        self.agents = {a["agent_key"]: a for a in agents}
        self.listener.agents_updated(list(agents))
        viewed = self.agents.get(self.viewed or "")
        if viewed is not None:
            if viewed.get("attention") and self.focused:
                self._spawn(self._clear(viewed["agent_key"]), "clear attention")
            if viewed.get("session_id") and viewed["session_id"] != self.attached:
                self._attach(viewed["agent_key"])

    def _schedule_refresh(self) -> None:
        # Events come in bursts (a title change, then agents_changed): one request at a time,
        # and one more afterwards if anything arrived meanwhile.
        if self._refresh_pending:
            self._refresh_again = True
            return
        self._refresh_pending = True

        async def run() -> None:
            try:
                while True:
                    self._refresh_again = False
                    with contextlib.suppress(ConnectionError, RequestFailed):
                        await self.refresh()
                    if not self._refresh_again:
                        return
            finally:
                self._refresh_pending = False

        self._spawn(run(), "refresh agents")

    async def _clear(self, agent_key: str) -> None:
        with contextlib.suppress(ConnectionError, RequestFailed):
            await self.request("clear_attention", {"agent_key": agent_key})

    # Viewing -----------------------------------------------------------------------------

    def view(self, agent_key: str | None) -> None:
        """Shows an agent: moves the terminal subscription and clears its attention mark."""
        self.viewed = agent_key
        if agent_key is None:
            self._detach()
            return
        agent = self.agents.get(agent_key)
        if agent is not None and agent.get("attention") and self.focused:
            self._spawn(self._clear(agent_key), "clear attention")
        self._attach(agent_key)

    def set_focused(self, focused: bool) -> None:
        """The UI gained or lost the user's focus (the terminal's focus events)."""
        self.focused = focused
        agent = self.agents.get(self.viewed or "")
        if focused and agent is not None and agent.get("attention"):
            self._spawn(self._clear(agent["agent_key"]), "clear attention")

    def _attach(self, agent_key: str) -> None:
        agent = self.agents.get(agent_key)
        sid = agent.get("session_id") if agent else None
        if sid == self.attached:
            return
        self._detach()
        if not sid or self.conn is None or self.size is None:
            return  # without a size yet, `resize` attaches when the pane has one
        rows, cols = self.size
        self.attached = sid
        with contextlib.suppress(ConnectionError):
            self.conn.subscribe("terminal", {"session_id": sid, "rows": rows, "cols": cols})

    def _detach(self) -> None:
        sid, self.attached = self.attached, None
        if sid and self.conn is not None and not self.conn.closed.is_set():
            with contextlib.suppress(ConnectionError):
                self.conn.send(
                    {"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}}
                )

    def send_input(self, data: bytes) -> bool:
        """Types into the attached session. False when nothing is attached."""
        if not data or self.attached is None or not self.connected:
            return False
        assert self.conn is not None
        self.conn.send_input(self.attached, data)
        return True

    def resize(self, rows: int, cols: int, *, force: bool = False) -> None:
        """The terminal pane changed size: the attached session follows it.

        Args:
            rows: the pane's height.
            cols: the pane's width.
            force: resize the session even if the pane kept its size (another client
                resized the session meanwhile).
        """
        if rows < 1 or cols < 1 or ((rows, cols) == self.size and not force):
            return
        first, self.size = self.size is None, (rows, cols)
        if first:  # subscribing at this size sizes the session: nothing else to do
            if self.viewed is not None:
                self._attach(self.viewed)
            return
        sid = self.attached
        if sid and self.connected:
            self._spawn(
                self._request_quietly(
                    "terminal.resize", {"session_id": sid, "rows": rows, "cols": cols}
                ),
                "resize",
            )

    async def _request_quietly(self, command: str, args: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RequestFailed):
            await self.request(command, args)

    def send_tui(self, data: Any) -> bool:
        """Sends ``{type = "tui", data}``: it reaches plugins' ``tui.on_message``."""
        if not self.connected:
            return False
        assert self.conn is not None
        self.conn.send({"type": "tui", "data": data})
        return True

    # Incoming ----------------------------------------------------------------------------

    def _on_message(self, msg: dict[str, Any]) -> None:
        mtype = msg.get("type")
        if mtype == "event" and msg.get("channel") == "hub":
            event, data = msg.get("event"), msg.get("data") or {}
            if event == "agent_attention":
                self._attention(data)
            if event in ("agents_changed", "agent_attention"):
                self._schedule_refresh()
        elif mtype == "tui":
            self.listener.tui_message(msg.get("data"))
        elif mtype == "error":
            log.info("hub says: %s", msg.get("message"))

    def _attention(self, data: dict[str, Any]) -> None:
        key = data.get("agent_key", "")
        if key == self.viewed and self.focused:
            self._spawn(self._clear(key), "clear attention")
            return
        self.listener.ring_bell(key, data)

    def _on_frame(self, frame: Frame) -> None:
        if frame.type == BINARY:
            self.listener.tui_binary(frame.payload)
            return
        try:
            sid, data = split_session(frame.payload)
        except Exception:
            return
        if sid != self.attached:
            return  # a late frame of a session we just left
        if frame.type == SNAPSHOT:
            rows, cols = struct.unpack_from("<HH", data)
            self.listener.terminal_snapshot(sid, rows, cols, data[4:])
        elif frame.type == PTY_OUTPUT:
            self.listener.terminal_output(sid, data)
        elif frame.type == PROCESS_EXITED:
            (code,) = struct.unpack_from("<i", data)
            self.listener.terminal_exited(sid, code)
