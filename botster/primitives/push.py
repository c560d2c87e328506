"""The ``push`` primitive: Web Push notifications to the browsers that asked for them.

Owns ``push.send`` (the spec's), the three functions behind the client commands
``push.vapid_public_key``, ``push.subscribe`` and ``push.unsubscribe``, and their storage:

* the VAPID key pair (RFC 8292, P-256): one per machine, made on first use and kept sealed in
  ``$BOTSTER_HOME/push/vapid.enc``; every subscription depends on it, so it never changes;
* this hub's subscriptions, sealed in ``$BOTSTER_HOME/push/<hub id>.subscriptions.enc``
  (one browser subscribes per hub, and the same browser gets the same endpoint from every
  hub of this machine, so each hub keeps its own list);
* both sealed with ``botster/base/vault.py`` (AES-256-GCM under the device master key, HKDF
  info ``botster push v1``): nothing of a subscription is on disk in plaintext.

Delivery is RFC 8030: the body encrypted with ``aes128gcm`` (RFC 8291) by pywebpush's
``WebPusher.encode`` (http_ece; pywebpush is imported off the loop on first use, it costs about
200 ms), one encryption per loop iteration; a VAPID JWT per push service origin (py_vapid;
``aud`` = that origin, ``exp`` 12 h ahead, ``sub`` = the contact below), ``TTL``
and ``Urgency`` headers, POSTed with the hub's aiohttp client. It runs in the background,
owned by the calling plugin: a service answering 404 or 410 loses the subscription; 429, 5xx
and network failures are retried with backoff (honouring ``Retry-After``); each failed delivery
is logged once.

The VAPID ``sub`` is the user's own contact, never a vendor's: the ``push_subject`` setting;
unset, ``mailto:`` the repository's git ``user.email``; else the relay's public URL when it is
https (its origin); else ``push.send`` refuses with a message naming the setting.

Leaves the browser side (the switch, the service worker) to the web app, and deciding when an
agent deserves a notification to ``lib/attention.lua``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fcntl
import hashlib
import importlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from botster.base import net, vault
from botster.base.config import valid_push_subject
from botster.base.errors import ArgumentError
from botster.base.git import git
from botster.base.paths import ensure_private_dir
from botster.lua.api import describe, lua_api
from botster.primitives.context import HubContext

__all__ = ["LUA", "MAX_PAYLOAD", "fit_payload"]

log = logging.getLogger("push")

# The largest JSON payload whose aes128gcm body (86-byte header, 1 delimiter, 16-byte tag)
# stays within the 4096 bytes every push service accepts.
MAX_PAYLOAD = 3993
MAX_SUBSCRIPTIONS = 1000  # per hub: a client cannot grow the sealed file without bound
MAX_ENDPOINT = 2048
MAX_URL = 2048
DEFAULT_TTL = 24 * 3600
MAX_TTL = 28 * 24 * 3600
URGENCIES = ("very-low", "low", "normal", "high")
JWT_LIFETIME = 12 * 3600  # RFC 8292 allows up to 24 h; renewed when less than 1 h is left
REQUEST_TIMEOUT = 30.0
RETRY_DELAYS = (0.5, 2.0, 8.0)  # backoff between the 4 attempts of one delivery
MAX_RETRY_AFTER = 60.0
CONCURRENCY = 16  # requests in flight per hub
ELLIPSIS = "\u2026"
NO_SUBJECT = (
    "push_subject is not set: push services want a contact for this hub's pushes (the VAPID "
    'sub claim). Set it in {config}: "push_subject": "mailto:you@example.com" (or '
    '"https://your.site"; from Lua: config.set("push_subject", "mailto:you@example.com")), '
    "or give the repository a git user.email, or use a relay with an https URL"
)

_INFO = b"botster push v1"
_VAPID_AAD = b"botster push v1\nvapid"
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})

Fail = tuple[None, str]


class SendOptions(TypedDict, total=False):
    ttl: int
    urgency: str


# Storage (blocking; run on the hub's I/O pool) -------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    """Decodes base64url with or without padding (browsers send it unpadded)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _vapid_key_blocking(
    dir: Path, key_file: Path, create: bool
) -> ec.EllipticCurvePrivateKey | None:
    """The machine's VAPID private key, made once (under a lock shared by every hub here)."""
    ensure_private_dir(dir)
    file = dir / "vapid.enc"
    lock = os.open(dir / "vapid.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        raw = vault.open_sealed_blocking(file, key_file, _INFO, _VAPID_AAD, 32, "vapid key")
        if raw is None:
            if not create:
                return None
            key = ec.generate_private_key(ec.SECP256R1())
            raw = key.private_numbers().private_value.to_bytes(32, "big")
            vault.seal_blocking(file, key_file, _INFO, _VAPID_AAD, raw)
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    finally:
        os.close(lock)


def _subs_aad(hub_id: str) -> bytes:
    return b"botster push v1\nsubscriptions\n" + hub_id.encode()


def _load_subs_blocking(file: Path, key_file: Path, hub_id: str) -> dict[str, dict[str, Any]]:
    raw = vault.open_sealed_blocking(
        file, key_file, _INFO, _subs_aad(hub_id), 8 << 20, "push subscriptions"
    )
    subs = json.loads(raw) if raw else []
    return {s["endpoint"]: s for s in subs}


def _save_subs_blocking(
    dir: Path, file: Path, key_file: Path, hub_id: str, subs: list[dict[str, Any]]
) -> None:
    ensure_private_dir(dir)
    data = json.dumps(subs, separators=(",", ":")).encode()
    vault.seal_blocking(file, key_file, _INFO, _subs_aad(hub_id), data)


# Checking what browsers send ------------------------------------------------------------------


class _Refused(Exception):
    """A subscription from a client is malformed; the message names the field."""


def _short(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return describe(value)


def _check_endpoint(endpoint: Any, arg: str) -> str:
    if not isinstance(endpoint, str):
        raise _Refused(f"{arg}: expected an http(s) URL, got {describe(endpoint)}")
    parts = urlsplit(endpoint) if len(endpoint) <= MAX_ENDPOINT else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 0x20 for c in endpoint)
    ):
        raise _Refused(
            f"{arg}: expected an http(s) URL of at most {MAX_ENDPOINT} characters, "
            f"got {_short(endpoint)}"
        )
    return endpoint


def _check_key_field(keys: dict[str, Any], name: str, size: int, what: str) -> str:
    value = keys.get(name)
    arg = f"subscription.keys.{name}"
    if not isinstance(value, str):
        raise _Refused(f"{arg}: expected base64url of {what}, got {describe(value)}")
    try:
        raw = _unb64url(value) if len(value) <= 4 * size else b""
    except (binascii.Error, ValueError):
        raise _Refused(f"{arg}: expected base64url of {what}, got {_short(value)}") from None
    if len(raw) != size:
        raise _Refused(f"{arg}: expected base64url of {what}, got {len(raw)} bytes")
    return _b64url(raw)


def _check_subscription(sub: Any) -> dict[str, Any]:
    """The subscription in the shape we store, or _Refused naming the bad field."""
    if not isinstance(sub, dict):
        raise _Refused(f"subscription: expected a table, got {describe(sub)}")
    endpoint = _check_endpoint(sub.get("endpoint"), "subscription.endpoint")
    keys = sub.get("keys")
    if not isinstance(keys, dict):
        raise _Refused(f"subscription.keys: expected a table, got {describe(keys)}")
    point = "a 65-byte uncompressed P-256 point"
    p256dh = _check_key_field(keys, "p256dh", 65, point)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64url(p256dh))
    except ValueError:
        raise _Refused(f"subscription.keys.p256dh: expected {point}, got another value") from None
    auth = _check_key_field(keys, "auth", 16, "a 16-byte secret")
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}


# Payloads ----------------------------------------------------------------------------------


def _encoded(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _shorten(payload: dict[str, Any], field: str, limit: int) -> None:
    """Cuts payload[field] (a string) to the longest prefix + ellipsis that fits `limit`."""
    text = payload[field]
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits; lengths only grow with the prefix
        mid = (lo + hi + 1) // 2
        payload[field] = text[:mid] + ELLIPSIS
        if len(_encoded(payload)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    payload[field] = text[:lo] + ELLIPSIS


def fit_payload(payload: dict[str, Any], limit: int = MAX_PAYLOAD) -> bytes:
    """The payload as JSON of at most `limit` bytes: the body is shortened first (with an
    ellipsis), then the title, then extra fields are left out, largest first."""
    payload = dict(payload)
    if len(_encoded(payload)) <= limit:
        return _encoded(payload)
    for field in ("body", "title"):
        if isinstance(payload.get(field), str) and payload[field]:
            _shorten(payload, field, limit)
            if len(_encoded(payload)) <= limit:
                return _encoded(payload)
    extras = [k for k in payload if k not in ("title", "body", "url")]
    extras.sort(key=lambda k: len(_encoded({k: payload[k]})), reverse=True)
    for key in extras:
        del payload[key]
        if len(_encoded(payload)) <= limit:
            break
    return _encoded(payload)


def _check_message(msg: dict[str, Any]) -> dict[str, Any]:
    title = msg.get("title")
    if not isinstance(title, str) or not title:
        raise ArgumentError(f"msg.title: expected a non-empty string, got {_short(title)}")
    if "body" in msg and not isinstance(msg["body"], str):
        raise ArgumentError(f"msg.body: expected string, got {describe(msg['body'])}")
    url = msg.get("url")
    if url is not None:
        if not isinstance(url, str):
            raise ArgumentError(f"msg.url: expected string, got {describe(url)}")
        scheme = urlsplit(url).scheme
        if len(url) > MAX_URL or not (scheme in ("http", "https") or url.startswith("/")):
            raise ArgumentError(
                f"msg.url: expected an http(s) URL or an absolute path of at most {MAX_URL} "
                f"characters, got {_short(url)}"
            )
    return msg


# Per-hub state -------------------------------------------------------------------------------


class _Push:
    """One hub's push state: keys, subscriptions, the HTTP session, deliveries in flight."""

    def __init__(self, hub: HubContext) -> None:
        self.hub = hub
        self.dir = hub.paths.home / "push"
        self.key_file = hub.paths.home / "secrets.key"
        self.subs_file = self.dir / f"{hub.hub_id}.subscriptions.enc"
        self.client = net.LazySession(hub)
        self.lock = asyncio.Lock()  # one load or save at a time, in call order
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.crypto = asyncio.Lock()
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._subs: dict[str, dict[str, Any]] | None = None
        self._vapid: Any = None  # py_vapid.Vapid02, once pywebpush is imported
        # (origin, subject) -> (Authorization, expiry): signed once per service, not per push.
        self._jwts: dict[tuple[str, str], tuple[str, float]] = {}
        self._git_email: str | None = None
        self._webpush: Any = None

    async def key(self, create: bool = True) -> ec.EllipticCurvePrivateKey | None:
        if self._key is None:
            self._key = await self.hub.run_blocking(
                _vapid_key_blocking, self.dir, self.key_file, create
            )
        return self._key

    async def subscriptions(self) -> dict[str, dict[str, Any]]:
        if self._subs is None:
            async with self.lock:
                if self._subs is None:
                    self._subs = await self.hub.run_blocking(
                        _load_subs_blocking, self.subs_file, self.key_file, self.hub.hub_id
                    )
        return self._subs

    async def change(self, endpoint: str, sub: dict[str, Any] | None) -> bool:
        """Adds, replaces (`sub`) or removes (None) one subscription and saves; True if the
        stored set changed."""
        subs = await self.subscriptions()
        async with self.lock:
            if sub is None:
                if endpoint not in subs:
                    return False
                subs.pop(endpoint)
            else:
                if subs.get(endpoint) == sub:
                    return False
                subs[endpoint] = sub
            snapshot = sorted(subs.values(), key=lambda s: s["endpoint"])
            await self.hub.run_blocking(
                _save_subs_blocking,
                self.dir,
                self.subs_file,
                self.key_file,
                self.hub.hub_id,
                snapshot,
            )
            return True

    async def library(self) -> Any:
        """pywebpush, imported on first use off the loop (it pulls in requests)."""
        if self._webpush is None:
            self._webpush = await self.hub.run_blocking(importlib.import_module, "pywebpush")
            key = await self.key()
            self._vapid = self._webpush.Vapid(private_key=key)
        return self._webpush

    async def subject(self) -> str | None:
        """The VAPID ``sub``: the ``push_subject`` setting; else ``mailto:`` the repository's
        git user.email; else the relay's public URL (its origin) when it is https; else None."""
        configured = self.hub.config.setting("push_subject")
        if configured:
            return configured
        if self._git_email is None:  # a found address is kept; a missing one is asked again
            res = await git(str(self.hub.paths.repo), "config", "--get", "user.email")
            email = res.out.strip() if res.code == 0 else ""
            if valid_push_subject(f"mailto:{email}"):
                self._git_email = email
        if self._git_email:
            return f"mailto:{self._git_email}"
        parts = urlsplit(self.hub.relay.configured_url() or "")
        origin = f"https://{parts.hostname}"
        if parts.scheme == "https" and valid_push_subject(origin):
            return origin
        return None

    def authorization(self, origin: str, subject: str) -> str:
        """The VAPID Authorization header for one push service, reused while it is fresh."""
        now = time.time()
        cached = self._jwts.get((origin, subject))
        if cached and cached[1] - now > 3600:
            return cached[0]
        exp = int(now) + JWT_LIFETIME
        # A fresh claims dict each time: the signer must not see another service's aud.
        header = self._vapid.sign({"sub": subject, "aud": origin, "exp": exp})["Authorization"]
        self._jwts[(origin, subject)] = (header, exp)
        return header

    async def deliver(
        self,
        data: bytes,
        subs: list[dict[str, Any]],
        ttl: int,
        urgency: str,
        subject: str,
        owner: str,
    ) -> None:
        await self.library()
        posts: list[asyncio.Task[None]] = []
        try:
            # One subscription at a time: encrypted, then its POST started (and retried) in a
            # task of its own. Starting every task at once made a loop iteration of a push to
            # many browsers as long as all their first steps together.
            for sub in subs:
                body = await self._encrypt(data, sub)
                posts.append(
                    self.hub.spawn(
                        self._deliver_one(body, sub, ttl, urgency, subject, owner),
                        name="push.send delivery",
                        owner=owner,
                    )
                )
            # Each failure is logged by its task (hub.spawn); this only waits.
            await asyncio.gather(*posts, return_exceptions=True)
        except asyncio.CancelledError:
            for task in posts:
                task.cancel()
            log.info("[%s] push.send: deliveries still in progress were cancelled", owner)
            raise

    async def _encrypt(self, data: bytes, sub: dict[str, Any]) -> bytes:
        """The aes128gcm body for one subscription (RFC 8291, pywebpush + http_ece).

        About 0.4 ms of CPU each, on the loop: one at a time (every push.send of this hub takes
        turns), each in a loop iteration of its own. Not on a thread: http_ece is Python and
        key generation holds the GIL, so the loop waits for it; measured with bench/push.py
        (batches of 8 on a thread, 3 interleaved pairs), p99 tick jitter while pushing was 1.3-6.5x
        the quiet windows' on a thread against 0.9-2.0x here, though the thread pushed faster.
        """
        async with self.crypto:
            await asyncio.sleep(0)
            return self._webpush.WebPusher(sub).encode(data, "aes128gcm")["body"]

    async def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """One POST to the push service: (status, Retry-After)."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with self.slots:
            async with self.client.get().post(
                endpoint, data=body, headers=headers, timeout=timeout
            ) as resp:
                await resp.read()  # small; read so the connection goes back to the pool
                return resp.status, resp.headers.get("Retry-After", "")

    async def _deliver_one(
        self, body: bytes, sub: dict[str, Any], ttl: int, urgency: str, subject: str, owner: str
    ) -> None:
        endpoint = sub["endpoint"]
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        # Endpoints are capabilities: logs show the service and a short fingerprint only.
        where = f"{origin} #{hashlib.sha256(endpoint.encode()).hexdigest()[:8]}"
        first_failure = why = ""
        attempts = len(RETRY_DELAYS) + 1
        for attempt in range(1, attempts + 1):
            delay = RETRY_DELAYS[attempt - 1] if attempt < attempts else 0.0
            headers = {
                "Authorization": self.authorization(origin, subject),
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "TTL": str(ttl),
                "Urgency": urgency,
            }
            try:
                status, retry_after = await self._post(endpoint, body, headers)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                why = net.reason(e, REQUEST_TIMEOUT)
            else:
                if status < 300:
                    if first_failure:
                        log.info(
                            "[%s] push to %s delivered after %d attempts (first: %s)",
                            owner,
                            where,
                            attempt,
                            first_failure,
                        )
                    return
                if status in (404, 410):
                    await self.change(endpoint, None)
                    log.info(
                        "[%s] push to %s: HTTP %s, the subscription is gone; dropped it",
                        owner,
                        where,
                        status,
                    )
                    return
                why = f"HTTP {status}"
                if status not in _RETRYABLE:
                    log.warning("[%s] push to %s failed: %s; not retried", owner, where, why)
                    return
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER))
            first_failure = first_failure or why
            if attempt < attempts:
                await asyncio.sleep(delay)
        log.warning(
            "[%s] push to %s failed: %s; gave up after %d attempts (first: %s)",
            owner,
            where,
            why,
            attempts,
            first_failure,
        )


async def _guard(op: str, coro: Any) -> Any:
    """Runs a storage step; disk and key-file failures become ``nil, "push.<op>: ..."``."""
    try:
        return await coro
    except vault.VaultError as e:
        return None, f"push.{op}: {e}"
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        return None, f"push.{op}: {reason}"


# The Lua-facing functions ---------------------------------------------------------------------


@lua_api
async def send(hub: HubContext, msg: dict[str, Any], opts: SendOptions | None = None) -> int | Fail:
    """push.send({title, body?, url?, ...}, {ttl?, urgency?}?) -> integer | nil, err

    Sends a Web Push notification to every browser subscribed to this hub (see the client
    command ``push.subscribe``). Every field of `msg` goes into the JSON payload the browser's
    service worker receives: `title` (a non-empty string), `body` (string), `url` (an http(s)
    URL or an absolute path; clicking the notification opens it) and any extra JSON fields
    (e.g. `agent_key`). A payload over 3993 bytes (the push services' 4 KiB limit) is
    shortened, never refused: the body first, with an ellipsis, then the title, then extra
    fields are left out, largest first.

    * `opts.ttl`: seconds the push service keeps it for an offline browser (default: 86400;
      0..2419200).
    * `opts.urgency`: ``"very-low"``, ``"low"``, ``"normal"`` or ``"high"`` (default:
      ``"normal"``).

    Returns the number of subscriptions it is queued for (0 when no browser subscribed);
    delivery happens in the background, owned by the calling plugin (unloading it cancels
    what is still retrying). A subscription the push service answers 404 or 410 for is
    dropped; other failures are retried with backoff and logged once. Returns nil, err when
    the stored subscriptions or keys cannot be read, or when there is no contact for the
    VAPID ``sub`` claim: the ``push_subject`` setting (``mailto:`` or ``https://``); unset,
    ``mailto:`` the repository's git ``user.email``, else the relay's public URL if it is
    https (the error names the setting and the config file).
    Raises on a missing title, a non-string body or url, an unknown option or a bad value.

    ```lua
    local n = push.send({title = "Build done", body = "all green", url = "/hubs/abc"})
    log.info("queued for " .. n .. " browsers")
    ```
    """
    _check_message(msg)
    opts = opts or {}
    ttl = opts.get("ttl", DEFAULT_TTL)
    if not 0 <= ttl <= MAX_TTL:
        raise ArgumentError(f"opts.ttl: expected an integer 0..{MAX_TTL}, got {describe(ttl)}")
    urgency = opts.get("urgency", "normal")
    if urgency not in URGENCIES:
        raise ArgumentError(
            f"opts.urgency: expected one of {', '.join(URGENCIES)}, got {_short(urgency)}"
        )
    data = fit_payload(msg)
    state = hub.state(_Push)
    subs = await _guard("send", state.subscriptions())
    if isinstance(subs, tuple):
        return subs
    if not subs:
        return 0
    subject = await state.subject()
    if subject is None:
        return None, "push.send: " + NO_SUBJECT.format(config=state.hub.config.path)
    hub = state.hub
    owner = hub.host.current_owner()
    hub.spawn(
        state.deliver(data, list(subs.values()), ttl, urgency, subject, owner),
        name="push.send",
        owner=owner,
    )
    return len(subs)


@lua_api
async def vapid_public_key(hub: HubContext) -> str | Fail:
    """push.vapid_public_key() -> string | nil, err

    This machine's VAPID public key (RFC 8292) as base64url of the uncompressed P-256 point
    (65 bytes): what a browser passes to ``PushManager.subscribe`` as
    `applicationServerKey`. Made on first use and kept, encrypted, in
    ``$BOTSTER_HOME/push/vapid.enc``. Returns nil, err when the key cannot be read or made
    (an unsafe key file, a read-only disk).

    ```lua
    local key = assert(push.vapid_public_key())
    ```
    """
    key = await _guard("vapid_public_key", hub.state(_Push).key())
    if isinstance(key, tuple):
        return key
    assert key is not None
    return _b64url(key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


@lua_api
async def subscribe(hub: HubContext, subscription: Any = None) -> bool | Fail:
    """push.subscribe(subscription) -> true | nil, err

    Stores a browser's push subscription, the JSON of its ``PushSubscription``:
    ``{endpoint, keys = {p256dh, auth}}`` (other fields such as `expirationTime` are
    ignored). Kept encrypted in ``$BOTSTER_HOME/push/<hub id>.subscriptions.enc`` across
    restarts; subscribing the same endpoint again replaces its keys. The subscription comes
    from a client, so a malformed one is returned, not raised: nil and a message naming the
    field (``push.subscribe: subscription.endpoint: expected an http(s) URL ...``). Also nil,
    err when the hub already holds 1000 subscriptions or the disk fails.

    ```lua
    local ok, err = push.subscribe(args.subscription)
    ```
    """
    try:
        sub = _check_subscription(subscription)
    except _Refused as e:
        return None, f"push.subscribe: {e}"
    state = hub.state(_Push)
    subs = await _guard("subscribe", state.subscriptions())
    if isinstance(subs, tuple):
        return subs
    if sub["endpoint"] not in subs and len(subs) >= MAX_SUBSCRIPTIONS:
        return None, f"push.subscribe: this hub already holds {MAX_SUBSCRIPTIONS} subscriptions"
    done = await _guard("subscribe", state.change(sub["endpoint"], sub))
    return done if isinstance(done, tuple) else True


@lua_api
async def unsubscribe(hub: HubContext, endpoint: str) -> bool | Fail:
    """push.unsubscribe(endpoint) -> boolean | nil, err

    Forgets the subscription with this endpoint: true if there was one, false if not
    (unsubscribing twice is fine). Returns nil, err when the disk fails. Raises when
    `endpoint` is not a string.

    ```lua
    push.unsubscribe(args.endpoint)
    ```
    """
    result = await _guard("unsubscribe", hub.state(_Push).change(endpoint, None))
    return result


LUA = {
    "send": send,
    "vapid_public_key": vapid_public_key,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
}
WRONG_DOOR = {
    "notify": "use push.send({title, body, url})",
    "publish": "use push.send({title, body, url})",
    "public_key": "use push.vapid_public_key()",
    "vapid_key": "use push.vapid_public_key()",
    "remove": "use push.unsubscribe(endpoint)",
}
