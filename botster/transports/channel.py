"""The client channel: one hub's connected clients, whatever transport carries them.

The hub socket, the terminal UIs on it and WebRTC peers are carriers of one client protocol
(``docs/protocol.md``, given meaning by ``lib/client.lua``). A transport module only moves
bytes: it completes the hello handshake, then tells the channel about each client with four
calls (``connected``, ``message``, ``pty_input``, ``disconnected``) and gives it a
``ChannelClient`` to send through. Everything else is here, once:

* the registry of connected clients (``clients``, ``get``, ``of_transport``, ``named``);
* terminal forwarders per client (``attach``/``detach``): a session's bytes go to a client in
  Python, never through Lua, and PTY_INPUT from a client reaches only a session attached to it;
* observers (``add_observer``): the client protocol (``hub/internals.py`` for
  ``lib/client.lua``) and the client-facing primitives (``socket``, ``webrtc``, ``tui``) see
  every client event and turn it into Lua callbacks.

Not here: the wire of each transport (``socket_server.py``, ``webrtc.py``), Lua listeners
(``botster.lua.listeners.ListenerSet``), what a message means (``lib/client.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from botster.base.framing import split_session
from botster.transports.forwarder import DirectForwarder, PtyForwarder

if TYPE_CHECKING:
    from botster.sessions.manager import HubSession

__all__ = ["ChannelClient", "ClientChannel", "ClientObserver", "Forwarder"]

_log = logging.getLogger("socket")

_OnStop = Callable[[], object] | None
Forwarder = PtyForwarder | DirectForwarder


class ChannelClient(Protocol):
    """What a transport hands the channel for each connected client."""

    id: str  # unique in the hub; by convention "<transport>:<n>"
    name: str  # the hello's `client` field: "tui", "browser", "python"...
    transport: str  # "socket", "webrtc"...
    # The client asked to read terminals straight from session processes (a local client:
    # ``DirectForwarder``)
    direct_terminal: bool
    closed: bool
    close_reason: str | None

    def send_frame(self, data: bytes) -> bool:
        """Queues one encoded socket frame; False if the client is gone or was cut."""
        ...

    def send_json(self, message: Any) -> bool:
        """Queues a JSON message."""
        ...

    def send_binary(self, data: bytes) -> bool:
        """Queues an opaque binary frame (type 0x06)."""
        ...

    def queued(self) -> int:
        """Bytes accepted but not yet handed to the network (forwarders' flow control)."""
        ...

    async def drained(self) -> None:
        """Returns once the queue has fallen back below the transport's low-water mark."""
        ...


class ClientObserver(Protocol):
    """A Python observer of the channel's clients (``ClientChannel.add_observer``); loop-only."""

    def connected(self, client: ChannelClient) -> None:
        """A client finished its handshake."""

    def disconnected(self, client: ChannelClient) -> None:
        """A client is gone (its forwarders are already stopped)."""

    def message(self, client: ChannelClient, message: dict[str, Any]) -> None:
        """A client sent a JSON message."""


class ClientChannel:
    """One hub's connected clients, their terminal forwarders and the observers of both."""

    def __init__(self) -> None:
        self.clients: dict[str, ChannelClient] = {}
        # client id -> session id -> (forwarder, on_stop): what each client watches (and may
        # type into)
        self._forwarders: dict[str, dict[str, tuple[Forwarder, _OnStop]]] = {}
        self._observers: list[ClientObserver] = []

    # What a transport calls ---------------------------------------------------------------

    def connected(self, client: ChannelClient) -> None:
        """A transport's client finished the hello handshake."""
        self.clients[client.id] = client
        self._notify("connected", client)

    def message(self, client: ChannelClient, message: dict[str, Any]) -> None:
        """A JSON message arrived from a client."""
        if message.get("type") == "terminal_direct_failed":
            self._direct_failed(client, message)
            return
        self._notify("message", client, message)

    def pty_input(self, client: ChannelClient, payload: bytes) -> None:
        """A PTY_INPUT frame arrived: keystrokes for a session attached to this client.

        Raises:
            ProtocolError: a malformed payload (the transport then disconnects the client).
        """
        sid, data = split_session(payload)
        attached = self._forwarders.get(client.id, {}).get(sid)
        session = attached[0].session if attached is not None else None
        if session is None or not session.running:
            client.send_json(
                {
                    "type": "error",
                    "code": "bad_message",
                    "message": f"pty input for {sid}: not attached to that session",
                }
            )
            return
        session.client.write(data)

    def disconnected(self, client: ChannelClient) -> None:
        """A client is gone (closed, cut, or the hub is stopping)."""
        self.clients.pop(client.id, None)
        for fwd, on_stop in self._forwarders.pop(client.id, {}).values():
            _stop(fwd, on_stop)
        self._notify("disconnected", client)

    # What primitives use ------------------------------------------------------------------

    def get(self, client_id: str) -> ChannelClient | None:
        """The connected client with this id."""
        return self.clients.get(client_id)

    def of_transport(self, transport: str) -> list[ChannelClient]:
        """The connected clients a transport carries, oldest first."""
        return [c for c in self.clients.values() if c.transport == transport]

    def named(self, name: str) -> list[ChannelClient]:
        """The connected clients whose hello said ``client = name``, oldest first."""
        return [c for c in self.clients.values() if c.name == name]

    def add_observer(self, observer: ClientObserver) -> Callable[[], None]:
        """Lets Python code watch every client; observers run in the order added, and one that
        raises is logged while the others still run. Returns a remover (safe twice)."""
        self._observers.append(observer)

        def remove() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return remove

    def attach(
        self, client: ChannelClient, session: HubSession, *, on_stop: _OnStop = None
    ) -> Forwarder:
        """Routes a session's terminal to a client (SNAPSHOT, live output, exit) and lets the
        client type into it. One forwarder per client and session: a new one replaces the
        old. It stops when the client disconnects, when replaced, or on ``detach``; each
        of those calls `on_stop` (e.g. to forget its owner entry). A client that asked for
        ``direct_terminal`` reads from the session itself (``DirectForwarder``)."""
        by_session = self._forwarders.setdefault(client.id, {})
        old = by_session.pop(session.id, None)
        if old is not None:
            _stop(*old)
        fwd: Forwarder
        if client.direct_terminal:
            fwd = DirectForwarder(session, client)
        else:
            fwd = PtyForwarder(session, client.send_frame, client.queued, client.drained)
        by_session[session.id] = (fwd, on_stop)
        return fwd

    def detach(self, client_id: str, session_id: str, fwd: Forwarder | None = None) -> bool:
        """Stops the client's forwarder of that session (only if it is `fwd`, when given).
        False if there was none."""
        by_session = self._forwarders.get(client_id, {})
        current = by_session.get(session_id)
        if current is None or (fwd is not None and current[0] is not fwd):
            return False
        del by_session[session_id]
        if not by_session:
            self._forwarders.pop(client_id, None)
        _stop(*current)
        return True

    def forwarder_count(self) -> int:
        """How many forwarders run (for leak checks)."""
        return sum(len(by_session) for by_session in self._forwarders.values())

    def _direct_failed(self, client: ChannelClient, message: dict[str, Any]) -> None:
        """The client could not reach a session it was sent to: relay through the hub."""
        sid, ticket = message.get("session_id"), message.get("ticket")
        attached = self._forwarders.get(client.id, {}).get(sid) if isinstance(sid, str) else None
        fwd = attached[0] if attached is not None else None
        if isinstance(fwd, DirectForwarder) and ticket is not None and fwd.ticket == ticket:
            fwd.fall_back(f"the client could not connect: {str(message.get('error'))[:200]}")
        # else: a stale report (detached, or attached again since): nothing to do

    def _notify(self, method: str, *args: Any) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                _log.exception("client observer %r failed in %s", observer, method)


def _stop(fwd: Forwarder, on_stop: _OnStop) -> None:
    fwd.stop()
    if on_stop is not None:
        on_stop()
