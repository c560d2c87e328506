"""The ``action_cable`` primitive: ActionCable connections to the hub's relay.

Owns the hub's ActionCable client: ``connect``, ``subscribe``, ``perform``, ``unsubscribe`` and
``close``, and the per-hub table of connections and channels (one ``_Cables`` on the hub). A
connection is one background task owned by the plugin that opened it. It opens
``<relay>/cable`` with the hub token (``Authorization: Bearer``), re-sends every subscription
after each ``welcome``, queues performs for a subscription the relay has not confirmed yet and
flushes them on ``confirm_subscription``, re-subscribes when no confirmation arrives in 5 s,
treats 15 s without any frame as a dead socket, and reconnects with backoff (1 s doubling to
60 s) for as long as the plugin keeps it. Messages run the subscriber's callback as a task of
its plugin, in the order they arrived. Identifiers are ``{"channel": name}`` merged with the
params, serialised once with sorted keys and no spaces, and matched byte for byte.

``connect({crypto = true})`` decrypts signal envelopes (``{"type": "signal", "envelope":
{"t": 0|1, ...}}``) before the callback sees them, through one hook:
``botster.remote.olm.decrypt_envelope(hub, browser_identity, envelope)`` (see
``REMOTE-WIRE`` in docs/relay-client.md). Without that module the option does nothing, said
once in the log.

Leaves where the relay is, the token and registration to ``botster/hub/relay_link.py``;
argument checking, conversion and scheduling to ``botster.lua``; the relay server to
``botster/relay``.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import aiohttp

from botster.errors import ArgumentError
from botster.hub import net
from botster.hub.context import current_hub
from botster.lua.api import LuaFunction, lua_api

if TYPE_CHECKING:
    from botster.hub.daemon import Hub
    from botster.hub.relay_link import Endpoint

__all__ = ["LUA", "WRONG_DOOR", "active_count", "identifier_for"]

log = logging.getLogger("action_cable")

MAX_PER_OWNER = 16  # connections per plugin
MAX_CHANNELS = 256  # subscriptions per connection
MAX_QUEUED = 256  # performs waiting for one subscription's confirmation
MAX_MESSAGE = 16 << 20  # bytes in one received frame
CONNECT_TIMEOUT = 15.0  # seconds for TCP + TLS + the upgrade
RECONNECT_MIN, RECONNECT_MAX = 1.0, 60.0
CONFIRM_TIMEOUT = 5.0  # re-subscribe when the relay has not confirmed in this long
CONFIRM_CHECK = 1.0  # how often unconfirmed subscriptions are checked
SILENCE_TIMEOUT = 15.0  # no frame at all (the relay pings every 3 s): the socket is dead
CLOSE_TIMEOUT = 2.0


class ConnectOptions(TypedDict, total=False):
    """The options table of ``action_cable.connect``."""

    crypto: bool


@dataclass(eq=False)
class _Channel:
    id: str
    conn: _Conn
    owner: str
    identifier: str
    callback: Any
    confirmed: bool = False
    sent_at: float | None = None  # when the last subscribe command went out
    queue: collections.deque[str] = field(default_factory=collections.deque)


@dataclass(eq=False)
class _Conn:
    id: str
    owner: str
    crypto: bool
    channels: dict[str, _Channel] = field(default_factory=dict)  # by identifier
    task: asyncio.Task[None] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    out: asyncio.Queue[str] | None = None  # frames for the open, welcomed socket
    closed: bool = False


class _Cables:
    """One hub's ActionCable client: its connections, channels, ids and HTTP session."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.conns: dict[str, _Conn] = {}
        self.channels: dict[str, _Channel] = {}
        self.conn_ids = itertools.count(1)
        self.channel_ids = itertools.count(1)
        self.session = net.LazySession()
        # botster.remote.olm.decrypt_envelope once looked up; False when it is not there.
        self.decrypt: Callable[..., Any] | bool | None = None


def _state() -> _Cables:
    hub = current_hub()
    state: _Cables | None = getattr(hub, "_action_cable", None)
    if state is None:
        state = _Cables(hub)
        hub._action_cable = state  # type: ignore[attr-defined]
    return state


def active_count(owner: str | None = None) -> int:
    """How many connections are open or reconnecting, for everyone or one owner."""
    conns = _state().conns.values()
    return sum(1 for c in conns if owner is None or c.owner == owner)


def identifier_for(channel_name: str, params: dict[str, Any]) -> str:
    """The identifier string: ``{"channel": name}`` merged with `params`, sorted, compact."""
    return json.dumps({**params, "channel": channel_name}, sort_keys=True, separators=(",", ":"))


# The connection task ----------------------------------------------------------------------


async def _run(st: _Cables, conn: _Conn) -> None:
    endpoint = await st.hub.relay.endpoint()
    if endpoint is None:
        log.warning("[%s] %s: no relay to connect to", conn.owner, conn.id)
        _forget(st, conn)
        st.hub.owners.discard(conn.owner, conn.id)
        return
    delay = RECONNECT_MIN
    while True:
        welcomed = False
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                ws = await st.session.get().ws_connect(
                    endpoint.cable_url,
                    headers={"Authorization": f"Bearer {endpoint.token}"},
                    max_msg_size=MAX_MESSAGE,
                    autoping=True,  # answer WebSocket-level pings
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            log.info(
                "[%s] %s: cannot connect to %s: %s; retrying in %.0f s",
                conn.owner,
                conn.id,
                net.shown(endpoint.cable_url),
                _reason(e),
                delay,
            )
        else:
            try:
                welcomed = await _session(st, conn, ws, endpoint)
            finally:
                _socket_gone(conn)
                if not ws.closed:
                    name = f"action_cable {conn.id} close"
                    st.hub.spawn(_close_quietly(ws), name=name, owner="hub")
            if welcomed:
                delay = RECONNECT_MIN
            log.info(
                "[%s] %s: disconnected; reconnecting in %.0f s",
                conn.owner,
                conn.id,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX)


def _socket_gone(conn: _Conn) -> None:
    conn.ws = None
    conn.out = None
    for ch in conn.channels.values():
        ch.confirmed = False
        ch.sent_at = None


async def _session(
    st: _Cables, conn: _Conn, ws: aiohttp.ClientWebSocketResponse, endpoint: Endpoint
) -> bool:
    """Serves one socket until it ends; True if the relay welcomed it."""
    conn.ws = ws
    welcomed = False
    out: asyncio.Queue[str] = asyncio.Queue()
    # Helpers of this one socket, cancelled in the finally below (not hub.spawn: they must
    # never outlive the socket, and the connection task that owns them is already tracked).
    writer = asyncio.ensure_future(_write(ws, out))
    watchdog: asyncio.Future[None] | None = None
    try:
        while True:
            try:
                msg = await ws.receive(timeout=SILENCE_TIMEOUT)
            except TimeoutError:
                log.info(
                    "[%s] %s: no frame for %.0f s; the socket is dead",
                    conn.owner,
                    conn.id,
                    SILENCE_TIMEOUT,
                )
                return welcomed
            if msg.type is not aiohttp.WSMsgType.TEXT:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    continue
                return welcomed  # CLOSE, CLOSING, CLOSED or ERROR
            try:
                frame = json.loads(msg.data)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "welcome":
                welcomed = True
                conn.out = out
                for ch in list(conn.channels.values()):
                    _send_subscribe(ch)
                if watchdog is None:
                    watchdog = asyncio.ensure_future(_watch_confirmations(conn))
            elif kind == "ping":
                pass
            elif kind == "disconnect":
                log.info(
                    "[%s] %s: the relay disconnected us (%s)",
                    conn.owner,
                    conn.id,
                    frame.get("reason"),
                )
                return welcomed
            elif kind == "confirm_subscription":
                _confirmed(conn, frame.get("identifier"))
            elif kind == "reject_subscription":
                _rejected(st, conn, frame.get("identifier"))
            elif "message" in frame and isinstance(frame.get("identifier"), str):
                ch = conn.channels.get(frame["identifier"])
                if ch is not None:
                    await _deliver(st, ch, frame["message"])
    finally:
        writer.cancel()
        if watchdog is not None:
            watchdog.cancel()


async def _write(ws: aiohttp.ClientWebSocketResponse, out: asyncio.Queue[str]) -> None:
    """Sends queued frames in order, so performs reach the relay in the order they were made."""
    while True:
        frame = await out.get()
        try:
            await ws.send_str(frame)
        except (aiohttp.ClientError, OSError, RuntimeError):
            return  # the reader sees the socket end and reconnects


async def _watch_confirmations(conn: _Conn) -> None:
    while True:
        await asyncio.sleep(CONFIRM_CHECK)
        now = time.monotonic()
        for ch in list(conn.channels.values()):
            if not ch.confirmed and ch.sent_at is not None and now - ch.sent_at >= CONFIRM_TIMEOUT:
                log.info(
                    "[%s] %s: %s not confirmed in %.0f s; subscribing again",
                    ch.owner,
                    ch.id,
                    ch.identifier,
                    CONFIRM_TIMEOUT,
                )
                _send_subscribe(ch)


def _frame(command: str, identifier: str) -> str:
    return json.dumps({"command": command, "identifier": identifier}, separators=(",", ":"))


def _send_subscribe(ch: _Channel) -> None:
    out = ch.conn.out
    if out is None:
        return  # sent after the next welcome
    out.put_nowait(_frame("subscribe", ch.identifier))
    ch.sent_at = time.monotonic()


def _confirmed(conn: _Conn, identifier: Any) -> None:
    ch = conn.channels.get(identifier) if isinstance(identifier, str) else None
    if ch is None or conn.out is None:
        return
    ch.confirmed = True
    while ch.queue:
        conn.out.put_nowait(ch.queue.popleft())


def _rejected(st: _Cables, conn: _Conn, identifier: Any) -> None:
    ch = conn.channels.get(identifier) if isinstance(identifier, str) else None
    if ch is None:
        return
    log.warning("[%s] %s: the relay rejected the subscription %s", ch.owner, ch.id, identifier)
    _drop_channel(st, ch)
    st.hub.owners.discard(ch.owner, ch.id)


async def _deliver(st: _Cables, ch: _Channel, message: Any) -> None:
    if ch.conn.crypto:
        message = await _decrypted(st, message)
        if st.channels.get(ch.id) is not ch:
            return  # unsubscribed while decrypting
    hub = st.hub
    hub.host.sched.start(
        ch.owner,
        f"action_cable {ch.id} message",
        ch.callback,
        hub.host.convert.to_lua(message),
        ch.id.encode(),
    )


async def _decrypted(st: _Cables, message: Any) -> Any:
    """A signal message with its Olm envelope decoded (or ``decrypt_failed``), else as is."""
    if not isinstance(message, dict) or message.get("type") != "signal":
        return message
    envelope = message.get("envelope")
    if isinstance(envelope, str):
        try:
            envelope = json.loads(envelope)
        except ValueError:
            return message
    if not isinstance(envelope, dict) or envelope.get("t") not in (0, 1):
        return message
    decrypt = await _decryptor(st)
    if decrypt is None:
        return message
    try:
        plain = decrypt(st.hub, message.get("browser_identity"), envelope)
        if asyncio.iscoroutine(plain):
            plain = await plain
    except Exception as e:
        log.info("action_cable: a signal envelope did not decrypt: %s", type(e).__name__)
        return {**message, "decrypt_failed": True}
    return {**message, "envelope": plain}


async def _decryptor(st: _Cables) -> Callable[..., Any] | None:
    if st.decrypt is None:
        try:
            module = await st.hub.run_blocking(importlib.import_module, "botster.remote.olm")
            st.decrypt = module.decrypt_envelope
        except (ImportError, AttributeError):
            log.warning(
                "action_cable: crypto = true, but botster.remote.olm.decrypt_envelope is not "
                "available; signal envelopes are passed through undecrypted"
            )
            st.decrypt = False
    return st.decrypt or None  # type: ignore[return-value]


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    try:
        await ws.close()
    except (aiohttp.ClientError, OSError):
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"the relay refused the websocket upgrade (HTTP {exc.status})"
    return net.reason(exc, CONNECT_TIMEOUT)


# Releasing --------------------------------------------------------------------------------


def _drop_channel(st: _Cables, ch: _Channel) -> None:
    if st.channels.get(ch.id) is ch:
        del st.channels[ch.id]
    if ch.conn.channels.get(ch.identifier) is ch:
        del ch.conn.channels[ch.identifier]
    ch.queue.clear()


def _forget(st: _Cables, conn: _Conn) -> None:
    """Ends a connection: its channels go, its task stops, the socket closes."""
    conn.closed = True
    if st.conns.get(conn.id) is conn:
        del st.conns[conn.id]
    for ch in list(conn.channels.values()):
        _drop_channel(st, ch)
        st.hub.owners.discard(ch.owner, ch.id)
    if conn.task is not None and conn.task is not asyncio.current_task():
        conn.task.cancel()


# Lua-facing -------------------------------------------------------------------------------


def _conn_of(st: _Cables, fn: str, conn_id: str) -> _Conn | str:
    conn = st.conns.get(conn_id)
    owner = st.hub.host.current_owner()
    if conn is None or conn.owner != owner:
        return f"action_cable.{fn}: {conn_id}: no such connection (closed, or not this plugin's)"
    return conn


@lua_api
def connect(opts: ConnectOptions | None = None) -> str | tuple[None, str]:
    """action_cable.connect(opts?) -> conn_id | nil, err

    Opens an ActionCable connection to the hub's relay (`<relay>/cable`, authenticated with
    the hub token) in the background and returns its id at once. There is no URL argument:
    the relay is `BOTSTER_SERVER_URL` or config `server_url`, else the hub's embedded relay.
    The connection lives until `action_cable.close` or the plugin unloads: when the socket
    drops it reconnects with backoff (1 s doubling to 60 s) and subscribes again.

    * `opts.crypto`: decrypt end-to-end encrypted signal envelopes before callbacks see them:
      a `{type = "signal", envelope = {t = 0|1, ...}}` message arrives with `envelope`
      replaced by the decrypted table, or with `decrypt_failed = true` (default: false).

    Returns the connection id (`"ac_conn_1"`), or `nil, err` when no relay is configured
    (`"no relay configured: set server_url or BOTSTER_SERVER_URL"`), when the hub found it
    cannot use one (no hub token, the embedded relay failed to start; the error says which),
    or when the plugin already has 16 connections. A connection made before the hub knew
    that ends at once, with a warning in the log.
    Raises on an unknown option key or a non-boolean `opts.crypto`.

    ```lua
    local conn = action_cable.connect({crypto = true})
    if not conn then log.warn("no relay: " .. err) end
    ```
    """
    st = _state()
    hub = st.hub
    why = hub.relay.unavailable()
    if why is not None:
        return None, why
    owner = hub.host.current_owner()
    if active_count(owner) >= MAX_PER_OWNER:
        return None, (
            f"action_cable.connect: {owner} already has {MAX_PER_OWNER} connections; "
            "close some with action_cable.close(conn)"
        )
    conn = _Conn(f"ac_conn_{next(st.conn_ids)}", owner, bool((opts or {}).get("crypto")))
    st.conns[conn.id] = conn
    hub.owners.add(owner, conn.id, lambda: _forget(st, conn))
    conn.task = hub.spawn(_run(st, conn), name=f"action_cable {conn.id}", owner=owner)
    return conn.id


@lua_api
def subscribe(
    conn: str, channel_name: str, params: dict[str, Any] | None, callback: LuaFunction
) -> str | tuple[None, str]:
    """action_cable.subscribe(conn, channel_name, params, callback) -> channel_id | nil, err

    Subscribes to a channel on a connection. The identifier the relay sees is
    `{"channel": channel_name}` merged with `params`, as JSON with sorted keys and no spaces
    (so the same call always sends the same bytes). The subscription outlives reconnects: it
    is sent again after each `welcome`, and again if the relay has not confirmed it in 5 s.

    * `conn`: an id from `action_cable.connect` (this plugin's).
    * `channel_name`: the channel, e.g. `"HubCommandChannel"`.
    * `params`: table of identifier params (JSON data; may be nil); no `channel` key.
    * `callback`: `function(msg, channel_id)`, run as a task of this plugin for each message
      the channel sends, in order; `msg` is the decoded `message` table.

    Returns the channel id (`"ac_ch_1"`), or `nil, err` when the connection is unknown (closed,
    or another plugin's), the same identifier is already subscribed on it, or it has 256
    subscriptions. If the relay rejects the subscription it is dropped and a warning logged.
    Raises when an argument has the wrong type or `params` has a `channel` key.

    ```lua
    local ch = action_cable.subscribe(conn, "HubCommandChannel",
      {hub_id = hub.server_id()}, function(msg, ch) log.info(msg.type) end)
    ```
    """
    params = params or {}
    if "channel" in params:
        raise ArgumentError("params.channel: the channel name is the second argument")
    if not channel_name:
        raise ArgumentError("channel_name: expected a non-empty string, got an empty string")
    try:
        identifier = identifier_for(channel_name, params)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"params: not JSON data ({e})") from None
    st = _state()
    found = _conn_of(st, "subscribe", conn)
    if isinstance(found, str):
        return None, found
    c = found
    existing = c.channels.get(identifier)
    if existing is not None:
        return None, f"action_cable.subscribe: {identifier} is already subscribed as {existing.id}"
    if len(c.channels) >= MAX_CHANNELS:
        return None, f"action_cable.subscribe: {conn} already has {MAX_CHANNELS} subscriptions"
    ch = _Channel(f"ac_ch_{next(st.channel_ids)}", c, c.owner, identifier, callback)
    c.channels[identifier] = ch
    st.channels[ch.id] = ch
    st.hub.owners.add(ch.owner, ch.id, lambda: _drop_channel(st, ch))
    _send_subscribe(ch)
    return ch.id


@lua_api
def perform(channel_id: str, action: str, data: dict[str, Any] | None = None) -> Any:
    """action_cable.perform(channel_id, action, data?) -> true | nil, err

    Calls `action` on the channel with `data` (the relay receives `{"action": action, ...data}`).
    Performs made before the relay confirmed the subscription (or while reconnecting) wait
    and are sent, in order, once it does.

    * `channel_id`: an id from `action_cable.subscribe`.
    * `action`: the channel action, e.g. `"signal"`.
    * `data`: table of fields (JSON data; default: none); no `action` key.

    Returns `true`, or `nil, err` when the channel is unknown (unsubscribed, rejected, or
    another plugin's) or 256 performs already wait for its confirmation.
    Raises when an argument has the wrong type or `data` has an `action` key.

    ```lua
    action_cable.perform(ch, "signal", {browser_identity = id, envelope = env})
    ```
    """
    data = data or {}
    if "action" in data:
        raise ArgumentError("data.action: the action is the second argument")
    if not action:
        raise ArgumentError("action: expected a non-empty string, got an empty string")
    st = _state()
    ch = st.channels.get(channel_id)
    if ch is None or ch.owner != st.hub.host.current_owner():
        return None, (
            f"action_cable.perform: {channel_id}: no such channel "
            "(unsubscribed, rejected, or not this plugin's)"
        )
    try:
        payload = json.dumps({**data, "action": action}, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"data: not JSON data ({e})") from None
    frame = json.dumps(
        {"command": "message", "identifier": ch.identifier, "data": payload},
        separators=(",", ":"),
    )
    out = ch.conn.out
    if ch.confirmed and out is not None:
        out.put_nowait(frame)
        return True
    if len(ch.queue) >= MAX_QUEUED:
        return None, (
            f"action_cable.perform: {channel_id}: {MAX_QUEUED} performs already wait for the "
            "relay to confirm the subscription"
        )
    ch.queue.append(frame)
    return True


@lua_api
def unsubscribe(channel_id: str) -> bool:
    """action_cable.unsubscribe(channel_id) -> bool

    Ends a subscription: its callback is never called again, even for messages already on
    their way, and the relay is told. Unsent performs are dropped.

    * `channel_id`: an id from `action_cable.subscribe`.

    Returns `true`, or `false` when the channel was already gone (unsubscribing twice is fine).

    ```lua
    action_cable.unsubscribe(ch)
    ```
    """
    st = _state()
    ch = st.channels.get(channel_id)
    if ch is None or ch.owner != st.hub.host.current_owner():
        return False
    _drop_channel(st, ch)
    st.hub.owners.discard(ch.owner, ch.id)
    out = ch.conn.out
    if out is not None:
        out.put_nowait(_frame("unsubscribe", ch.identifier))
    return True


@lua_api
def close(conn: str) -> bool:
    """action_cable.close(conn) -> bool

    Closes a connection and every subscription on it; no callback runs after this. The
    relay sees the socket close.

    * `conn`: an id from `action_cable.connect`.

    Returns `true`, or `false` when the connection was already closed (closing twice is fine).

    ```lua
    action_cable.close(conn)
    ```
    """
    st = _state()
    found = _conn_of(st, "close", conn)
    if isinstance(found, str):
        return False
    _forget(st, found)
    st.hub.owners.discard(found.owner, found.id)
    return True


LUA = {
    "connect": connect,
    "subscribe": subscribe,
    "perform": perform,
    "unsubscribe": unsubscribe,
    "close": close,
}
WRONG_DOOR = {
    "send": "use action_cable.perform(channel_id, action, data)",
    "disconnect": "use action_cable.close(conn)",
    "open": "use action_cable.connect(opts)",
    "on_message": "pass a callback to action_cable.subscribe(conn, channel, params, fn)",
}
