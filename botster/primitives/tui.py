"""The ``tui`` primitive: the hub's channel to the terminal UIs attached to it.

A terminal UI (``botster start`` / ``botster attach``, ``botster/tui``) is an ordinary socket
client whose hello says ``"client": "tui"``; this module picks those clients out through the
hub's client channel (``botster.transports.channel``) and gives plugins one channel to
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

from botster.lua.api import LuaFunction, lua_api
from botster.lua.listeners import ListenerSet
from botster.primitives.context import HubContext
from botster.sessions.manager import HubSession
from botster.transports.channel import ChannelClient, Forwarder

__all__ = ["LUA", "TUI_CLIENT_NAME", "lua_extras"]

TUI_CLIENT_NAME = "tui"  # the hello's `client` field that makes a client a TUI

_ids = itertools.count(1)


class _State:
    """One hub's TUI listeners and forwarders (the TUIs themselves are the channel's)."""

    def __init__(self, hub: HubContext) -> None:
        self.on_connected = ListenerSet(hub, "tui_connected")
        self.on_disconnected = ListenerSet(hub, "tui_disconnected")
        self.on_message = ListenerSet(hub, "tui_message")
        self.forwards: dict[str, _Forward] = {}


class _Forward:
    """One ``tui.create_pty_forwarder``: a session routed to every TUI."""

    def __init__(self, hub: HubContext, fid: str, session: HubSession) -> None:
        self.hub = hub
        self.id = fid
        self.session = session
        self.owner = ""
        self.per_client: dict[str, Forwarder] = {}

    def attach(self, client: ChannelClient) -> None:
        self.per_client[client.id] = self.hub.clients.attach(client, self.session)

    def stop(self) -> None:
        for client_id, fwd in self.per_client.items():
            self.hub.clients.detach(client_id, self.session.id, fwd)
        self.per_client.clear()
        self.hub.state(_State).forwards.pop(self.id, None)


def _tuis(hub: HubContext) -> list[ChannelClient]:
    return hub.clients.named(TUI_CLIENT_NAME)


class _Observer:
    """Picks the TUIs out of the hub's clients, whatever transport carries them."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def connected(self, client: ChannelClient) -> None:
        if client.name != TUI_CLIENT_NAME:
            return
        for fwd in list(self.state.forwards.values()):
            fwd.attach(client)
        self.state.on_connected.dispatch("tui connected", client.id)

    def disconnected(self, client: ChannelClient) -> None:
        if client.name != TUI_CLIENT_NAME:
            return
        for fwd in list(self.state.forwards.values()):
            fwd.per_client.pop(client.id, None)  # the channel stopped it
        self.state.on_disconnected.dispatch("tui disconnected", client.id)

    def message(self, client: ChannelClient, message: dict[str, Any]) -> None:
        if client.name == TUI_CLIENT_NAME and message.get("type") == "tui":
            self.state.on_message.dispatch("tui message", message.get("data"), client.id)


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Starts observing the hub's clients for TUIs (nothing extra for Lua)."""
    hub.clients.add_observer(_Observer(hub.state(_State)))
    return {}


@lua_api
def on_connected(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_connected(fn()) -> listener id

    Calls fn when a terminal UI connects (a socket client whose hello said
    `client = "tui"`). fn also gets the UI's client id, for `socket.send` to that one UI.
    Each call adds a listener; they go when the plugin unloads.
    Example: ``tui.on_connected(function() tui.send({kind = "notify", text = "hi"}) end)``
    """
    return hub.state(_State).on_connected.add(fn)


@lua_api
def on_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_disconnected(fn()) -> listener id

    Calls fn when a terminal UI is gone (it quit, was cut, or the hub is stopping); fn also
    gets its client id.
    Example: ``tui.on_disconnected(function(id) log.info("UI " .. id .. " left") end)``
    """
    return hub.state(_State).on_disconnected.add(fn)


@lua_api
def on_message(hub: HubContext, fn: LuaFunction) -> str:
    """tui.on_message(fn(msg_table)) -> listener id

    Calls fn with the `data` of every `{type = "tui", data = ...}` message a terminal UI
    sends (any JSON value; usually a table), and the UI's client id as a second argument.
    Example: ``tui.on_message(function(msg) log.info("UI says " .. json.encode(msg)) end)``
    """
    return hub.state(_State).on_message.add(fn)


@lua_api
def send(hub: HubContext, msg: Any) -> int:
    """tui.send(msg) -> count

    Queues `{type = "tui", data = msg}` for every connected terminal UI; `msg` is any JSON
    value (a table usually). Returns how many UIs it was queued for (0 when none is
    attached: not an error). The UI shows `{kind = "notify", text = ...}` as a notification.
    Example: ``tui.send({kind = "notify", text = "tests passed"})``
    """
    sent = 0
    for client in _tuis(hub):
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
    for client in _tuis(hub):
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
    fwd = _Forward(hub, f"tui_fwd_{next(_ids)}", session)
    hub.state(_State).forwards[fwd.id] = fwd
    fwd.owner = hub.own(fwd.id, fwd.stop)
    for client in _tuis(hub):
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
    hub.owners.discard(fwd.owner, fwd.id)
    return True


@lua_api
def clients(hub: HubContext) -> list[str]:
    """tui.clients() -> {client_id...}

    The client ids of the terminal UIs connected now (for `socket.send` to one of them).
    Example: ``log.info(#tui.clients() .. " UIs attached")``
    """
    return [c.id for c in _tuis(hub)]


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
