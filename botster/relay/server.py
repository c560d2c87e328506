"""The relay's aiohttp app: REST for hubs, ``/cable``, the web app; and ways to run it.

* ``start_relay(host, port, data_dir, redis_url=None, public_url=None)`` runs the app on the
  caller's loop (the hub's embedded relay) and returns a ``RunningRelay``;
* ``run_relay_blocking(...)`` is ``botster relay``: the same, until SIGINT/SIGTERM.

REST (JSON; errors are ``{"error": "..."}``):

| route | auth | |
|---|---|---|
| ``POST /hubs`` ``{"identifier": ...}`` | Bearer | 201 new, 200 known: ``{"id", "identifier"}`` |
| ``GET /hubs`` | Bearer | this token's hubs |
| ``PUT /hubs/<id>`` ``{"alive": false}`` | Bearer, owner | ``{"success": true, "hub_id"}`` |
| ``GET /hubs/<id>/webrtc`` | none | ``{"ice_servers": [...]}`` |
| ``GET /hubs/<id>/pairing``, ``GET /hubs/<id>`` | none | the web app's HTML shell |
| ``GET /healthz`` | none | ``{"ok": true}`` |

Everything else under GET is a file of the built web app (``botster/relay/static``), contained
in that directory. Leaves the ActionCable protocol to ``cable`` and storage to ``store``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from botster.relay.broker import Broker, LocalBroker, RedisBroker
from botster.relay.cable import PROTOCOL, WELCOME, Connection, TokenBucket
from botster.relay.settings import RelaySettings, load_settings
from botster.relay.store import RedisStore, SqliteStore, StoreError, open_store, redacted
from botster.relay.tokens import bearer_token, hash_token

__all__ = ["STATIC_DIR", "Relay", "RunningRelay", "make_app", "run_relay_blocking", "start_relay"]

log = logging.getLogger("botster.relay")

STATIC_DIR = Path(__file__).parent / "static"
PING_INTERVAL = 3.0
RECHECK_INTERVAL = 1.0  # how soon a revoked token's sockets close (without Redis' push)
PRESENCE_REFRESH = 30.0
MAX_IDENTIFIER = 256

NOT_BUILT = """<!doctype html>
<html><head><meta charset="utf-8"><title>Botster: web app not built</title></head>
<body><h1>The Botster web app is not built</h1>
<p>This relay is running, but <code>botster/relay/static/</code> holds no web app.
Build it with <code>make web</code> and reload this page.</p></body></html>
"""


@dataclass
class _Address:
    """Per peer address: open sockets and the rate buckets they share."""

    connections: int = 0
    messages: TokenBucket | None = None
    rest: TokenBucket | None = None
    connects: TokenBucket | None = None
    last_used: float = field(default_factory=time.monotonic)


class Relay:
    """The state of one relay process: store, broker, sockets, limits."""

    def __init__(
        self,
        store: SqliteStore | RedisStore,
        broker: Broker,
        settings: RelaySettings,
        *,
        static_dir: Path = STATIC_DIR,
    ) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings
        self.static_dir = static_dir
        self.instance = secrets.token_hex(4)
        self.connections: set[Connection] = set()
        self.presence_local: dict[str, set[str]] = {}
        self._addresses: dict[str, _Address] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tickers: list[asyncio.Task[None]] = []
        broker.on_control = self._control

    # -- tasks

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relay: task %s failed", task.get_name(), exc_info=task.exception())

    def start_tickers(self) -> None:
        loop = asyncio.get_running_loop()
        for name, fn, every in (
            ("relay-ping", self._ping_all, PING_INTERVAL),
            ("relay-recheck", self._recheck_tokens, RECHECK_INTERVAL),
            ("relay-presence", self._refresh_presence, PRESENCE_REFRESH),
        ):
            self._tickers.append(loop.create_task(self._every(every, fn), name=name))

    async def _every(self, seconds: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception:
                log.exception("relay: periodic %s failed", fn.__name__)

    async def _ping_all(self) -> None:
        frame = f'{{"type":"ping","message":{int(time.time())}}}'
        for conn in tuple(self.connections):
            conn.send_text(frame)
        now = time.monotonic()
        for addr, state in list(self._addresses.items()):
            if state.connections == 0 and now - state.last_used > 60.0:
                del self._addresses[addr]

    async def _recheck_tokens(self) -> None:
        """Closes the sockets of tokens that were revoked (by ``botster relay token``)."""
        hashes = {c.token_hash for c in self.connections if c.token_hash is not None}
        for digest in hashes:
            if await self.store.token_name(digest) is None:
                self.revoked(digest)

    def revoked(self, token_hash: str) -> None:
        for conn in tuple(self.connections):
            if conn.token_hash == token_hash:
                log.warning("relay: connection %s closed: its token was revoked", conn.id)
                conn.disconnect("unauthorized", reconnect=False, code=4001, detail="token revoked")

    def _control(self, message: dict[str, Any]) -> None:
        if message.get("type") == "revoked" and isinstance(message.get("token_hash"), str):
            self.revoked(message["token_hash"])

    async def _refresh_presence(self) -> None:
        if self.presence_local:
            await self.store.presence_refresh(self.presence_local)

    def begin_close(self) -> None:
        """Stops the tickers and tells every socket to go (they reconnect elsewhere)."""
        for t in self._tickers:
            t.cancel()
        for conn in tuple(self.connections):
            conn.disconnect("server_restart", reconnect=True, code=1012)

    async def close(self) -> None:
        """Ends what the socket handlers left, then the broker and the store."""
        self.begin_close()
        if self._tasks:
            await asyncio.wait(tuple(self._tasks), timeout=2.0)
        for conn in tuple(self.connections):
            await conn.close_subscriptions()
        for t in (*self._tickers, *self._tasks):
            t.cancel()
        await self.broker.close()
        await self.store.close()

    # -- addresses and limits

    def peer(self, request: web.Request) -> str:
        if self.settings.forwarded_for:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.rsplit(",", 1)[-1].strip()
        return request.remote or "?"

    def _address(self, addr: str) -> _Address:
        state = self._addresses.get(addr)
        if state is None:
            limits = self.settings.limits
            state = _Address(
                messages=TokenBucket(limits.cable_per_address),
                rest=TokenBucket(limits.rest_per_address),
                connects=TokenBucket(limits.connects_per_address),
            )
            self._addresses[addr] = state
        state.last_used = time.monotonic()
        return state

    def address_take(self, addr: str) -> bool:
        bucket = self._address(addr).messages
        return bucket is not None and bucket.take()

    def rest_take(self, addr: str) -> bool:
        bucket = self._address(addr).rest
        return bucket is not None and bucket.take()

    # -- /cable

    async def cable(self, request: web.Request) -> web.StreamResponse:
        addr = self.peer(request)
        state = self._address(addr)
        limits = self.settings.limits
        if state.connections >= limits.connections_per_address:
            return _error(429, "too many open connections from this address")
        if state.connects is not None and not state.connects.take():
            return _error(429, "too many new connections from this address", retry=True)
        token = bearer_token(request.headers.get("Authorization"))
        token_hash = token_name = None
        if token is not None:
            token_hash = hash_token(token)
            token_name = await self.store.token_name(token_hash)
            if token_name is None:
                return _error(401, "unknown or revoked hub token")
        ws = web.WebSocketResponse(
            protocols=(PROTOCOL,),
            autoping=True,
            heartbeat=None,
            max_msg_size=limits.max_frame,
            timeout=2.0,
            # Browsers offer permessage-deflate; a deflate context per socket costs far more
            # than an idle socket, and Olm ciphertext in base64 barely compresses.
            compress=False,
        )
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # The client hung up during the upgrade: nothing to serve, nothing went wrong here.
            log.info("relay: %s went away during the WebSocket handshake", addr)
            return web.Response(status=400)
        conn = Connection(self, ws, f"c{next(self._ids)}", addr, token_hash, token_name)
        self.connections.add(conn)
        state.connections += 1
        conn.send_text(WELCOME)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await conn.receive(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    conn.invalid("binary frames are not part of the protocol")
                elif msg.type == WSMsgType.ERROR:
                    log.info("relay: connection %s: %s", conn.id, ws.exception())
                    break
                if conn.closing:
                    await conn.closed()
                    break
        finally:
            self.connections.discard(conn)
            state.connections -= 1
            await conn.close_subscriptions()
            if not ws.closed:
                await ws.close()
        return ws

    # -- REST

    async def _owner(self, request: web.Request) -> str:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            raise _http_error(401, "missing Authorization: Bearer <hub token>")
        name = await self.store.token_name(hash_token(token))
        if name is None:
            raise _http_error(401, "unknown or revoked hub token")
        return name

    async def post_hubs(self, request: web.Request) -> web.Response:
        owner = await self._owner(request)
        body = await _json_body(request)
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier or len(identifier) > MAX_IDENTIFIER:
            raise _http_error(400, f"identifier: expected a string of 1..{MAX_IDENTIFIER} chars")
        if not identifier.isprintable():
            raise _http_error(400, "identifier: expected printable characters")
        record, created = await self.store.register_hub(owner, identifier)
        log.info("relay: hub %s %s", record.id, "registered" if created else "registered again")
        return web.json_response(
            {"id": record.id, "identifier": record.identifier}, status=201 if created else 200
        )

    async def get_hubs(self, request: web.Request) -> web.Response:
        owner = await self._owner(request)
        hubs = await self.store.hubs_of(owner)
        out = []
        for h in hubs:
            item = h.public()
            item["active"] = await self.store.presence_count(h.id) > 0
            out.append(item)
        return web.json_response(out)

    async def put_hub(self, request: web.Request) -> web.Response:
        owner = await self._owner(request)
        hub_id = request.match_info["hub_id"]
        hub = await self.store.get_hub(hub_id)
        if hub is None or hub.token_name != owner:
            raise _http_error(404, f"no hub {hub_id} for this token")
        body = await _json_body(request)
        alive = body.get("alive")
        if alive is not None and not isinstance(alive, bool):
            raise _http_error(400, "alive: expected true or false")
        if alive is False:
            # The hub says it is going away: tell browsers now instead of when its socket drops.
            await self.store.presence_clear(hub_id)
            await self.store.set_alive(hub_id, False)
            from botster.relay.cable import health_message, health_stream

            await self.broker.publish(health_stream(hub_id), health_message(False))
        elif alive is True:
            await self.store.set_alive(hub_id, True)
        return web.json_response({"success": True, "hub_id": hub_id})

    async def get_webrtc(self, request: web.Request) -> web.Response:
        hub_id = request.match_info["hub_id"]
        if await self.store.get_hub(hub_id) is None:
            raise _http_error(404, f"no hub {hub_id}")
        return web.json_response({"ice_servers": self.settings.ice.ice_servers(hub_id)})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "connections": len(self.connections)})

    # -- the web app

    async def _index(self) -> web.StreamResponse:
        index = self.static_dir / "index.html"
        if await asyncio.get_running_loop().run_in_executor(None, index.is_file):
            return web.FileResponse(
                index, headers={"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}
            )
        return web.Response(
            text=NOT_BUILT, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    async def pairing(self, request: web.Request) -> web.StreamResponse:
        return await self._index()

    def _contained(self, rel: str) -> Path | None:
        """The file `rel` names inside the static directory, or None (symlinks resolved)."""
        root = self.static_dir.resolve()
        try:
            path = (root / rel).resolve()
        except (OSError, ValueError):
            return None
        return path if root in path.parents and path.is_file() else None

    async def static(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        if rel in ("", "index.html"):
            return await self._index()
        path = await asyncio.get_running_loop().run_in_executor(None, self._contained, rel)
        if path is None:
            raise _http_error(404, "not found")
        cache = "public, max-age=31536000, immutable" if "/assets/" in f"/{rel}" else "no-cache"
        return web.FileResponse(path, headers={"Cache-Control": cache})


def _error(status: int, message: str, *, retry: bool = False) -> web.Response:
    headers = {"Retry-After": "1"} if retry else None
    return web.json_response({"error": message}, status=status, headers=headers)


class _HttpError(Exception):
    """A REST refusal; the middleware turns it into ``{"error": message}`` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _http_error(status: int, message: str) -> _HttpError:
    return _HttpError(status, message)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except web.HTTPRequestEntityTooLarge:
        raise _http_error(413, "body too large") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _http_error(400, "body: expected JSON") from None
    if not isinstance(body, dict):
        raise _http_error(400, "body: expected a JSON object")
    return body


def make_app(relay: Relay) -> web.Application:
    @web.middleware
    async def limits(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != "/cable" and not relay.rest_take(relay.peer(request)):
            return _error(429, "too many requests from this address", retry=True)
        try:
            return await handler(request)
        except _HttpError as e:
            return _error(e.status, str(e))
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return _error(e.status, e.reason)
        except StoreError as e:
            log.error("relay: store: %s", e)
            return _error(503, "the relay's store is unavailable")

    app = web.Application(middlewares=[limits], client_max_size=16 * 1024)
    app.router.add_get("/cable", relay.cable)
    app.router.add_post("/hubs", relay.post_hubs)
    app.router.add_get("/hubs", relay.get_hubs)
    app.router.add_put("/hubs/{hub_id}", relay.put_hub)
    app.router.add_get("/hubs/{hub_id}/webrtc", relay.get_webrtc)
    app.router.add_get("/hubs/{hub_id}/pairing", relay.pairing)
    app.router.add_get("/hubs/{hub_id}", relay.pairing)  # the app's page for a paired hub
    app.router.add_get("/healthz", relay.healthz)
    app.router.add_get("/{path:.*}", relay.static)
    return app


@dataclass
class RunningRelay:
    """A relay serving on this loop. ``url`` is its public URL, ``port`` the bound port."""

    url: str
    port: int
    relay: Relay
    runner: web.AppRunner

    async def create_token(self, name: str | None = None) -> str:
        """Mints a hub token in this relay's store (the embedded relay's own hub uses it)."""
        _, token = await self.relay.store.create_token(name)
        return token

    async def stop(self) -> None:
        # Sockets first, while the store and broker still work: their handlers' cleanup
        # (presence, "offline" to browsers) runs as the runner waits for them.
        self.relay.begin_close()
        await self.runner.cleanup()
        await self.relay.close()


async def start_relay(
    host: str,
    port: int,
    data_dir: Path | str | None,
    redis_url: str | None = None,
    public_url: str | None = None,
    *,
    settings: RelaySettings | None = None,
    ssl_context: ssl.SSLContext | None = None,
    static_dir: Path | None = None,
) -> RunningRelay:
    """Runs the relay app on the running loop; port 0 picks a free one.

    Args:
        host, port: where to listen.
        data_dir: relay.json and, without Redis, the SQLite store.
        redis_url: keep hubs and tokens in Redis and fan out through its pub/sub.
        public_url: the URL browsers reach this relay at (default ``http(s)://host:port``).
        static_dir: the built web app (default: ``botster/relay/static``).

    Raises:
        StoreError: no store could be opened; SettingsError: relay.json is malformed;
        OSError: the address is taken.
    """
    data = Path(data_dir) if data_dir is not None else None
    if settings is None:
        settings = await asyncio.get_running_loop().run_in_executor(None, load_settings, data)
    store = await open_store(data, redis_url)
    await store.relay_started()
    broker: Broker = RedisBroker(redis_url) if redis_url else LocalBroker()
    try:
        await broker.start()
    except Exception as e:
        await store.close()
        raise StoreError(f"redis pub/sub at {redacted(redis_url or '')}: {e}") from None
    relay = Relay(store, broker, settings, static_dir=static_dir or STATIC_DIR)
    runner = web.AppRunner(
        make_app(relay), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        await relay.close()
        raise
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    relay.start_tickers()
    scheme = "https" if ssl_context else "http"
    url = (public_url or f"{scheme}://{_url_host(host)}:{bound}").rstrip("/")
    return RunningRelay(url=url, port=bound, relay=relay, runner=runner)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_relay_blocking(
    host: str,
    port: int,
    data_dir: Path | None,
    redis_url: str | None,
    public_url: str | None,
    settings: RelaySettings,
    ssl_context: ssl.SSLContext | None,
) -> None:
    """``botster relay``: serves until SIGINT or SIGTERM."""
    import signal

    async def main() -> None:
        running = await start_relay(
            host, port, data_dir, redis_url, public_url, settings=settings, ssl_context=ssl_context
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        where = f"redis {redacted(redis_url)}" if redis_url else f"sqlite in {data_dir}"
        # Tests and scripts wait for this line; the bound port is in it.
        print(f"relay ready: {running.url} (listening on port {running.port}, {where})", flush=True)
        await stop.wait()
        await running.stop()
        print("relay stopped", flush=True)

    try:
        import uvloop  # optional speed-up, as the hub uses
    except ImportError:
        asyncio.run(main())
        return
    uvloop.run(main())
