"""The hub's link to its relay: where the relay is, the hub token, registration, the embedded relay.

Owns, per hub (one ``RelayLink`` on ``Hub.relay``):

* **where**: ``BOTSTER_SERVER_URL``, else the config setting ``server_url``; with neither (and
  ``embedded_relay`` not false) the hub serves the relay app itself on 127.0.0.1
  (``relay_port``, 0 for a free port), started after the hub is ready so it never delays
  start-up, with a hub token minted locally on first use;
* **the token**: ``BOTSTER_TOKEN``, else what ``botster login`` stored: the system keyring when
  it has a usable backend, else ``$BOTSTER_HOME/relay_tokens.json`` (0600). The token is never
  logged and never enters ``config.json``;
* **registration**: ``POST /hubs`` with the hub id as ``identifier``, off the loop's critical
  path and retried with backoff (1 s -> 60 s) while the relay cannot be reached; the id it
  returns is ``hub.server_id()``. ``PUT /hubs/<id> {"alive": false}`` at shutdown.
* **ICE servers**: ``GET /hubs/<id>/webrtc`` (STUN/TURN URLs and TURN credentials for new
  peer connections), checked by ``parse_ice_servers`` (the relay is not trusted: only
  ``stun:``/``turn:``/``turns:`` URLs of a sane shape), cached 60 s, the last good answer kept
  when a fetch fails; fetched after registration and again when stale.

While it runs, ``$BOTSTER_RUNTIME_DIR/relay-<hub id 16>.json`` says where the relay is
(``{url, server_id, embedded}``) for ``make run`` and other local tools.

Leaves the ActionCable client to ``botster/primitives/action_cable.py`` (which asks
``endpoint()`` for the URL and token) and the relay server to ``botster/relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from yarl import URL

from botster.base import net


class _Hub(Protocol):
    """What the relay link needs of its hub (``Hub`` has it)."""

    hub_id: str
    paths: Any
    config: Any
    loop: asyncio.AbstractEventLoop

    def spawn(self, coro: Any, *, name: str, owner: str) -> asyncio.Task[Any]: ...

    async def run_blocking(self, fn: Any, *args: Any) -> Any: ...

    def emit(self, event: str, data: Any = None) -> None: ...

    def on_close(self, close: Any) -> None: ...


__all__ = [
    "Endpoint",
    "RelayLink",
    "load_token_blocking",
    "normalise_url",
    "parse_ice_servers",
    "read_relay_info_blocking",
    "store_token_blocking",
]

log = logging.getLogger("relay")

NO_RELAY = "no relay configured: set server_url or BOTSTER_SERVER_URL"
KEYRING_SERVICE = "botster-relay"
TOKENS_FILE = "relay_tokens.json"
REQUEST_TIMEOUT = 10.0  # seconds for one REST call to the relay
BACKOFF_MAX = 60.0
EMBEDDED_TOKEN_NAME = "embedded-hub"
EMBEDDED_TOKEN_FILE = "embedded-hub-token"
# An ICE answer younger than this is used without asking again (tests set it to 0 to make
# every offer ask).
ICE_FRESH_S = float(os.environ.get("BOTSTER_ICE_FRESH_S", "60") or 60)
ICE_STALE_S = 3600.0  # after a failed fetch, an older answer still serves this long
ICE_TIMEOUT = 5.0  # seconds for the ICE request (an offer waits for it when the cache is cold)
MAX_ICE_SERVERS = 8
MAX_BODY = 64 << 10  # bytes of one REST answer
MAX_ICE_URLS = 8
MAX_ICE_FIELD = 512  # characters of one URL, username or credential
# stun:/turn:/turns:, a host name, IPv4 or bracketed IPv6 address, an optional port and (TURN
# only) an optional transport: the shapes browsers and aiortc accept, nothing else.
_ICE_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class Endpoint:
    """Where the relay is and how to authenticate: the base ``http(s)://`` URL and the token."""

    url: str
    token: str

    @property
    def cable_url(self) -> URL:
        """The relay's ActionCable endpoint: ``ws(s)://host/.../cable``."""
        base = URL(self.url)
        scheme = "wss" if base.scheme == "https" else "ws"
        return base.with_scheme(scheme).with_path(base.path.rstrip("/") + "/cable")

    def __repr__(self) -> str:  # the token never reaches a log line by accident
        return f"Endpoint(url={self.url!r}, token=<hidden>)"


def normalise_url(url: str) -> str:
    """A relay URL as the token store keys it: no trailing slash, no query or fragment.

    Raises:
        ValueError: not an http:// or https:// URL with a host.
    """
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    return str(parsed.with_query(None).with_fragment(None)).rstrip("/")


def parse_ice_servers(body: Any) -> list[dict[str, Any]]:
    """Checks a ``GET /hubs/<id>/webrtc`` answer and returns its ``RTCIceServer`` list in one
    shape: ``{"urls": [str...], "username"?: str, "credential"?: str}``.

    Raises:
        ValueError: anything else, saying what (the relay is not trusted).
    """
    if not isinstance(body, dict) or not isinstance(body.get("ice_servers"), list):
        raise ValueError("expected an object with an ice_servers list")
    servers = body["ice_servers"]
    if len(servers) > MAX_ICE_SERVERS:
        raise ValueError(f"more than {MAX_ICE_SERVERS} ICE servers")
    out: list[dict[str, Any]] = []
    for i, server in enumerate(servers):
        where = f"ice_servers[{i}]"
        if not isinstance(server, dict):
            raise ValueError(f"{where}: expected an object")
        urls = server.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_ICE_URLS:
            raise ValueError(f"{where}.urls: expected a URL or 1..{MAX_ICE_URLS} of them")
        for url in urls:
            _check_ice_url(where, url)
        entry: dict[str, Any] = {"urls": list(urls)}
        for field in ("username", "credential"):
            value = server.get(field)
            if value is None:
                continue
            if not isinstance(value, str) or not _printable(value):
                raise ValueError(f"{where}.{field}: expected a printable string")
            entry[field] = value
        if any(u.startswith("turn") for u in urls) and not (
            "username" in entry and "credential" in entry
        ):
            raise ValueError(f"{where}: a TURN server without username and credential")
        out.append(entry)
    return out


def _check_ice_url(where: str, url: Any) -> None:
    if not isinstance(url, str) or len(url) > MAX_ICE_FIELD:
        raise ValueError(f"{where}.urls: expected URL strings")
    m = _ICE_URL.fullmatch(url)
    if m is None:
        raise ValueError(f"{where}.urls: not a stun:, turn: or turns: URL: {url[:80]!r}")
    if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
        raise ValueError(f"{where}.urls: port out of range: {url[:80]!r}")
    if m["scheme"] == "stun" and m["transport"] is not None:
        raise ValueError(f"{where}.urls: a stun: URL takes no transport: {url[:80]!r}")


def _printable(value: str) -> bool:
    return 0 < len(value) <= MAX_ICE_FIELD and value.isprintable()


# The token store --------------------------------------------------------------------------


def _keyring_blocking() -> Any:
    """The keyring module when it has a usable backend, else None (import is slow: blocking)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return keyring


def _tokens_path(home: Path) -> Path:
    return home / TOKENS_FILE


def _read_tokens_blocking(home: Path) -> dict[str, str]:
    try:
        data = json.loads(_tokens_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def store_token_blocking(home: Path, server_url: str, token: str) -> str:
    """Stores the hub token for `server_url`; returns where: "keyring" or the file's path.

    Raises:
        OSError: the file cannot be written.
    """
    key = normalise_url(server_url)
    keyring = _keyring_blocking()
    if keyring is not None:
        try:
            keyring.set_password(KEYRING_SERVICE, key, token)
            return "keyring"
        except Exception as e:  # a locked or broken keyring: the file still works
            log.warning("keyring refused the token (%s); storing it in a file", type(e).__name__)
    home.mkdir(parents=True, exist_ok=True)
    tokens = _read_tokens_blocking(home)
    tokens[key] = token
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".relay_tokens.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(tokens, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, _tokens_path(home))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return str(_tokens_path(home))


def load_token_blocking(home: Path, server_url: str) -> str | None:
    """The hub token: ``BOTSTER_TOKEN``, else the one stored for `server_url`, else None."""
    env = os.environ.get("BOTSTER_TOKEN")
    if env:
        return env
    key = normalise_url(server_url)
    keyring = _keyring_blocking()
    if keyring is not None:
        with contextlib.suppress(Exception):
            token = keyring.get_password(KEYRING_SERVICE, key)
            if token:
                return str(token)
    return _read_tokens_blocking(home).get(key)


def _relay_info_path(runtime: Path, hub_id: str) -> Path:
    return runtime / f"relay-{hub_id[:16]}.json"


def read_relay_info_blocking(runtime: Path, hub_id: str) -> dict[str, Any] | None:
    """What a running hub wrote about its relay (``{url, server_id, embedded}``), if anything."""
    try:
        data = json.loads(_relay_info_path(runtime, hub_id).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# The link ---------------------------------------------------------------------------------


class _Rejected(Exception):
    """The relay answered, and retrying would not change its answer."""


class RelayLink:
    """One hub's relay: resolved after start-up, registered in the background, told goodbye.

    Args:
        hub: the hub this link belongs to.
    """

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self.server_id: str | None = None
        self.embedded: Any = None  # botster.relay.server.RunningRelay while we serve one
        self._endpoint: asyncio.Future[Endpoint | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._http = net.LazySession(hub)
        self._none_why: str | None = None  # why there is no relay, once that is known
        self._inflight: set[asyncio.Future[Any]] = set()  # REST calls under way
        self._ice: list[dict[str, Any]] | None = None  # the last good ICE answer
        self._ice_at = 0.0  # loop time it arrived
        self._ice_fetch: asyncio.Future[list[dict[str, Any]]] | None = None
        self._ice_warned = False  # a bad answer or failed fetch is logged once until one works

    # Where --------------------------------------------------------------------------------

    def configured_url(self) -> str | None:
        """The relay URL from ``BOTSTER_SERVER_URL`` or config ``server_url``, else None."""
        url = os.environ.get("BOTSTER_SERVER_URL") or self._hub.config.setting("server_url")
        return url or None

    def unavailable(self) -> str | None:
        """Why no relay can be reached, in the words ``action_cable.connect`` returns; or None."""
        if self.configured_url() is None and not self._hub.config.setting("embedded_relay"):
            return NO_RELAY
        return self._none_why

    async def endpoint(self) -> Endpoint | None:
        """The relay's URL and token once known (after start-up); None when there is none."""
        return await asyncio.shield(self._future())

    def _future(self) -> asyncio.Future[Endpoint | None]:
        if self._endpoint is None:
            self._endpoint = self._hub.loop.create_future()
        return self._endpoint

    # Lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """Resolves the relay and registers, in the background (called once the hub is ready)."""
        if self._task is None:
            self._task = self._hub.spawn(self._run(), name="relay link", owner="hub")

    async def _run(self) -> None:
        future = self._future()
        try:
            endpoint = await self._resolve()
        except BaseException:
            if not future.done():
                future.set_result(None)
            raise
        if not future.done():
            future.set_result(endpoint)
        if endpoint is None:
            return
        await self._write_info(endpoint)
        await self._register(endpoint)

    async def _resolve(self) -> Endpoint | None:
        hub = self._hub
        url = self.configured_url()
        if url is not None:
            try:
                url = normalise_url(url)
            except ValueError as e:
                self._none_why = f"server_url: {e}"
                log.warning("relay not used: %s", self._none_why)
                return None
            token = await hub.run_blocking(load_token_blocking, hub.paths.home, url)
            if token is None:
                self._none_why = (
                    f"no hub token for the relay {net.shown(url)}: set BOTSTER_TOKEN or run "
                    f"`botster login --server {url} --token TOKEN`"
                )
                log.warning("%s", self._none_why)
                return None
            return Endpoint(url, token)
        if not hub.config.setting("embedded_relay"):
            log.info("no relay (no server_url, and embedded_relay is false)")
            return None
        return await self._start_embedded()

    async def _start_embedded(self) -> Endpoint | None:
        hub = self._hub
        # One directory per hub: relays of several hubs on this machine never share a store.
        data_dir = hub.paths.home / "relay" / hub.hub_id[:16]
        port = int(hub.config.setting("relay_port"))
        try:
            # Imported on the pool: the relay app's modules are not needed for anything else.
            server = await hub.run_blocking(_import, "botster.relay.server")
            self.embedded = await server.start_relay("127.0.0.1", port, data_dir)
            token = await _embedded_token(hub, self.embedded, data_dir)
        except Exception as e:  # the hub runs without a relay rather than fail
            self._none_why = "the embedded relay failed to start (see the hub log)"
            log.warning("the embedded relay could not start on port %d: %s", port, e)
            if self.embedded is not None:
                relay, self.embedded = self.embedded, None
                await relay.stop()
            return None
        log.info("embedded relay on %s", self.embedded.url)
        return Endpoint(str(self.embedded.url).rstrip("/"), token)

    async def _register(self, endpoint: Endpoint) -> None:
        delay = 1.0
        while True:
            try:
                self.server_id = await self._post_hub(endpoint)
                break
            except _Rejected as e:
                log.warning("%s: registration refused: %s", net.shown(endpoint.url), e)
                return
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                log.info(
                    "%s: cannot register yet (%s); retrying in %.0f s",
                    net.shown(endpoint.url),
                    _why(e),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        log.info("%s: registered as %s", net.shown(endpoint.url), self.server_id)
        await self._write_info(endpoint)
        self._hub.emit("relay_registered", {"server_id": self.server_id, "url": endpoint.url})
        await self.ice_servers()  # prefetched: the first offer need not wait for it

    # ICE servers ------------------------------------------------------------------------------

    async def ice_servers(self) -> list[dict[str, Any]]:
        """The relay's STUN/TURN servers for new peer connections (``parse_ice_servers``
        shape): cached for 60 s; an older answer (up to an hour) is returned at once while a
        new one is fetched in the background, so only the first offer may wait for the relay.
        When a fetch fails or the answer is malformed (logged once), the last good answer for
        up to an hour, else ``[]``. Never raises; one fetch at a time.
        """
        now = self._hub.loop.time()
        if self._ice is not None and now - self._ice_at < ICE_FRESH_S:
            return self._ice
        if self._ice_fetch is None or self._ice_fetch.done():
            self._ice_fetch = self._hub.spawn(self._fetch_ice(), name="ice servers", owner="hub")
        if self._ice is not None and now - self._ice_at < ICE_STALE_S:
            return self._ice
        return await asyncio.shield(self._ice_fetch)

    async def _fetch_ice(self) -> list[dict[str, Any]]:
        endpoint = self._endpoint.result() if self._endpoint and self._endpoint.done() else None
        if endpoint is None or self.server_id is None:
            return self._ice or []  # no relay (yet): nothing to ask
        try:
            async with asyncio.timeout(ICE_TIMEOUT):
                body = await self._call("GET", endpoint, f"/hubs/{self.server_id}/webrtc", None)
            servers = parse_ice_servers(body)
        except (_Rejected, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            if not self._ice_warned:
                self._ice_warned = True
                log.warning(
                    "%s: ICE servers ignored: %s", net.shown(endpoint.url), str(_why(e))[:200]
                )
            fresh_enough = self._hub.loop.time() - self._ice_at < ICE_STALE_S
            return self._ice if self._ice is not None and fresh_enough else []
        if self._ice_warned or servers != self._ice:
            urls = [u for s in servers for u in s["urls"]]
            log.info("%s: ICE servers: %s", net.shown(endpoint.url), urls or "none")
        self._ice_warned = False
        self._ice, self._ice_at = servers, self._hub.loop.time()
        return servers

    async def _post_hub(self, endpoint: Endpoint) -> str:
        # Only the hub id: the repository's path or name is none of the relay's business.
        body = {"identifier": self._hub.hub_id}
        data = await self._call("POST", endpoint, "/hubs", body)
        server_id = data.get("id")
        if isinstance(server_id, int) and not isinstance(server_id, bool):
            server_id = str(server_id)
        if not isinstance(server_id, str) or not server_id:
            raise ValueError(f"the relay's answer has no id: {data!r}"[:200])
        return server_id

    async def _call(self, method: str, endpoint: Endpoint, path: str, body: Any) -> Any:
        # Shielded: a request cut halfway (the hub stopping while it registers) leaves the
        # relay reading a reset body, which it logs as an error; stop() lets it finish instead.
        request = asyncio.ensure_future(self._request(method, endpoint, path, body))
        self._inflight.add(request)
        request.add_done_callback(self._settled)
        return await asyncio.shield(request)

    def _settled(self, request: asyncio.Future[Any]) -> None:
        self._inflight.discard(request)
        if not request.cancelled():
            request.exception()  # retrieved: nobody may be awaiting it any more

    async def _request(self, method: str, endpoint: Endpoint, path: str, body: Any) -> Any:
        headers = {"Authorization": f"Bearer {endpoint.token}", "Accept": "application/json"}
        async with self._http.get().request(
            method,
            endpoint.url + path,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as resp:
            # The relay is not trusted with the hub's memory either: answers are small.
            raw = await resp.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise ValueError(f"the relay's answer is over {MAX_BODY} bytes")
            text = raw.decode("utf-8", errors="replace")
            if resp.status in (400, 401, 403, 404, 409, 422):
                raise _Rejected(f"HTTP {resp.status}: {text[:200]}")
            if resp.status >= 300:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=text[:200]
                )
            return json.loads(text) if text.strip() else {}

    async def stop(self, grace: float) -> None:
        """Says goodbye to the relay (``alive: false``) and stops the embedded relay."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        endpoint = self._endpoint.result() if self._endpoint and self._endpoint.done() else None
        if endpoint is not None and self.server_id is not None:
            try:
                async with asyncio.timeout(grace):
                    await self._call("PUT", endpoint, f"/hubs/{self.server_id}", {"alive": False})
                log.info("%s: unregistered %s", net.shown(endpoint.url), self.server_id)
            except (_Rejected, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                log.warning("%s: could not unregister: %s", net.shown(endpoint.url), _why(e))
        await self._http.close()
        if self.embedded is not None:
            relay, self.embedded = self.embedded, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(grace):
                    await relay.stop()
        with contextlib.suppress(OSError):
            path = _relay_info_path(self._hub.paths.runtime, self._hub.hub_id)
            await self._hub.run_blocking(path.unlink)

    async def _write_info(self, endpoint: Endpoint) -> None:
        info = {"url": endpoint.url, "server_id": self.server_id, "embedded": bool(self.embedded)}
        path = _relay_info_path(self._hub.paths.runtime, self._hub.hub_id)
        with contextlib.suppress(OSError):
            await self._hub.run_blocking(_write_json_blocking, path, info)


def _write_json_blocking(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, ValueError | _Rejected):
        return str(exc)
    return net.reason(exc, REQUEST_TIMEOUT)


def _import(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def _read_token_file_blocking(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_token_file_blocking(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


async def _embedded_token(hub: _Hub, relay: Any, data_dir: Path) -> str:
    """The embedded relay's hub token: minted into its store once, then read from a 0600 file
    beside it, so the server id (which pairing URLs carry) stays the same across restarts."""
    path = data_dir / EMBEDDED_TOKEN_FILE
    token = await hub.run_blocking(_read_token_file_blocking, path)
    if token is not None:
        return token
    try:
        token = await relay.create_token(EMBEDDED_TOKEN_NAME)
    except Exception:  # the file was lost but the name is taken: mint it again
        await relay.relay.store.revoke_token(EMBEDDED_TOKEN_NAME)
        token = await relay.create_token(EMBEDDED_TOKEN_NAME)
    await hub.run_blocking(_write_token_file_blocking, path, token)
    return token
