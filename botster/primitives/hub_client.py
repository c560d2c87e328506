"""The ``hub_client`` primitive: a plugin's connections to other hubs' sockets (D9).

Owns the table of client connections a plugin opens to another hub's Unix socket, and the
client half of the socket protocol (``docs/protocol.md``): the ``hello`` handshake, request ids
and their responses, and delivery of everything else the other hub sends. Each connection is one
background task owned by the plugin that called ``connect``: it connects, handshakes, flushes
what was sent while it connected, then reads frames and runs the plugin's ``on_message``
callback as a task of that plugin, in the order the messages arrived.

Lifecycle of a connection id (``"hub_conn_1"``): connecting -> open -> gone. A connection that
fails or drops ends with one synthetic ``{type = "disconnected", reason}`` message; one closed
with ``hub_client.close`` or by unloading its plugin ends silently. Messages that arrive before
``on_message`` is registered are kept (up to 1000, oldest dropped first) and delivered once it
is, the ``disconnected`` message included. Only JSON frames are delivered: PTY and binary
frames are not part of this API.

Leaves the frame format to ``botster.transports.framing`` and argument checking, conversion and
scheduling to ``botster.lua``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, TypedDict

from botster.errors import ArgumentError, ProtocolError
from botster.hub import net
from botster.hub.context import HubContext
from botster.lua.api import LuaFunction, describe, lua_api
from botster.lua.convert import JSON_NULL, lua_type_name
from botster.transports.framing import DEFAULT_MAX_FRAME, JSON, FrameDecoder, encode_json
from botster.transports.handshake import connect_unix

__all__ = ["LUA", "WRONG_DOOR", "active_count"]

log = logging.getLogger("hub_client")

MAX_PER_OWNER = 64  # connections per plugin, finished-but-undelivered ones included
MAX_INBOX = 1000  # messages kept for a connection whose on_message is not registered yet
MAX_OUTBOX = 1000  # messages sent while connecting, waiting for the connection
MAX_OUTBOX_BYTES = 8 << 20
SEND_LIMIT = 8 << 20  # bytes waiting in the socket buffer before send refuses more
CONNECT_TIMEOUT = 10.0  # seconds for connect + hello_ack
DEFAULT_TIMEOUT = 30.0  # seconds a request waits (for the connection and the response)
READ_SIZE = 64 << 10
MAX_ENDED = 256  # ids of ended connections remembered for error messages

# Request ids this module sends; a response carrying one is never delivered to on_message.
_REQ_PREFIX = "hub_client.request:"


class RequestOptions(TypedDict, total=False):
    """The options table of ``hub_client.request``."""

    timeout: float


@dataclass(eq=False)
class _Conn:
    id: str
    owner: str
    path: str
    client_name: str
    state: str = "connecting"  # connecting | open | gone
    ended: str = ""  # why it is gone, for error messages
    handler: Any = None  # the on_message Lua function
    inbox: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_INBOX)
    )
    dropped: int = 0  # inbox overflow
    outbox: list[bytes] = field(default_factory=list)
    outbox_bytes: int = 0
    pending: dict[str, asyncio.Future[dict[str, Any] | str]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once open or gone
    max_frame: int = DEFAULT_MAX_FRAME
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None


_ids = itertools.count(1)
_req_ids = itertools.count(1)


class _State:
    """One hub's connections, and why recently ended ones ended."""

    def __init__(self, hub: HubContext) -> None:
        self.conns: dict[str, _Conn] = {}
        self.ended: collections.OrderedDict[str, str] = collections.OrderedDict()


def active_count(hub: HubContext, owner: str | None = None) -> int:
    """How many connections exist, for everyone or one owner (for leak checks)."""
    return sum(1 for c in hub.state(_State).conns.values() if owner is None or c.owner == owner)


# Reasons ----------------------------------------------------------------------------------


def _unknown(hub: HubContext, fname: str, conn_id: str) -> str:
    why = hub.state(_State).ended.get(conn_id)
    if why is not None:
        return f"hub_client.{fname}: {conn_id}: {why}"
    return f"hub_client.{fname}: {conn_id}: no such connection"


# Delivery ---------------------------------------------------------------------------------


def _call(hub: HubContext, conn: _Conn, msg: dict[str, Any]) -> None:
    hub.host.sched.start(
        conn.owner,
        f"hub_client {conn.id} on_message",
        conn.handler,
        hub.host.convert.to_lua(msg),
        conn.id.encode(),
    )


def _deliver(hub: HubContext, conn: _Conn, msg: dict[str, Any]) -> None:
    """Runs on_message now, or keeps the message until on_message is registered."""
    if conn.handler is None or conn.inbox:  # a non-empty inbox means a flush is scheduled
        if len(conn.inbox) == MAX_INBOX:
            conn.dropped += 1
        conn.inbox.append(msg)
        return
    _call(hub, conn, msg)


def _flush_inbox(hub: HubContext, conn: _Conn) -> None:
    if conn.handler is None or hub.state(_State).conns.get(conn.id) is not conn:
        return  # closed or unloaded meanwhile
    if conn.dropped:
        log.warning(
            "[%s] hub_client %s: %d messages were dropped before on_message was registered",
            conn.owner,
            conn.id,
            conn.dropped,
        )
        conn.dropped = 0
    while conn.inbox and conn.handler is not None:  # a callback may close the connection
        msg = conn.inbox.popleft()
        if not conn.inbox and conn.state == "gone":
            _forget(hub, conn, conn.ended)  # the last message: the id is unknown from now on
        _call(hub, conn, msg)


def _forget(hub: HubContext, conn: _Conn, why: str) -> None:
    if hub.state(_State).conns.get(conn.id) is conn:
        del hub.state(_State).conns[conn.id]
        hub.owners.discard(conn.owner, conn.id)
    hub.state(_State).ended[conn.id] = why
    while len(hub.state(_State).ended) > MAX_ENDED:
        hub.state(_State).ended.popitem(last=False)


def _stop(conn: _Conn, why: str) -> None:
    """Ends a connection without calling anything back (close, unload)."""
    conn.state = "gone"
    conn.ended = why
    conn.handler = None
    conn.inbox.clear()
    conn.outbox.clear()
    _fail_pending(conn, why)
    conn.ready.set()
    if conn.task is not None and conn.task is not asyncio.current_task():
        conn.task.cancel()
    if conn.writer is not None:
        conn.writer.close()  # flushes what is already queued, then closes


def _fail_pending(conn: _Conn, why: str) -> None:
    for fut in conn.pending.values():
        if not fut.done():
            fut.set_result(why)
    conn.pending.clear()


def _end(hub: HubContext, conn: _Conn, reason: str) -> None:
    """The connection failed or dropped: one synthetic `disconnected` message."""
    if conn.state == "gone":
        return
    conn.state = "gone"
    conn.ended = f"disconnected: {reason}"
    conn.outbox.clear()
    _fail_pending(conn, conn.ended)
    conn.ready.set()
    msg = {"type": "disconnected", "reason": reason}
    if conn.handler is not None and not conn.inbox:
        _forget(hub, conn, conn.ended)  # before the call: inside it, the id is already unknown
        _call(hub, conn, msg)
    else:
        _deliver(hub, conn, msg)  # the entry waits (owned) for on_message, close, or unload


def _on_frame(hub: HubContext, conn: _Conn, msg: dict[str, Any]) -> None:
    if msg.get("type") == "response":
        rid = msg.get("id")
        if isinstance(rid, str) and rid.startswith(_REQ_PREFIX):
            fut = conn.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return  # ours, even when it comes after the request timed out
    if conn.state == "open":
        _deliver(hub, conn, msg)


# The connection task ----------------------------------------------------------------------


async def _read(
    hub: HubContext, conn: _Conn, reader: asyncio.StreamReader, decoder: FrameDecoder
) -> str:
    """Delivers messages until the connection ends; returns why it ended."""
    last_error = ""
    data = b""
    try:
        while True:
            for frame in decoder.feed(data):
                if conn.state != "open":
                    return conn.ended
                if frame.type != JSON:
                    continue  # PTY and binary frames are not part of hub_client
                msg = frame.json()
                if msg.get("type") == "error":
                    last_error = str(msg.get("message", ""))
                _on_frame(hub, conn, msg)
            data = await reader.read(READ_SIZE)
            if not data:
                said = f" ({last_error})" if last_error else ""
                return f"the hub closed the connection{said}"
    except ProtocolError as e:
        return f"protocol error: {e}"
    except OSError as e:
        return f"connection lost: {net.os_reason(e)}"


async def _run(hub: HubContext, conn: _Conn) -> None:
    decoder = FrameDecoder()
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, conn.writer, ack = await connect_unix(
                    conn.path, conn.client_name, decoder, read_size=READ_SIZE
                )
        except TimeoutError:
            _end(hub, conn, f"no handshake from {conn.path} within {CONNECT_TIMEOUT:g} s")
            return
        except ProtocolError as e:
            _end(hub, conn, f"handshake with {conn.path} failed: {e}")
            return
        except OSError as e:
            _end(hub, conn, f"cannot connect to {conn.path}: {net.os_reason(e)}")
            return
        if conn.state != "connecting":
            return
        if isinstance(ack.get("max_frame"), int) and ack["max_frame"] > 1:
            conn.max_frame = ack["max_frame"]
        conn.state = "open"
        # What was sent while connecting goes first, before anything on_message may send.
        outbox, conn.outbox, conn.outbox_bytes = conn.outbox, [], 0
        for data in outbox:
            err = _write(conn, data)
            if err is not None:
                log.warning("[%s] hub_client %s: a queued message: %s", conn.owner, conn.id, err)
        conn.ready.set()
        _deliver(hub, conn, ack)
        _end(hub, conn, await _read(hub, conn, reader, decoder))
    finally:
        if conn.writer is not None:
            conn.writer.close()
        if conn.state != "gone":  # only a bug gets here (the hub logs it)
            _stop(conn, "the connection task failed")
            _forget(hub, conn, conn.ended)


def _write(conn: _Conn, data: bytes) -> str | None:
    """Writes one encoded frame to an open connection; the reason if it cannot."""
    assert conn.writer is not None
    if len(data) - 4 > conn.max_frame:
        return f"message of {len(data) - 5} bytes is over the hub's frame limit ({conn.max_frame})"
    transport = conn.writer.transport
    if transport.is_closing():
        return "the connection is closing"
    waiting = transport.get_write_buffer_size()
    if waiting + len(data) > SEND_LIMIT:
        return f"the other hub is not reading ({waiting} bytes are waiting to be sent)"
    conn.writer.write(data)
    return None


def _release(hub: HubContext, conn: _Conn) -> None:
    """Owner unloaded: drop the connection without calling anything back."""
    _stop(conn, "closed: its plugin was unloaded")
    _forget(hub, conn, conn.ended)


# Checking ---------------------------------------------------------------------------------


def _object(value: Any, arg: str, *, optional: bool = False) -> dict[str, Any]:
    """A converted Lua value that must be a JSON object (a table with string keys)."""
    if value is None and optional:
        return {}
    if isinstance(value, list):
        raise ArgumentError(
            f"{arg}: expected a table with string keys (a JSON object), got an array"
        )
    if not isinstance(value, dict):
        raise ArgumentError(f"{arg}: expected table, got {lua_type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ArgumentError(f"{arg}: keys must be strings, got {describe(key)}")
    return value


def _encode(message: dict[str, Any], arg: str) -> bytes:
    try:
        json.dumps(message, allow_nan=False)
    except ValueError:  # the only thing converted Lua data can hold that JSON cannot
        raise ArgumentError(
            f"{arg}: cannot be sent as JSON: NaN and infinities have no JSON form"
        ) from None
    return encode_json(message)


def _evict_one_ended(hub: HubContext, owner: str) -> bool:
    for conn in hub.state(_State).conns.values():
        if conn.owner == owner and conn.state == "gone" and conn.handler is None:
            _forget(hub, conn, conn.ended)
            return True
    return False


# Lua-facing -------------------------------------------------------------------------------


@lua_api
def connect(hub: HubContext, socket_path: str) -> str | tuple[None, str]:
    """hub_client.connect(socket_path) -> conn_id | nil, err

    Connects to another hub's socket in the background and returns the connection's id at
    once (D9); the connection and the `hello` handshake happen after the calling step. Use
    `hub_client.on_message` to hear from it, `hub_client.request` to run the other hub's
    commands, `hub_client.send` for raw protocol messages. The connection belongs to the
    calling plugin: unloading it closes the connection without calling anything back.

    * `socket_path`: absolute path of the other hub's socket, e.g. the `socket` field of an
      entry of `hub_discovery.list()`, or `hub_discovery.socket_path(hub_id)`.

    Returns the connection id (`"hub_conn_1"`), or `nil, err` when the plugin already holds 64
    connections. A path where nothing listens is not an error here: the connection fails in
    the background and `on_message` receives `{type = "disconnected", reason = "cannot connect
    to ...: no such file or directory (ENOENT)"}`.
    Raises when `socket_path` is not a string or not an absolute path.

    ```lua
    for _, h in ipairs(hub_discovery.list()) do
      if h.id ~= hub.hub_id() then peers[h.id] = hub_client.connect(h.socket) end
    end
    ```
    """
    if not socket_path.startswith("/"):
        raise ArgumentError(
            f"socket_path: expected an absolute path, got {socket_path!r} "
            "(hub_discovery.socket_path(hub_id) gives one)"
        )
    if "\0" in socket_path:
        raise ArgumentError("socket_path: a path cannot contain NUL")
    owner = hub.host.current_owner()
    if active_count(hub, owner) >= MAX_PER_OWNER and not _evict_one_ended(hub, owner):
        return None, (
            f"hub_client.connect: {owner} already has {MAX_PER_OWNER} connections; "
            "close some with hub_client.close(conn_id)"
        )
    name = f"hub {hub.hub_id[:12]} ({owner})"[:64]
    conn = _Conn(f"hub_conn_{next(_ids)}", owner, socket_path, name)
    hub.state(_State).conns[conn.id] = conn
    hub.owners.add(owner, conn.id, lambda: _release(hub, conn))
    conn.task = hub.spawn(_run(hub, conn), name=f"hub_client {conn.id}", owner=owner)
    return conn.id


@lua_api
def on_message(hub: HubContext, conn_id: str, fn: LuaFunction) -> bool | tuple[None, str]:
    """hub_client.on_message(conn_id, fn(message, conn_id)) -> true | nil, err

    Sets the function that receives every JSON message the other hub sends on this
    connection, except responses to `hub_client.request`: first the handshake's
    `{type = "hello_ack", hub_id, client_id, protocol, max_frame}` (the connection is open),
    then `subscribed`, `event` and `error` messages, and responses to requests you sent
    yourself with `hub_client.send`. Each call runs as a task of the plugin that opened the
    connection, in arrival order. One function per connection: calling again replaces it.

    When the connection fails or drops, `fn` receives one last message
    `{type = "disconnected", reason = "..."}` and the connection is finished (its id becomes
    unknown). Closing it with `hub_client.close`, or unloading the plugin, calls nothing.
    Messages that arrived before `on_message` was called are delivered right after it (up to
    the last 1000).

    * `conn_id`: an id from `hub_client.connect`.
    * `fn`: `function(message, conn_id)`; `message` is a table.

    Returns `true`, or `nil, err` when the connection is unknown (closed, or finished and its
    `disconnected` message already delivered).
    Raises when `conn_id` is not a string or `fn` is not a function.

    ```lua
    hub_client.on_message(conn, function(msg)
      if msg.type == "event" then log.info(msg.channel .. ": " .. msg.event)
      elseif msg.type == "disconnected" then log.warn("peer gone: " .. msg.reason) end
    end)
    ```
    """
    conn = hub.state(_State).conns.get(conn_id)
    if conn is None:
        return None, _unknown(hub, "on_message", conn_id)
    had_handler = conn.handler is not None
    conn.handler = fn
    if conn.inbox and not had_handler:
        # Next loop turn, not inside this call; messages arriving meanwhile queue behind.
        hub.loop.call_soon(_flush_inbox, hub, conn)
    return True


@lua_api
def send(hub: HubContext, conn_id: str, message: Any = None) -> bool | tuple[None, str]:
    """hub_client.send(conn_id, message) -> true | nil, err

    Sends one JSON message (a table) to the other hub without waiting for an answer, e.g.
    `{type = "subscribe", channel = "hub"}`; what comes back arrives at `on_message`. While
    the connection is still being set up, messages are queued (up to 1000 messages or 8 MiB)
    and sent in order once it is open.

    * `conn_id`: an id from `hub_client.connect`.
    * `message`: a table with string keys (a JSON object).

    Returns `true`, or `nil, err` when the connection is unknown, closed or finished, the
    queue is full, the message is over the other hub's frame limit, or the other hub has
    stopped reading (8 MiB waiting).
    Raises when `conn_id` is not a string, or `message` is not a table with string keys or
    holds something JSON cannot carry (a function, NaN).

    ```lua
    local ok, err = hub_client.send(conn, {type = "subscribe", channel = "hub"})
    if not ok then log.warn(err) end
    -- on_message then receives {type = "subscribed", channel = "hub"}, then events
    ```
    """
    data = _encode(_object(message, "message"), "message")
    conn = hub.state(_State).conns.get(conn_id)
    if conn is None:
        return None, _unknown(hub, "send", conn_id)
    if conn.state == "gone":
        return None, f"hub_client.send: {conn_id}: {conn.ended}"
    if conn.state == "connecting":
        if len(data) - 4 > conn.max_frame:
            return None, (
                f"hub_client.send: {conn_id}: message of {len(data) - 5} bytes is over "
                f"the frame limit ({conn.max_frame})"
            )
        if len(conn.outbox) >= MAX_OUTBOX or conn.outbox_bytes + len(data) > MAX_OUTBOX_BYTES:
            return None, (
                f"hub_client.send: {conn_id}: the queue is full ({len(conn.outbox)} messages "
                "are waiting for the connection to open)"
            )
        conn.outbox.append(data)
        conn.outbox_bytes += len(data)
        return True
    err = _write(conn, data)
    if err is not None:
        return None, f"hub_client.send: {conn_id}: {err}"
    return True


@lua_api
async def request(
    hub: HubContext,
    conn_id: str,
    command: str,
    args: Any = None,
    opts: RequestOptions | None = None,
) -> Any:
    """hub_client.request(conn_id, command, args?, opts?) -> result | nil, err

    Runs one of the other hub's commands (`ping`, `hub.info`, `plugins.list`,
    `plugins.reload`, `mcp.list_tools`, `mcp.call_tool`, `commands.list`, or any a plugin
    there registered) and returns its result. Suspends only the calling task; the hub keeps
    serving everything else. Waits for the connection if it is still being set up.

    * `conn_id`: an id from `hub_client.connect`.
    * `command`: the command's name.
    * `args`: a table with string keys, the command's arguments (default: `{}`).
    * `opts.timeout`: seconds to wait for the connection and the answer together
      (default: 30).

    Returns the command's result (a command that returns nothing gives `json.null`), or
    `nil, err` when the other hub answered with an error (`"hub_client.request: nope:
    unknown command 'nope'"`), nothing came back within the timeout, or the connection is
    unknown, failed, closed or dropped meanwhile (at once if it had already ended).
    Raises when `conn_id` or `command` is not a string, `args` is not a table with string
    keys, or on a bad option.

    ```lua
    local pong, err = hub_client.request(conn, "ping", {echo = "hi"})
    if pong then log.info(pong.echo) else log.warn(err) end
    local r = hub_client.request(conn, "mcp.call_tool", {name = "search", arguments = {q = "x"}})
    ```
    """
    payload = _object(args, "args", optional=True)
    timeout = (opts or {}).get("timeout", DEFAULT_TIMEOUT)
    if not math.isfinite(timeout) or timeout <= 0:
        raise ArgumentError(
            f"opts.timeout: expected a positive number of seconds, got {describe(timeout)}"
        )
    if not command:
        raise ArgumentError("command: expected a command name, got an empty string")
    rid = f"{_REQ_PREFIX}{next(_req_ids)}"
    frame = _encode({"type": "request", "id": rid, "command": command, "args": payload}, "args")
    conn = hub.state(_State).conns.get(conn_id)
    if conn is None:
        return None, _unknown(hub, "request", conn_id)
    if conn.state == "gone":
        return None, f"hub_client.request: {conn_id}: {conn.ended}"
    fut: asyncio.Future[dict[str, Any] | str] = asyncio.get_running_loop().create_future()
    try:
        async with asyncio.timeout(timeout):
            if conn.state == "connecting":
                await conn.ready.wait()
            if conn.state != "open":
                return None, f"hub_client.request: {conn_id}: {conn.ended}"
            conn.pending[rid] = fut
            err = _write(conn, frame)
            if err is not None:
                return None, f"hub_client.request: {conn_id}: {err}"
            reply = await fut
    except TimeoutError:
        return None, f"hub_client.request: {command}: no answer within {timeout:g} s"
    finally:
        conn.pending.pop(rid, None)
    if isinstance(reply, str):
        return None, f"hub_client.request: {conn_id}: {reply}"
    if reply.get("ok") is True:
        result = reply.get("result")
        return JSON_NULL if result is None else result
    return None, f"hub_client.request: {command}: {reply.get('error', 'failed')}"


@lua_api
def close(hub: HubContext, conn_id: str) -> bool:
    """hub_client.close(conn_id) -> bool

    Closes a connection: what was already sent is flushed, pending requests return
    `nil, err`, and nothing more is delivered (no `disconnected` message: you closed it).
    Returns `true` if the connection was connecting or open, `false` if the id is unknown or
    the connection had already ended; a second close returns `false`.
    Raises when `conn_id` is not a string.

    ```lua
    hub_client.close(conn)
    ```
    """
    conn = hub.state(_State).conns.get(conn_id)
    if conn is None:
        return False
    live = conn.state != "gone"
    _stop(conn, "closed with hub_client.close")
    _forget(hub, conn, conn.ended)
    return live


LUA = {
    "connect": connect,
    "on_message": on_message,
    "send": send,
    "request": request,
    "close": close,
}
WRONG_DOOR = {
    "open": "use hub_client.connect(socket_path)",
    "dial": "use hub_client.connect(socket_path)",
    "disconnect": "use hub_client.close(conn_id)",
    "call": "use hub_client.request(conn_id, command, args)",
    "send_request": "use hub_client.request(conn_id, command, args)",
    "subscribe": 'use hub_client.send(conn_id, {type = "subscribe", channel = "hub"})',
    "on": "use hub_client.on_message(conn_id, fn)",
    "on_event": 'use hub_client.on_message(conn_id, fn); events arrive as {type = "event"}',
    "on_disconnect": (
        'use hub_client.on_message(conn_id, fn); a drop arrives as {type = "disconnected"}'
    ),
    "on_disconnected": (
        'use hub_client.on_message(conn_id, fn); a drop arrives as {type = "disconnected"}'
    ),
}
