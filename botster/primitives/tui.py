"""The ``tui`` primitive: the hub's channel to the terminal UIs attached to it.

A terminal UI (``botster start`` / ``botster attach``, ``botster/tui``) is an ordinary socket
client whose hello says ``"client": "tui"``; this module picks those clients out through the
socket clients' observer hook (``botster.transports.observers``) and gives plugins one channel to
all of them at once:

* ``tui.send(msg)`` queues ``{type = "tui", data = msg}`` for every connected TUI;
* a TUI's ``{type = "tui", data = ...}`` message reaches ``tui.on_message(fn(data))``
  listeners (``lib/client.lua`` leaves those messages alone);
* ``tui.create_pty_forwarder({session_id})`` routes a session's terminal to every TUI,
  including those that connect later, in Python (bytes never pass through Lua); the TUIs may
  type into it.

Not here: the socket, frames and handshake (``botster.transports``), the client protocol
(``lib/client.lua``), and the UI itself (``botster.tui``). Listeners and forwarders are owned
by the plugin that made them and go when it unloads.
"""

from __future__ import annotations

import itertools
from typing import Any, TypedDict

from botster.hub.context import HubContext
from botster.lua.api import LuaFunction, lua_api
from botster.sessions.forwarder import PtyForwarder
from botster.sessions.manager import HubSession
from botster.transports.observers import add_observer
from botster.transports.socket_server import SocketClient

__all__ = ["LUA", "TUI_CLIENT_NAME", "lua_extras"]

TUI_CLIENT_NAME = "tui"  # the hello's `client` field that makes a socket client a TUI

_ids = itertools.count(1)


class _State:
    """One hub's TUI listeners, connected TUIs and forwarders."""

    def __init__(self, hub: HubContext) -> None:
        self.listeners: dict[str, dict[str, tuple[str, Any]]] = {
            "connected": {},
            "disconnected": {},
            "message": {},
        }
        self.tuis: dict[str, SocketClient] = {}  # client id -> connected TUI
        self.forwards: dict[str, _Forward] = {}


class _Forward:
    """One ``tui.create_pty_forwarder``: a session routed to every TUI."""

    def __init__(self, fid: str, session: HubSession, forwards: dict[str, _Forward]) -> None:
        self.id = fid
        self.forwards = forwards
        self.session = session
        self.per_client: dict[str, PtyForwarder] = {}

    def attach(self, client: SocketClient) -> None:
        old = self.per_client.pop(client.id, None)
        if old is not None:
            old.stop()
        self.per_client[client.id] = PtyForwarder(
            self.session, client.send_frame, client.queued, client.writer.drain
        )

    def detach(self, client_id: str) -> None:
        fwd = self.per_client.pop(client_id, None)
        if fwd is not None:
            fwd.stop()

    def stop(self) -> None:
        for fwd in self.per_client.values():
            fwd.stop()
        self.per_client.clear()
        self.forwards.pop(self.id, None)


def _dispatch(hub: HubContext, kind: str, label: str, *args: Any) -> None:
    lua_args = [hub.host.convert.to_lua(a) for a in args]
    for owner, fn in list(hub.state(_State).listeners[kind].values()):
        hub.host.sched.start(owner, label, fn, *lua_args)


class _Observer:
    """Watches socket clients for TUIs (``transports.observers.add_observer``)."""

    def __init__(self, hub: HubContext) -> None:
        self.hub = hub
        self.state = hub.state(_State)

    def connected(self, client: SocketClient) -> None:
        if client.name != TUI_CLIENT_NAME:
            return
        self.state.tuis[client.id] = client
        for fwd in list(self.state.forwards.values()):
            fwd.attach(client)
        _dispatch(self.hub, "connected", "tui connected", client.id)

    def disconnected(self, client: SocketClient) -> None:
        if self.state.tuis.pop(client.id, None) is None:
            return
        for fwd in list(self.state.forwards.values()):
            fwd.detach(client.id)
        _dispatch(self.hub, "disconnected", "tui disconnected", client.id)

    def message(self, client: SocketClient, message: dict[str, Any]) -> None:
        if client.id in self.state.tuis and message.get("type") == "tui":
            _dispatch(self.hub, "message", "tui message", message.get("data"), client.id)

    def input_session(self, client: SocketClient, session_id: str) -> HubSession | None:
        if client.id not in self.state.tuis:
            return None
        for fwd in self.state.forwards.values():
            if fwd.session.id == session_id and client.id in fwd.per_client:
                return fwd.session
        return None


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Installs the socket observer of this hub (nothing extra for Lua)."""
    add_observer(hub, _Observer(hub))
    return {}


def _add(hub: HubContext, kind: str, fn: Any) -> str:
    owner = hub.host.current_owner()
    key = f"tui_{kind}_{next(_ids)}"
    listeners = hub.state(_State).listeners[kind]
    listeners[key] = (owner, fn)
    hub.owners.add(owner, key, lambda: listeners.pop(key, None))
    return key


@lua_api
def on_connected(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_connected(fn()) -> listener id

    Calls fn when a terminal UI connects (a socket client whose hello said
    `client = "tui"`). fn also gets the UI's client id, for `socket.send` to that one UI.
    Each call adds a listener; they go when the plugin unloads.
    Example: ``tui.on_connected(function() tui.send({kind = "notify", text = "hi"}) end)``
    """
    return _add(hub, "connected", fn)


@lua_api
def on_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_disconnected(fn()) -> listener id

    Calls fn when a terminal UI is gone (it quit, was cut, or the hub is stopping); fn also
    gets its client id.
    Example: ``tui.on_disconnected(function(id) log.info("UI " .. id .. " left") end)``
    """
    return _add(hub, "disconnected", fn)


@lua_api
def on_message(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_message(fn(msg_table)) -> listener id

    Calls fn with the `data` of every `{type = "tui", data = ...}` message a terminal UI
    sends (any JSON value; usually a table), and the UI's client id as a second argument.
    Example: ``tui.on_message(function(msg) log.info("UI says " .. json.encode(msg)) end)``
    """
    return _add(hub, "message", fn)


@lua_api
def send(hub: HubContext, msg: Any) -> int:
    """tui.send(msg) -> count

    Queues `{type = "tui", data = msg}` for every connected terminal UI; `msg` is any JSON
    value (a table usually). Returns how many UIs it was queued for (0 when none is
    attached: not an error). The UI shows `{kind = "notify", text = ...}` as a notification.
    Example: ``tui.send({kind = "notify", text = "tests passed"})``
    """
    sent = 0
    for client in list(hub.state(_State).tuis.values()):
        if client.send_json({"type": "tui", "data": msg}):
            sent += 1
    return sent


@lua_api
def send_binary(hub: HubContext, data: bytes) -> int:
    """tui.send_binary(data) -> count

    Queues an opaque binary frame (type 0x06) holding the string `data` for every connected
    terminal UI. Returns how many UIs it was queued for.
    Example: ``tui.send_binary(string.char(1, 2, 3))``
    """
    sent = 0
    for client in list(hub.state(_State).tuis.values()):
        if client.send_binary(data):
            sent += 1
    return sent


class TuiForwarderOptions(TypedDict):
    session_id: str


@lua_api
def create_pty_forwarder(hub: HubContext, opts: TuiForwarderOptions) -> str | tuple[None, str]:
    """tui.create_pty_forwarder({session_id}) -> forwarder id | nil, err

    Routes a session's terminal to every terminal UI, now and as they connect: each gets a
    SNAPSHOT frame of the exact screen, then live PTY_OUTPUT, then PROCESS_EXITED, and may
    type into the session with PTY_INPUT frames. Bytes never pass through Lua. Returns nil,
    err when there is no such session. Stop it with `tui.stop_pty_forwarder(id)`; it also
    stops when the plugin unloads.
    Example: ``local id = assert(tui.create_pty_forwarder({session_id = h:id()}))``
    """
    session = hub.sessions.get(opts["session_id"])
    if session is None:
        return None, f"tui.create_pty_forwarder: no session {opts['session_id']}"
    owner = hub.host.current_owner()
    forwards = hub.state(_State).forwards
    fwd = _Forward(f"tui_fwd_{next(_ids)}", session, forwards)
    forwards[fwd.id] = fwd
    hub.owners.add(owner, fwd.id, fwd.stop)
    for client in list(hub.state(_State).tuis.values()):
        fwd.attach(client)
    return fwd.id


@lua_api
def stop_pty_forwarder(hub: HubContext, forwarder_id: str) -> bool:
    """tui.stop_pty_forwarder(forwarder_id) -> bool

    Stops a forwarder made by `tui.create_pty_forwarder`; false if it was already stopped.
    Example: ``tui.stop_pty_forwarder(id)``
    """
    fwd = hub.state(_State).forwards.get(forwarder_id)
    if fwd is None:
        return False
    fwd.stop()
    for owner in hub.owners.owners():
        hub.owners.discard(owner, forwarder_id)
    return True


@lua_api
def clients(hub: HubContext) -> list[str]:
    """tui.clients() -> {client_id...}

    The client ids of the terminal UIs connected now (for `socket.send` to one of them).
    Example: ``log.info(#tui.clients() .. " UIs attached")``
    """
    return list(hub.state(_State).tuis)


LUA = {
    "on_connected": on_connected,
    "on_disconnected": on_disconnected,
    "on_message": on_message,
    "send": send,
    "send_binary": send_binary,
    "create_pty_forwarder": create_pty_forwarder,
    "stop_pty_forwarder": stop_pty_forwarder,
    "clients": clients,
}
WRONG_DOOR = {
    "subscribe_terminal": "use tui.create_pty_forwarder({session_id = id})",
    "broadcast": "use tui.send(msg): it reaches every connected UI",
    "on_peer_connected": "use tui.on_connected(fn)",
}
