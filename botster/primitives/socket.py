"""The ``socket`` primitive: Lua's side of the hub's Unix socket clients.

Callbacks registered with ``on_client_connected``, ``on_client_disconnected`` and
``on_message`` run as tasks of the plugin that registered them. Unlike the original's single
slot, each call adds a listener (the embedded client protocol is one of them), so a plugin can
watch clients without replacing the protocol; a plugin's listeners go when it unloads.
The wire format and the socket itself live in ``botster.transports``.

Python observers (``botster.transports.observers``) see the same client life cycle before
any Lua listener: the ``tui`` primitive is one, and picks out the clients whose hello said
``"client": "tui"``.
"""

from __future__ import annotations

import itertools
from typing import Any, TypedDict

from botster.hub.context import HubContext
from botster.lua.api import LuaFunction, lua_api
from botster.sessions.forwarder import PtyForwarder
from botster.transports.framing import split_session
from botster.transports.observers import observe
from botster.transports.socket_server import SocketClient

__all__ = [
    "LUA",
    "client_connected",
    "client_disconnected",
    "message_received",
    "pty_input",
]

_ids = itertools.count(1)


class _State:
    """One hub's socket listeners and forwarders."""

    def __init__(self, hub: HubContext) -> None:
        self.listeners: dict[str, dict[str, tuple[str, Any]]] = {
            "connected": {},
            "disconnected": {},
            "message": {},
        }
        # client id -> session id -> forwarder: what each client watches (and may type into)
        self.forwarders: dict[str, dict[str, PtyForwarder]] = {}


def _add(hub: HubContext, kind: str, fn: Any) -> str:
    owner = hub.host.current_owner()
    key = f"socket_{kind}_{next(_ids)}"
    listeners = hub.state(_State).listeners[kind]
    listeners[key] = (owner, fn)
    hub.owners.add(owner, key, lambda: listeners.pop(key, None))
    return key


def _dispatch(hub: HubContext, kind: str, label: str, *args: Any) -> None:
    lua_args = [hub.host.convert.to_lua(a) for a in args]
    for owner, fn in list(hub.state(_State).listeners[kind].values()):
        hub.host.sched.start(owner, label, fn, *lua_args)


def client_connected(hub: HubContext, client: SocketClient) -> None:
    """Server hook: a client finished its handshake."""
    observe(hub, "connected", client)
    _dispatch(hub, "connected", "socket client connected", client.id)


def client_disconnected(hub: HubContext, client: SocketClient) -> None:
    """Server hook: a client is gone (closed, cut, or the hub is stopping)."""
    for fwd in hub.state(_State).forwarders.pop(client.id, {}).values():
        fwd.stop()
    observe(hub, "disconnected", client)
    _dispatch(hub, "disconnected", "socket client disconnected", client.id)


def pty_input(hub: HubContext, client: SocketClient, payload: bytes) -> None:
    """Server hook: keystrokes for a session the client has a forwarder for.

    Raises:
        ProtocolError: a malformed payload (the client is then disconnected).
    """
    sid, data = split_session(payload)
    fwd = hub.state(_State).forwarders.get(client.id, {}).get(sid)
    session = fwd.session if fwd is not None else None
    if session is None:
        session = next(
            (s for s in observe(hub, "input_session", client, sid) if s is not None), None
        )
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


def message_received(hub: HubContext, client: SocketClient, message: dict[str, Any]) -> None:
    """Server hook: a JSON message arrived."""
    observe(hub, "message", client, message)
    _dispatch(hub, "message", "socket message", client.id, message)


def _client(hub: HubContext, client_id: str) -> SocketClient | None:
    server = hub.socket_server
    return server.clients.get(client_id) if server is not None else None


@lua_api
def on_client_connected(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_client_connected(fn(client_id)) -> listener id

    Calls fn with the new client's id after its handshake.
    Example: ``socket.on_client_connected(function(id) log.info("hello " .. id) end)``
    """
    return _add(hub, "connected", fn)


@lua_api
def on_client_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_client_disconnected(fn(client_id)) -> listener id

    Calls fn when a client is gone, whatever the reason.
    """
    return _add(hub, "disconnected", fn)


@lua_api
def on_message(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_message(fn(client_id, msg)) -> listener id

    Calls fn with every JSON message (a table) a client sends.
    Example: ``socket.on_message(function(id, msg) log.info(id .. " sent " .. msg.type) end)``
    """
    return _add(hub, "message", fn)


@lua_api
def send(hub: HubContext, client_id: str, msg: Any) -> bool | tuple[None, str]:
    """socket.send(client_id, msg) -> true | nil, err

    Queues a JSON message (a table) for one client. Returns nil, err if the client is gone or
    was disconnected for not reading.
    Example: ``socket.send(id, {type = "notice", text = "hi"})``
    """
    client = _client(hub, client_id)
    if client is None:
        return None, f"socket.send: no client {client_id}"
    if not client.send_json(msg):
        return None, f"socket.send: client {client_id} is disconnected ({client.close_reason})"
    return True


@lua_api
def send_binary(hub: HubContext, client_id: str, data: bytes) -> bool | tuple[None, str]:
    """socket.send_binary(client_id, data) -> true | nil, err

    Queues an opaque binary frame (type 0x06) for one client.
    """
    client = _client(hub, client_id)
    if client is None:
        return None, f"socket.send_binary: no client {client_id}"
    if not client.send_binary(data):
        return None, f"socket.send_binary: client {client_id} is disconnected"
    return True


class ForwarderOptions(TypedDict):
    client_id: str
    session_id: str


@lua_api
def create_pty_forwarder(hub: HubContext, opts: ForwarderOptions) -> str | tuple[None, str]:
    """socket.create_pty_forwarder({client_id, session_id}) -> forwarder id | nil, err

    Routes a session's terminal to a client in Python (bytes never pass through Lua): a
    SNAPSHOT frame of the exact screen, then live PTY_OUTPUT, then PROCESS_EXITED. The client
    may then type into that session with PTY_INPUT frames. One forwarder per client and
    session (a new one replaces the old); it stops when the client disconnects or with
    ``socket.stop_pty_forwarder(client_id, session_id)``.
    """
    client = _client(hub, opts["client_id"])
    if client is None:
        return None, f"socket.create_pty_forwarder: no client {opts['client_id']}"
    session = hub.sessions.get(opts["session_id"])
    if session is None:
        return None, f"socket.create_pty_forwarder: no session {opts['session_id']}"
    by_session = hub.state(_State).forwarders.setdefault(client.id, {})
    if session.id in by_session:
        by_session[session.id].stop()
    fwd = PtyForwarder(session, client.send_frame, client.queued, client.writer.drain)
    by_session[session.id] = fwd
    return fwd.id


@lua_api
def stop_pty_forwarder(hub: HubContext, client_id: str, session_id: str) -> bool:
    """socket.stop_pty_forwarder(client_id, session_id) -> bool: stops one forwarder."""
    fwd = hub.state(_State).forwarders.get(client_id, {}).pop(session_id, None)
    if fwd is None:
        return False
    fwd.stop()
    return True


@lua_api
def clients(hub: HubContext) -> list[dict[str, str]]:
    """socket.clients() -> {{id, name}...}: the clients connected now."""
    server = hub.socket_server
    if server is None:
        return []
    return [{"id": c.id, "name": c.name} for c in server.clients.values()]


LUA = {
    "on_client_connected": on_client_connected,
    "on_client_disconnected": on_client_disconnected,
    "on_message": on_message,
    "send": send,
    "send_binary": send_binary,
    "create_pty_forwarder": create_pty_forwarder,
    "stop_pty_forwarder": stop_pty_forwarder,
    "clients": clients,
}
WRONG_DOOR = {
    "on_connect": "use socket.on_client_connected(fn)",
    "on_disconnect": "use socket.on_client_disconnected(fn)",
    "broadcast": "loop over socket.clients() and socket.send(id, msg)",
}
