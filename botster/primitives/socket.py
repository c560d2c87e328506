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

import collections
import itertools
import logging
from typing import Any, TypedDict

from botster.hub.context import current_hub
from botster.lua.api import LuaFunction, lua_api
from botster.lua.convert import ConversionError, check_data, check_data_steps, run_sliced
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

log = logging.getLogger("hub")

_listeners: dict[str, dict[str, tuple[str, Any]]] = {
    "connected": {},
    "disconnected": {},
    "message": {},
}
_ids = itertools.count(1)
# client id -> session id -> forwarder: what each client watches (and may type into)
_forwarders: dict[str, dict[str, PtyForwarder]] = {}


def _add(kind: str, fn: Any) -> str:
    hub = current_hub()
    owner = hub.host.current_owner()
    key = f"socket_{kind}_{next(_ids)}"
    _listeners[kind][key] = (owner, fn)
    hub.owners.add(owner, key, lambda: _listeners[kind].pop(key, None))
    return key


def _dispatch(kind: str, label: str, *args: Any) -> None:
    hub = current_hub()
    _start_listeners(kind, label, *[hub.host.convert.to_lua(a) for a in args])


def _start_listeners(kind: str, label: str, *lua_args: Any) -> None:
    hub = current_hub()
    for owner, fn in list(_listeners[kind].values()):
        hub.host.sched.start(owner, label, fn, *lua_args)


def client_connected(client: SocketClient) -> None:
    """Server hook: a client finished its handshake."""
    observe("connected", client)
    _dispatch("connected", "socket client connected", client.id)


def client_disconnected(client: SocketClient) -> None:
    """Server hook: a client is gone (closed, cut, or the hub is stopping)."""
    for fwd in _forwarders.pop(client.id, {}).values():
        fwd.stop()
    observe("disconnected", client)
    _dispatch("disconnected", "socket client disconnected", client.id)


def pty_input(client: SocketClient, payload: bytes) -> None:
    """Server hook: keystrokes for a session the client has a forwarder for.

    Raises:
        ProtocolError: a malformed payload (the client is then disconnected).
    """
    sid, data = split_session(payload)
    fwd = _forwarders.get(client.id, {}).get(sid)
    session = fwd.session if fwd is not None else None
    if session is None:
        session = next((s for s in observe("input_session", client, sid) if s is not None), None)
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


def message_received(client: SocketClient, message: dict[str, Any]) -> None:
    """Server hook: a JSON message arrived.

    A message too deep or too large for Lua (settings ``request_max_depth`` and
    ``request_max_bytes``) is answered with an error and never converted. A large one that
    passes is measured and converted in slices between which the loop runs (see ``_Inbox``).
    """
    observe("message", client, message)
    _inbox().receive(client, message)


# A message this small (in JSON bytes, about) is checked and converted at once: well under a
# millisecond. Larger ones go through the sliced path.
_SMALL = 32 << 10


class _Inbox:
    """Hands each client's messages to Lua in arrival order, large ones in slices.

    One per hub. While a client's large message is being measured or converted, its later
    messages wait behind it, so Lua still sees them in order.
    """

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        self._queues: dict[str, collections.deque[dict[str, Any]]] = {}

    def _limits(self) -> tuple[int, int]:
        config = self._hub.config
        return int(config.setting("request_max_bytes")), int(config.setting("request_max_depth"))

    def receive(self, client: SocketClient, message: dict[str, Any]) -> None:
        queue = self._queues.get(client.id)
        if queue is not None:
            queue.append(message)
            return
        max_bytes, max_depth = self._limits()
        problem = check_data(message, max_bytes=min(_SMALL, max_bytes), max_depth=max_depth)
        if problem is None:
            _dispatch("message", "socket message", client.id, message)
            return
        if "deeper" in problem or max_bytes <= _SMALL:
            _refuse(client, message, problem)
            return
        self._queues[client.id] = collections.deque([message])
        self._hub.spawn(self._drain(client), name=f"socket message {client.id}", owner="hub")

    async def _drain(self, client: SocketClient) -> None:
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
                _start_listeners("message", "socket message", client.id.encode(), value)
        finally:
            self._queues.pop(client.id, None)


def _inbox() -> _Inbox:
    hub = current_hub()
    inbox = getattr(hub, "_socket_inbox", None)
    if inbox is None:
        inbox = hub._socket_inbox = _Inbox(hub)
    return inbox


def _refuse(client: SocketClient, message: Any, problem: str) -> None:
    if problem.startswith(("nested", "larger")):
        setting = "request_max_depth" if "deeper" in problem else "request_max_bytes"
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


def _client(client_id: str) -> SocketClient | None:
    server = current_hub().socket_server
    return server.clients.get(client_id) if server is not None else None


@lua_api
def on_client_connected(fn: LuaFunction) -> str:
    """socket.on_client_connected(fn(client_id)) -> listener id

    Calls fn with the new client's id after its handshake.
    Example: ``socket.on_client_connected(function(id) log.info("hello " .. id) end)``
    """
    return _add("connected", fn)


@lua_api
def on_client_disconnected(fn: LuaFunction) -> str:
    """socket.on_client_disconnected(fn(client_id)) -> listener id

    Calls fn when a client is gone, whatever the reason.
    """
    return _add("disconnected", fn)


@lua_api
def on_message(fn: LuaFunction) -> str:
    """socket.on_message(fn(client_id, msg)) -> listener id

    Calls fn with every JSON message (a table) a client sends.
    Example: ``socket.on_message(function(id, msg) log.info(id .. " sent " .. msg.type) end)``
    """
    return _add("message", fn)


@lua_api
def send(client_id: str, msg: Any) -> bool | tuple[None, str]:
    """socket.send(client_id, msg) -> true | nil, err

    Queues a JSON message (a table) for one client. Returns nil, err if the client is gone or
    was disconnected for not reading.
    Example: ``socket.send(id, {type = "notice", text = "hi"})``
    """
    client = _client(client_id)
    if client is None:
        return None, f"socket.send: no client {client_id}"
    if not client.send_json(msg):
        return None, f"socket.send: client {client_id} is disconnected ({client.close_reason})"
    return True


@lua_api
def send_binary(client_id: str, data: bytes) -> bool | tuple[None, str]:
    """socket.send_binary(client_id, data) -> true | nil, err

    Queues an opaque binary frame (type 0x06) for one client.
    """
    client = _client(client_id)
    if client is None:
        return None, f"socket.send_binary: no client {client_id}"
    if not client.send_binary(data):
        return None, f"socket.send_binary: client {client_id} is disconnected"
    return True


class ForwarderOptions(TypedDict):
    client_id: str
    session_id: str


@lua_api
def create_pty_forwarder(opts: ForwarderOptions) -> str | tuple[None, str]:
    """socket.create_pty_forwarder({client_id, session_id}) -> forwarder id | nil, err

    Routes a session's terminal to a client in Python (bytes never pass through Lua): a
    SNAPSHOT frame of the exact screen, then live PTY_OUTPUT, then PROCESS_EXITED. The client
    may then type into that session with PTY_INPUT frames. One forwarder per client and
    session (a new one replaces the old); it stops when the client disconnects or with
    ``socket.stop_pty_forwarder(client_id, session_id)``.
    """
    hub = current_hub()
    client = _client(opts["client_id"])
    if client is None:
        return None, f"socket.create_pty_forwarder: no client {opts['client_id']}"
    session = hub.sessions.get(opts["session_id"])
    if session is None:
        return None, f"socket.create_pty_forwarder: no session {opts['session_id']}"
    by_session = _forwarders.setdefault(client.id, {})
    if session.id in by_session:
        by_session[session.id].stop()
    fwd = PtyForwarder(session, client.send_frame, client.queued, client.writer.drain)
    by_session[session.id] = fwd
    return fwd.id


@lua_api
def stop_pty_forwarder(client_id: str, session_id: str) -> bool:
    """socket.stop_pty_forwarder(client_id, session_id) -> bool: stops one forwarder."""
    fwd = _forwarders.get(client_id, {}).pop(session_id, None)
    if fwd is None:
        return False
    fwd.stop()
    return True


@lua_api
def clients() -> list[dict[str, str]]:
    """socket.clients() -> {{id, name}...}: the clients connected now."""
    server = current_hub().socket_server
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
