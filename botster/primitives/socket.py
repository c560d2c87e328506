"""The ``socket`` primitive: Lua's side of the hub's Unix socket clients.

Callbacks registered with ``on_client_connected``, ``on_client_disconnected`` and
``on_message`` run as tasks of the plugin that registered them. Unlike the original's single
slot, each call adds a listener, and the embedded client protocol (``lib/client.lua``) watches
every client of the channel on its own, so a plugin can watch clients without replacing the
protocol; a plugin's listeners go when it unloads.
The wire format and the socket itself live in ``botster.transports``.

The clients themselves live in the hub's client channel (``botster.transports.channel``),
whatever transport carries them; this primitive is the Lua face of the clients the hub socket
carries, and an observer of that channel like ``tui``.
"""

from __future__ import annotations

from typing import Any, TypedDict

from botster.lua.api import LuaFunction, lua_api
from botster.lua.listeners import ClientFace
from botster.primitives.context import HubContext
from botster.transports.channel import ChannelClient

__all__ = ["LUA", "TRANSPORT", "lua_extras"]

TRANSPORT = "socket"  # the clients of the hub socket (botster.transports.socket_server)


class _State(ClientFace):
    """One hub's socket listeners: an observer of the channel that picks the socket's clients.
    The client protocol (``lib/client.lua``, which sees every client) answers a message it
    refuses, so this face does not."""

    def __init__(self, hub: HubContext) -> None:
        super().__init__(hub, "socket", _is_socket, answer=False)


def _is_socket(client: ChannelClient) -> bool:
    return client.transport == TRANSPORT


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Starts observing the hub's socket clients (nothing extra for Lua)."""
    hub.clients.add_observer(hub.state(_State))
    return {}


def _client(hub: HubContext, client_id: str) -> ChannelClient | None:
    client = hub.clients.get(client_id)
    return client if client is not None and client.transport == TRANSPORT else None


@lua_api
def on_client_connected(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_client_connected(fn(client_id)) -> listener id

    Calls fn with the new client's id after its handshake.
    Example: ``socket.on_client_connected(function(id) log.info("hello " .. id) end)``
    """
    return hub.state(_State).on_connected.add(fn)


@lua_api
def on_client_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_client_disconnected(fn(client_id)) -> listener id

    Calls fn when a client is gone, whatever the reason.
    """
    return hub.state(_State).on_disconnected.add(fn)


@lua_api
def on_message(hub: HubContext, fn: LuaFunction) -> str:
    """socket.on_message(fn(client_id, msg)) -> listener id

    Calls fn with every JSON message (a table) a client sends.
    Example: ``socket.on_message(function(id, msg) log.info(id .. " sent " .. msg.type) end)``
    """
    return hub.state(_State).on_message.add(fn)


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
    session (a new one replaces the old); it stops when the client disconnects, with
    ``socket.stop_pty_forwarder(client_id, session_id)``, or when the plugin unloads.
    """
    client = _client(hub, opts["client_id"])
    if client is None:
        return None, f"socket.create_pty_forwarder: no client {opts['client_id']}"
    session = hub.sessions.get(opts["session_id"])
    if session is None:
        return None, f"socket.create_pty_forwarder: no session {opts['session_id']}"
    fwd = hub.clients.attach(client, session, on_stop=lambda: hub.owners.discard(owner, fwd.id))
    owner = hub.own(fwd.id, lambda: hub.clients.detach(client.id, session.id, fwd))
    return fwd.id


@lua_api
def stop_pty_forwarder(hub: HubContext, client_id: str, session_id: str) -> bool:
    """socket.stop_pty_forwarder(client_id, session_id) -> bool: stops one forwarder."""
    client = _client(hub, client_id)
    return client is not None and hub.clients.detach(client.id, session_id)


@lua_api
def clients(hub: HubContext) -> list[dict[str, str]]:
    """socket.clients() -> {{id, name}...}: the clients connected now."""
    return [{"id": c.id, "name": c.name} for c in hub.clients.of_transport(TRANSPORT)]


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
