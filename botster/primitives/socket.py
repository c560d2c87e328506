"""The ``socket`` primitive: Lua's side of the hub's Unix socket clients.

Callbacks registered with ``on_client_connected``, ``on_client_disconnected`` and
``on_message`` run as tasks of the plugin that registered them. Unlike the original's single
slot, each call adds a listener (the embedded client protocol is one of them), so a plugin can
watch clients without replacing the protocol; a plugin's listeners go when it unloads.
The wire format and the socket itself live in ``botster.transports``.

The clients themselves live in the hub's client channel (``botster.transports.channel``),
whatever transport carries them; this primitive is the Lua face of the clients the hub socket
carries, and an observer of that channel like ``tui``.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, TypedDict

from botster.lua.api import LuaFunction, lua_api
from botster.lua.convert import ConversionError, check_data, check_data_steps, run_sliced
from botster.lua.listeners import ListenerSet
from botster.primitives.context import HubContext
from botster.transports.channel import ChannelClient

__all__ = ["LUA", "TRANSPORT", "lua_extras"]

TRANSPORT = "socket"  # the clients of the hub socket (botster.transports.socket_server)

log = logging.getLogger("hub")

# A message this small (in JSON bytes, about) is checked and converted at once: well under a
# millisecond. Larger ones go through the sliced path.
_SMALL = 32 << 10


class _State:
    """One hub's socket listeners."""

    def __init__(self, hub: HubContext) -> None:
        self.on_connected = ListenerSet(hub, "socket_connected")
        self.on_disconnected = ListenerSet(hub, "socket_disconnected")
        self.on_message = ListenerSet(hub, "socket_message")
        self.inbox = _Inbox(hub, self.on_message)


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Starts observing the hub's socket clients (nothing extra for Lua)."""
    hub.clients.add_observer(_Observer(hub.state(_State)))
    return {}


class _Observer:
    """Turns the channel's events about socket clients into Lua listener calls."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def connected(self, client: ChannelClient) -> None:
        if client.transport == TRANSPORT:
            self.state.on_connected.dispatch("socket client connected", client.id)

    def disconnected(self, client: ChannelClient) -> None:
        if client.transport == TRANSPORT:
            self.state.on_disconnected.dispatch("socket client disconnected", client.id)

    def message(self, client: ChannelClient, message: dict[str, Any]) -> None:
        if client.transport == TRANSPORT:
            self.state.inbox.receive(client, message)


class _Inbox:
    """Hands each client's messages to Lua in arrival order; large ones in slices.

    A message too deep or too large (the socket's own limits, ``socket_max_json_depth`` and
    ``socket_max_message_kb``, checked again here on the decoded value) is answered with an
    error and never converted. One over
    ``_SMALL`` that passes is measured and converted in slices between which the loop runs;
    while it is, the same client's later messages wait behind it, so Lua sees them in order.
    """

    def __init__(self, hub: HubContext, listeners: ListenerSet) -> None:
        self._hub = hub
        self._listeners = listeners
        self._queues: dict[str, collections.deque[dict[str, Any]]] = {}

    def _limits(self) -> tuple[int, int]:
        config = self._hub.config
        max_bytes = int(config.setting("socket_max_message_kb")) << 10
        return max_bytes, int(config.setting("socket_max_json_depth"))

    def receive(self, client: ChannelClient, message: dict[str, Any]) -> None:
        queue = self._queues.get(client.id)
        if queue is not None:
            queue.append(message)
            return
        max_bytes, max_depth = self._limits()
        small = min(_SMALL, max_bytes)
        problem = check_data(message, max_bytes=small, max_depth=max_depth)
        if problem is None:
            if len(self._listeners):
                value = self._hub.host.convert.to_lua(message, checked=small)
                self._listeners.dispatch_lua("socket message", client.id.encode(), value)
            return
        if "deeper" in problem or max_bytes <= _SMALL:
            _refuse(client, message, problem)
            return
        self._queues[client.id] = collections.deque([message])
        self._hub.spawn(self._drain(client), name=f"socket message {client.id}", owner="hub")

    async def _drain(self, client: ChannelClient) -> None:
        queue = self._queues[client.id]
        convert = self._hub.host.convert
        try:
            while queue:
                message = queue.popleft()
                max_bytes, max_depth = self._limits()
                steps = check_data_steps(message, max_bytes=max_bytes, max_depth=max_depth)
                problem = await run_sliced(steps)
                if problem is not None:
                    _refuse(client, message, problem)
                    continue
                try:
                    value = await run_sliced(convert.to_lua_steps(message))
                except ConversionError as e:
                    _refuse(client, message, str(e))
                    continue
                self._listeners.dispatch_lua("socket message", client.id.encode(), value)
        finally:
            self._queues.pop(client.id, None)


def _refuse(client: ChannelClient, message: Any, problem: str) -> None:
    if problem.startswith(("nested", "larger")):
        setting = "socket_max_json_depth" if "deeper" in problem else "socket_max_message_kb"
        text = f"message is {problem} (setting {setting})"
    else:
        text = f"message refused: {problem}"
    log.warning("client %s: %s; refused", client.id, text)
    if isinstance(message, dict) and message.get("type") == "request" and "id" in message:
        msg_id = message["id"]
        if isinstance(msg_id, (str, int)) and not isinstance(msg_id, bool):
            client.send_json({"type": "response", "id": msg_id, "ok": False, "error": text})
            return
    client.send_json({"type": "error", "code": "bad_message", "message": text})


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
