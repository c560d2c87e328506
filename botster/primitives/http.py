"""The ``http`` primitive: HTTP(S) requests for plugins, ``get/post/put/delete`` and ``request``.

Owns the hub's HTTP client (a ``botster.hub.net.LazySession``: created on first use, closed
at shutdown), the four positional shortcuts and the table-first ``http.request``. Both forms run
through one coroutine, ``_perform``; they differ only in how the result comes back:

* ``http.get(url)`` and friends suspend only the calling Lua task (ARCHITECTURE principle 2,
  decision D2): the loop keeps serving every other plugin while the response is on its way,
  so the spec's "sync call stalls the hub" gotcha cannot happen here.
* ``http.request(opts, callback)`` returns a request id at once; the callback runs later as a
  task of the calling plugin. Unloading the plugin cancels the request; it never calls back.

Results are plain tables ``{status, body, headers}``: ``body`` is the raw bytes (a binary-safe
Lua string), ``headers`` has lower-case names, repeated headers joined with ", ". Any HTTP
status is a success; a failing world (refused, timed out, TLS, DNS, a body over the size cap)
gives ``nil, "http.get: <url>: <reason>"``. Wrong use (a non-http URL, a wrong type, an unknown
option) raises. TLS certificates are always verified. Cookies are never stored (plugins share
the client, so a jar would leak one plugin's session into another's requests), and proxy
variables from the environment are not used.

Leaves to ``botster.lua`` argument checking, conversion and task scheduling, to
``botster.hub.net`` the client's configuration and the words for failures any connection can
meet (those only HTTP meets, redirects and bodies, are here), and to ``websocket.py``
websocket connections.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from typing import Any, TypedDict

import aiohttp
from yarl import URL

from botster.errors import ArgumentError
from botster.hub import net
from botster.hub.context import HubContext
from botster.lua.api import LuaFunction, LuaTable, describe, lua_api
from botster.lua.convert import ConversionError

__all__ = ["LUA", "WRONG_DOOR", "in_flight_count"]

DEFAULT_TIMEOUT = 30.0
MAX_BODY = 64 << 20  # bytes of (decompressed) response body
MAX_IN_FLIGHT = 256  # http.request calls waiting for their callback, per plugin
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


class _RequiredOptions(TypedDict):
    url: str  # required: a base class, since Required[] is lost in string annotations


class RequestOptions(_RequiredOptions, total=False):
    """The options table of ``http.request``."""

    method: str
    headers: dict[str, str]
    body: bytes
    json: LuaTable
    timeout: float


_ids = itertools.count(1)


class _State:
    """One hub's HTTP session and requests in flight."""

    def __init__(self, hub: HubContext) -> None:
        self.client = net.LazySession(hub)
        self.in_flight: dict[str, tuple[str, asyncio.Task[None]]] = {}  # id -> (owner, task)


def _client(hub: HubContext) -> aiohttp.ClientSession:
    return hub.state(_State).client.get()


def in_flight_count(hub: HubContext, owner: str | None = None) -> int:
    """How many ``http.request`` calls are waiting for their callback (for leak checks)."""
    return sum(1 for o, _ in hub.state(_State).in_flight.values() if owner is None or o == owner)


# Checking ---------------------------------------------------------------------------------


def _check_url(url: str, arg: str = "url") -> URL:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ArgumentError(f"{arg}: expected an http:// or https:// URL, got {url!r}")
    return parsed


def _check_timeout(timeout: float, arg: str) -> float:
    if not math.isfinite(timeout) or timeout <= 0:
        raise ArgumentError(
            f"{arg}: expected a positive number of seconds, got {describe(timeout)}"
        )
    return float(timeout)


def _json_bytes(hub: HubContext, table: Any, arg: str) -> bytes:
    try:
        data = hub.host.convert.to_py(table)
        return json.dumps(data, ensure_ascii=False, allow_nan=False).encode(
            "utf-8", "surrogateescape"
        )
    except (ConversionError, ValueError, TypeError) as e:
        raise ArgumentError(f"{arg}: cannot be sent as JSON: {e}") from None


def _body(hub: HubContext, body: bytes | Any, headers: dict[str, str], arg: str) -> bytes:
    """A shortcut's body: a string as-is, a table as JSON (setting Content-Type if unset)."""
    if isinstance(body, bytes):
        return body
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return _json_bytes(hub, body, arg)


# The one implementation -------------------------------------------------------------------


def _reason(exc: BaseException, timeout: float) -> str:
    """Why a request failed: HTTP's own failures here, the rest from ``net.reason``."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before responding"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {net.shown(str(exc.url))!r}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"malformed response body: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response: {exc.message}"
    return net.reason(exc, timeout)


def _response_headers(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


async def _perform(
    hub: HubContext,
    fname: str,
    method: str,
    url: URL,
    headers: dict[str, str],
    body: bytes | None,
    timeout_s: float,
) -> dict[str, Any] | tuple[None, str]:
    """Sends one request; ``{status, body, headers}`` or ``(None, "<fname>: <url>: <why>")``."""
    where = f"{fname}: {net.shown(url)}"
    try:
        async with _client(hub).request(
            method,
            url,
            headers=headers,
            data=body,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            # A string body is sent as-is, without a guessed Content-Type.
            skip_auto_headers=("Content-Type",),
        ) as resp:
            length = None if method == "HEAD" else resp.content_length
            if length is not None and length > MAX_BODY:
                limit = f"the {MAX_BODY >> 20} MiB limit"
                return None, f"{where}: response body of {length} bytes exceeds {limit}"
            data = bytearray()
            async for chunk in resp.content.iter_any():
                data += chunk
                if len(data) > MAX_BODY:
                    return None, f"{where}: response body exceeds the {MAX_BODY >> 20} MiB limit"
            return {
                "status": resp.status,
                "body": bytes(data),
                "headers": _response_headers(resp.headers),
            }
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return None, f"{where}: {_reason(e, timeout_s)}"
    except ValueError as e:  # aiohttp refusing something about the request itself
        return None, f"{where}: {e}"


async def _shortcut(
    hub: HubContext, fname: str, method: str, url: str, body: Any, headers: dict[str, str] | None
) -> dict[str, Any] | tuple[None, str]:
    parsed = _check_url(url)
    hdrs = net.check_headers(headers, "headers")
    data = None if body is None else _body(hub, body, hdrs, "body")
    return await _perform(hub, fname, method, parsed, hdrs, data, DEFAULT_TIMEOUT)


# Lua-facing -------------------------------------------------------------------------------


@lua_api
async def get(hub: HubContext, url: str, headers: dict[str, str] | None = None) -> Any:
    """http.get(url, headers?) -> resp | nil, err

    Sends a GET request and suspends only the calling task until the response is in; the hub
    keeps running meanwhile, so this is safe in callbacks too. Times out after 30 s.

    * `url`: an http:// or https:// URL.
    * `headers`: table of request headers, name -> string (default: none).

    Returns `{status, body, headers}` for any HTTP status (404 and 500 included): `body` is the
    raw response (binary-safe), `headers` has lower-case names, repeated ones joined with ", ".
    Returns `nil, "http.get: <url>: <reason>"` when no response arrived: connection refused,
    timeout, TLS or DNS failure, a body over 64 MiB.
    Raises when `url` is not an http(s) URL or a header name or value is not a string.

    ```lua
    local resp, err = http.get("https://api.github.com/zen", {Accept = "text/plain"})
    if not resp then log.warn(err) return end
    log.info(resp.status .. " " .. resp.body)
    ```
    """
    return await _shortcut(hub, "http.get", "GET", url, None, headers)


@lua_api
async def post(
    hub: HubContext, url: str, body: bytes | LuaTable, headers: dict[str, str] | None = None
) -> Any:
    """http.post(url, body, headers?) -> resp | nil, err

    Sends a POST request; suspends only the calling task. Times out after 30 s.

    * `url`: an http:// or https:// URL.
    * `body`: a string, sent as-is (binary-safe, no Content-Type added), or a table, sent as
      JSON with `Content-Type: application/json` (unless `headers` set a Content-Type).
    * `headers`: table of request headers, name -> string (default: none).

    Returns `{status, body, headers}` for any HTTP status, or `nil, "http.post: <url>: <reason>"`
    when no response arrived (as for `http.get`).
    Raises when `url` is not an http(s) URL, `body` is neither string nor table, or the table
    cannot be JSON (a function inside, NaN).

    ```lua
    local resp, err = http.post("http://127.0.0.1:8080/hook", {event = "done", n = 3})
    if not resp then log.warn(err) return end
    local reply = json.decode(resp.body)
    ```
    """
    return await _shortcut(hub, "http.post", "POST", url, body, headers)


@lua_api
async def put(
    hub: HubContext, url: str, body: bytes | LuaTable, headers: dict[str, str] | None = None
) -> Any:
    """http.put(url, body, headers?) -> resp | nil, err

    Sends a PUT request; suspends only the calling task. Times out after 30 s.

    * `url`: an http:// or https:// URL.
    * `body`: a string, sent as-is, or a table, sent as JSON (as for `http.post`).
    * `headers`: table of request headers, name -> string (default: none).

    Returns `{status, body, headers}` for any HTTP status, or `nil, "http.put: <url>: <reason>"`.
    Raises when `url` is not an http(s) URL or `body` is neither string nor table.

    ```lua
    local resp, err = http.put(url, "plain text", {["Content-Type"] = "text/plain"})
    if not resp then log.warn(err) return end
    assert(resp.status < 300, resp.body)
    ```
    """
    return await _shortcut(hub, "http.put", "PUT", url, body, headers)


@lua_api
async def delete(hub: HubContext, url: str, headers: dict[str, str] | None = None) -> Any:
    """http.delete(url, headers?) -> resp | nil, err

    Sends a DELETE request; suspends only the calling task. Times out after 30 s.

    * `url`: an http:// or https:// URL.
    * `headers`: table of request headers, name -> string (default: none).

    Returns `{status, body, headers}` for any HTTP status, or
    `nil, "http.delete: <url>: <reason>"`.
    Raises when `url` is not an http(s) URL or a header is not a string.

    ```lua
    local resp, err = http.delete(url .. "/items/7", {Authorization = "Bearer " .. token})
    if not resp then log.warn(err) return end
    log.info("deleted: " .. resp.status)
    ```
    """
    return await _shortcut(hub, "http.delete", "DELETE", url, None, headers)


@lua_api
def request(hub: HubContext, opts: RequestOptions, callback: LuaFunction) -> str | tuple[None, str]:
    """http.request(opts, callback) -> request_id | nil, err

    Starts a request and returns at once; later runs `callback(resp, nil)` or
    `callback(nil, err)` as a task of the calling plugin. Unloading or reloading the plugin
    cancels the request, and the callback never runs.

    * `opts.method`: GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS, any case (default: GET).
    * `opts.url`: an http:// or https:// URL (required).
    * `opts.headers`: table of request headers, name -> string (default: none).
    * `opts.body`: a string sent as-is (default: no body).
    * `opts.json`: a table sent as JSON with `Content-Type: application/json`; not with `body`.
    * `opts.timeout`: seconds for the whole request (default: 30).
    * `callback`: `function(resp, err)`; `resp` is `{status, body, headers}` as for `http.get`
      (any HTTP status), `err` is `"http.request: <url>: <reason>"` when no response arrived.

    Returns the request id (`"http_1"`), or `nil, err` when the plugin already has 256
    requests in flight.
    Raises on a missing or non-http URL, an unknown method or option key, `body` and `json`
    together, a timeout that is not a positive number, a missing callback.

    ```lua
    http.request({method = "POST", url = url, json = {text = "hi"}}, function(resp, err)
      if err then log.warn(err) else log.info("status " .. resp.status) end
    end)
    ```
    """
    method = opts.get("method", "GET").upper()
    if method not in METHODS:
        raise ArgumentError(
            f"opts.method: expected one of {', '.join(METHODS)}, got {opts['method']!r}"
        )
    url = _check_url(opts["url"], "opts.url")
    headers = net.check_headers(opts.get("headers"), "opts.headers")
    timeout = _check_timeout(opts.get("timeout", DEFAULT_TIMEOUT), "opts.timeout")
    if "body" in opts and "json" in opts:
        raise ArgumentError("opts: give body or json, not both")
    body = opts.get("body")
    if "json" in opts:
        body = _json_bytes(hub, opts["json"], "opts.json")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"

    owner = hub.host.current_owner()
    if in_flight_count(hub, owner) >= MAX_IN_FLIGHT:
        return None, (
            f"http.request: {owner} already has {MAX_IN_FLIGHT} requests in flight; "
            "wait for some callbacks before starting more"
        )
    request_id = f"http_{next(_ids)}"

    async def run() -> None:
        try:
            result = await _perform(hub, "http.request", method, url, headers, body, timeout)
        finally:
            hub.state(_State).in_flight.pop(request_id, None)
            hub.owners.discard(owner, request_id)
        if isinstance(result, tuple):
            args: tuple[Any, ...] = (None, hub.host.convert.to_lua(result[1]))
        else:
            args = (hub.host.convert.to_lua(result), None)
        hub.host.sched.start(owner, f"http.request {request_id} callback", callback, *args)

    task = hub.spawn(run(), name=f"http.request {request_id}", owner=owner)
    hub.state(_State).in_flight[request_id] = (owner, task)
    hub.owners.add(owner, request_id, task.cancel)
    return request_id


LUA = {"get": get, "post": post, "put": put, "delete": delete, "request": request}
WRONG_DOOR = {
    "fetch": "use http.request({url = ...}, function(resp, err) ... end) or http.get(url)",
    "patch": 'use http.request({method = "PATCH", url = ..., body = ...}, callback)',
    "head": 'use http.request({method = "HEAD", url = ...}, callback)',
    "options": 'use http.request({method = "OPTIONS", url = ...}, callback)',
    "del": "use http.delete(url, headers?)",
    "send": "use http.request(opts, callback)",
    "get_async": "use http.request({url = ...}, callback)",
    "post_json": "use http.post(url, table) (a table body is sent as JSON)",
    "cancel": "requests cannot be cancelled yet; unloading the plugin cancels its requests",
}
