"""Python observers of hub-socket clients: how another client-facing primitive (``tui``)
builds on the socket without a second server.

The ``socket`` primitive calls ``observe`` for every client event before its Lua listeners
run; observers added with ``add_observer`` see connects, disconnects and messages, and may
route a session's keystrokes to a client. Lives here, not in a primitive, because
primitives never import each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from botster.hub.context import HubContext
    from botster.sessions.manager import HubSession
    from botster.transports.socket_server import SocketClient

__all__ = ["ClientObserver", "add_observer", "observe"]

_log = logging.getLogger("socket")


class ClientObserver(Protocol):
    """A Python observer of socket clients (see ``add_observer``); all methods loop-only."""

    def connected(self, client: SocketClient) -> None:
        """A client finished its handshake."""

    def disconnected(self, client: SocketClient) -> None:
        """A client is gone."""

    def message(self, client: SocketClient, message: dict[str, Any]) -> None:
        """A client sent a JSON message (it still reaches the Lua listeners)."""

    def input_session(self, client: SocketClient, session_id: str) -> HubSession | None:
        """The session this client may type into under `session_id`, if the observer
        routed that session to it; None leaves the decision to the socket primitive."""


class _State:
    def __init__(self, hub: HubContext) -> None:
        self.observers: list[ClientObserver] = []


def add_observer(hub: HubContext, observer: ClientObserver) -> Callable[[], None]:
    """Lets Python code watch socket clients, ahead of the Lua listeners.

    The hook through which another client-facing primitive (``tui``) builds on the socket
    without a second server. Observers run in the order added; one that raises is logged and
    the others still run.

    Args:
        hub: the hub whose clients to watch.
        observer: the observer.

    Returns:
        A function that removes it (safe to call twice).
    """
    observers = hub.state(_State).observers
    observers.append(observer)

    def remove() -> None:
        if observer in observers:
            observers.remove(observer)

    return remove


def observe(hub: HubContext, method: str, *args: Any) -> list[Any]:
    """Calls `method` on every observer; returns their results (a failing one is logged)."""
    results = []
    for observer in list(hub.state(_State).observers):
        try:
            results.append(getattr(observer, method)(*args))
        except Exception:
            _log.exception("socket observer %r failed in %s", observer, method)
    return results
