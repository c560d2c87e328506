"""The ``websocket`` primitive: client connections, ``connect``, ``send`` and ``close``.

Owns the hub's websocket client (a ``botster.hub.net.LazySession`` of its own, apart from
``http``'s, so open sockets never hold up HTTP requests) and the table of live connections.
Each connection is one background task owned by the plugin that opened it: it connects, then
reads frames and runs the plugin's callbacks (``on_open``, ``on_message``, ``on_close``,
``on_error``) as tasks of that plugin, in the order the frames arrived. No thread is involved;
the spec's "dedicated OS thread" is an implementation detail of the original that asyncio
makes unnecessary.

Lifecycle of a connection id ("ws_1"): connecting -> open -> closing -> gone. Every connection
ends with exactly one of ``on_close(code, reason)`` or ``on_error(err)`` unless its plugin is
unloaded first: unloading closes the plugin's sockets without calling anything back. Once a
connection has ended its id is unknown, and ``send``/``close`` on it return ``nil, err``.

Leaves plain HTTP to ``http.py``, argument checking, conversion and scheduling to
``botster.lua``, and the client's configuration and the words for failures any connection can
meet to ``botster.hub.net`` (those only a websocket meets, a refused upgrade, are here).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, TypedDict

import aiohttp
from yarl import URL

from botster.errors import ArgumentError
from botster.hub import net
from botster.hub.context import HubContext
from botster.lua.api import LuaFunction, lua_api

__all__ = ["LUA", "WRONG_DOOR", "active_count"]

MAX_PER_OWNER = 64  # live connections per plugin
MAX_MESSAGE = 16 << 20  # bytes in one received message
CONNECT_TIMEOUT = 30.0  # seconds for TCP + TLS + the upgrade handshake
CLOSE_TIMEOUT = 5.0  # seconds to wait for the peer's close frame


class ConnectOptions(TypedDict, total=False):
    """The options table of ``websocket.connect``."""

    headers: dict[str, str]
    on_open: LuaFunction
    on_message: LuaFunction
    on_close: LuaFunction
    on_error: LuaFunction


class SendOptions(TypedDict, total=False):
    """The options table of ``websocket.send``."""

    binary: bool


@dataclass(eq=False)
class _Conn:
    id: str
    owner: str
    url: URL
    shown: str
    headers: dict[str, str]
    callbacks: dict[str, Any]
    state: str = "connecting"  # connecting | open | closing | gone
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None
    closer: asyncio.Task[Any] | None = None


_ids = itertools.count(1)


class _State:
    """One hub's websocket session and connections."""

    def __init__(self, hub: HubContext) -> None:
        # no total timeout; _run bounds the handshake by CONNECT_TIMEOUT
        self.client = net.LazySession(hub)
        self.conns: dict[str, _Conn] = {}


def _client(hub: HubContext) -> aiohttp.ClientSession:
    return hub.state(_State).client.get()


def active_count(hub: HubContext, owner: str | None = None) -> int:
    """How many connections are live, for everyone or one owner (for leak checks)."""
    return sum(1 for c in hub.state(_State).conns.values() if owner is None or c.owner == owner)


# Reasons ----------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """Why a connection failed: a websocket's own failures here, the rest from ``net.reason``."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the server refused the websocket upgrade (HTTP {exc.status}: {exc.message})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection during the handshake"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    return net.reason(exc, CONNECT_TIMEOUT)


# The connection task ----------------------------------------------------------------------


def _callback(hub: HubContext, conn: _Conn, name: str, *args: Any) -> None:
    fn = conn.callbacks.get(name)
    if fn is None:
        return
    lua_args = [hub.host.convert.to_lua(a) for a in args]
    hub.host.sched.start(conn.owner, f"websocket {conn.id} {name}", fn, *lua_args)


async def _deliver(hub: HubContext, conn: _Conn, name: str, *args: Any) -> None:
    _callback(hub, conn, name, *args)


def _forget(hub: HubContext, conn: _Conn) -> None:
    conn.state = "gone"
    if hub.state(_State).conns.get(conn.id) is conn:
        del hub.state(_State).conns[conn.id]
        hub.owners.discard(conn.owner, conn.id)


def _end(hub: HubContext, conn: _Conn, name: str, *args: Any) -> None:
    """Ends a connection with its one terminal callback (on_close or on_error)."""
    if conn.state == "gone":
        return
    _forget(hub, conn)
    _callback(hub, conn, name, *args)


async def _run(hub: HubContext, conn: _Conn) -> None:
    ws: aiohttp.ClientWebSocketResponse | None = None
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await _client(hub).ws_connect(
                    conn.url,
                    headers=conn.headers,
                    max_msg_size=MAX_MESSAGE,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                    decode_text=False,
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            _end(hub, conn, "on_error", f"websocket.connect: {conn.shown}: {_reason(e)}")
            return
        conn.ws = ws
        conn.state = "open"
        _callback(hub, conn, "on_open")
        code, reason = await _read(hub, conn, ws)
        if code is None:
            _end(hub, conn, "on_error", reason)
        else:
            _end(hub, conn, "on_close", code, reason)
    finally:
        if conn.state != "gone":  # only a bug gets here (the hub logs it): drop the entry
            _forget(hub, conn)
        if ws is not None and not ws.closed:  # cancelled: close politely, call nothing back
            hub.spawn(_close_quietly(ws), name=f"websocket {conn.id} close", owner="hub")


async def _read(
    hub: HubContext, conn: _Conn, ws: aiohttp.ClientWebSocketResponse
) -> tuple[int | None, str]:
    """Delivers messages until the connection ends: (code, reason), or (None, error)."""
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
            if conn.state == "open":  # after close() the plugin has said it wants no more
                _callback(hub, conn, "on_message", msg.data, msg.type is aiohttp.WSMsgType.BINARY)
            continue
        if msg.type is aiohttp.WSMsgType.CLOSE:  # the server closed; aiohttp has replied
            return int(msg.data), str(msg.extra or "")
        if msg.type is aiohttp.WSMsgType.ERROR:
            return None, f"websocket: {conn.id}: {_message_error(msg.data)}"
        # CLOSING (our close() is under way) or CLOSED (the connection is gone).
        if conn.closer is not None:
            await asyncio.shield(conn.closer)
            if ws.close_code == 1006:
                return 1006, "the server did not answer the close"
            return ws.close_code or 1000, ""
        code = ws.close_code
        if code is None or code == 1006:
            return 1006, "connection lost"
        return code, ""


def _message_error(exc: Any) -> str:
    if isinstance(exc, aiohttp.WebSocketError) and exc.code == 1009:
        return f"message exceeds the {MAX_MESSAGE >> 20} MiB limit"
    return str(exc) or type(exc).__name__


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    try:
        await ws.close()
    except (aiohttp.ClientError, OSError):
        pass


def _release(hub: HubContext, conn: _Conn) -> None:
    """Owner unloaded: drop the connection without calling anything back."""
    conn.state = "gone"
    hub.state(_State).conns.pop(conn.id, None)
    if conn.task is not None:
        conn.task.cancel()


# Checking ---------------------------------------------------------------------------------


def _check_url(url: str) -> URL:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("ws", "wss") or not parsed.host:
        hint = ""
        if parsed is not None and parsed.scheme in ("http", "https"):
            hint = " (use ws:// or wss://)"
        raise ArgumentError(f"url: expected a ws:// or wss:// URL, got {url!r}{hint}")
    return parsed


# Lua-facing -------------------------------------------------------------------------------


@lua_api
def connect(
    hub: HubContext, url: str, opts: ConnectOptions | None = None
) -> str | tuple[None, str]:
    """websocket.connect(url, opts?) -> conn_id | nil, err

    Opens a websocket client connection in the background and returns its id at once. The
    callbacks run later as tasks of the calling plugin, in the order frames arrived. Every
    connection ends with exactly one `on_close` or `on_error` (neither if the plugin is
    unloaded first: unloading closes its sockets silently).

    * `url`: a ws:// or wss:// URL (TLS certificates are verified).
    * `opts.headers`: table of handshake headers, name -> string (default: none).
    * `opts.on_open`: `function()` once the handshake is done (default: none).
    * `opts.on_message`: `function(msg, is_binary)` for each message; `msg` is a string (binary
      frames too), `is_binary` tells a binary frame from a text one (default: none).
    * `opts.on_close`: `function(code, reason)` when the connection closes: the server's code
      and reason, 1000 after `websocket.close`, 1006 "connection lost" if it dropped.
    * `opts.on_error`: `function(err)` when connecting fails (refused, TLS, handshake, 30 s
      timeout) or the connection breaks (a protocol error, a message over 16 MiB).

    Returns the connection id (`"ws_1"`), or `nil, err` when the plugin already has 64 open
    connections.
    Raises when `url` is not a ws(s) URL, on an unknown option key, or when a callback is not
    a function.

    ```lua
    local id = websocket.connect("wss://example.com/feed", {
      on_message = function(msg) log.info("got " .. msg) end,
      on_error = function(err) log.warn(err) end })
    ```
    """
    parsed = _check_url(url)
    options = opts or {}
    headers = net.check_headers(options.get("headers"), "opts.headers")
    owner = hub.host.current_owner()
    if active_count(hub, owner) >= MAX_PER_OWNER:
        return None, (
            f"websocket.connect: {owner} already has {MAX_PER_OWNER} open connections; "
            "close some with websocket.close(id)"
        )
    callbacks = {k: v for k, v in options.items() if k.startswith("on_")}
    conn = _Conn(f"ws_{next(_ids)}", owner, parsed, net.shown(parsed), headers, callbacks)
    hub.state(_State).conns[conn.id] = conn
    hub.owners.add(owner, conn.id, lambda: _release(hub, conn))
    conn.task = hub.spawn(_run(hub, conn), name=f"websocket {conn.id}", owner=owner)
    return conn.id


@lua_api
async def send(hub: HubContext, id: str, msg: bytes, opts: SendOptions | None = None) -> Any:
    """websocket.send(conn_id, msg, opts?) -> true | nil, err

    Sends one message: a text frame, or a binary frame with `opts.binary`. Suspends only the
    calling task until the frame is handed to the network. A module function: `conn_id` is a
    string, not an object, so there is no `conn_id:send(...)`.

    * `conn_id`: an id from `websocket.connect`.
    * `msg`: the message, a string; for a text frame it must be valid UTF-8.
    * `opts.binary`: send a binary frame (default: false).

    Returns `true`, or `nil, err` when the connection is unknown, not open yet (before
    `on_open`), closing, closed, or the write failed.
    Raises when `msg` is not a string, a text frame is not valid UTF-8, or on an unknown option
    key.

    ```lua
    local ok, err = websocket.send(id, json.encode({type = "ping"}))
    if not ok then log.warn(err) end
    websocket.send(id, "\\0\\1\\2", {binary = true})
    ```
    """
    binary = bool((opts or {}).get("binary", False))
    if not binary:
        try:
            msg.decode("utf-8")
        except UnicodeDecodeError:
            raise ArgumentError(
                "msg: a text frame must be valid UTF-8 (pass {binary = true} to send bytes)"
            ) from None
    conn = hub.state(_State).conns.get(id)
    if conn is None:
        return None, f"websocket.send: {id}: no such connection (closed, or never opened)"
    if conn.state != "open" or conn.ws is None:
        what = "is not open yet (wait for on_open)" if conn.state == "connecting" else "is closing"
        return None, f"websocket.send: {id}: connection {what}"
    try:
        if binary:
            await conn.ws.send_bytes(msg)
        else:
            await conn.ws.send_frame(msg, aiohttp.WSMsgType.TEXT)
    except (aiohttp.ClientError, OSError, RuntimeError) as e:
        return None, f"websocket.send: {id}: {_reason(e)}"
    return True


@lua_api
def close(hub: HubContext, id: str) -> bool | tuple[None, str]:
    """websocket.close(conn_id) -> true | nil, err

    Starts closing a connection with code 1000. No more `on_message` calls follow; `on_close`
    runs once the server has answered (at once, with reason "closed before the connection
    opened", if it was still connecting). Closing a connection that is already closing
    returns true.

    * `conn_id`: an id from `websocket.connect`.

    Returns `true`, or `nil, err` when the id is unknown or the connection already ended.
    Raises when `conn_id` is not a string.

    ```lua
    local ok, err = websocket.close(id)
    if not ok then log.warn(err) end
    -- on_close(1000, "") follows
    ```
    """
    conn = hub.state(_State).conns.get(id)
    if conn is None:
        return None, f"websocket.close: {id}: no such connection (closed, or never opened)"
    if conn.state == "closing":
        return True
    if conn.state == "connecting" or conn.ws is None:
        if conn.task is not None:
            conn.task.cancel()
        _forget(hub, conn)
        # On the next loop turn, not inside this call; still owned, so an unload cancels it.
        hub.spawn(
            _deliver(hub, conn, "on_close", 1000, "closed before the connection opened"),
            name=f"websocket {id} on_close",
            owner=conn.owner,
        )
        return True
    conn.state = "closing"
    conn.closer = hub.spawn(conn.ws.close(), name=f"websocket {id} close", owner=conn.owner)
    return True


LUA = {"connect": connect, "send": send, "close": close}
WRONG_DOOR = {
    "open": "use websocket.connect(url, {on_message = fn, ...})",
    "new": "use websocket.connect(url, {on_message = fn, ...})",
    "dial": "use websocket.connect(url, {on_message = fn, ...})",
    "write": "use websocket.send(conn_id, msg)",
    "send_text": "use websocket.send(conn_id, msg)",
    "send_binary": "use websocket.send(conn_id, data, {binary = true})",
    "disconnect": "use websocket.close(conn_id)",
    "on_message": "pass on_message in websocket.connect's options table",
    "on": "pass on_open/on_message/on_close/on_error in websocket.connect's options table",
}
