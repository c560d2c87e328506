"""A loopback Web Push service, and browsers subscribed to it, for tests and the push bench.

    async with push_service() as svc:
        sub = svc.subscriber("a")          # a browser: its own P-256 key and auth secret
        sub.subscription                   # what the browser would hand the hub
        svc.plan("a", [500, 410])          # answers for the next requests to /push/a
        d = await svc.wait(1)              # the first delivery, checked and decrypted

Every request is checked as a real push service would (RFC 8030/8291/8292) with independent
code: the VAPID JWT's ES256 signature against the key in ``k``, ``aud`` = this service's
origin, ``exp`` in the future and within 24 h, a ``sub``; ``Content-Encoding: aes128gcm``,
``TTL``; a body of at most 4096 bytes, decrypted with ``http_ece`` and the subscriber's private
key. A request that fails a check is answered 400 and its problem kept in ``svc.problems``.
With ``verify=False`` the service only counts (the bench measures the sender, not this).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["Delivery", "PushService", "Subscriber", "b64url", "push_service", "unb64url"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscriber:
    """A browser's side of one push subscription."""

    name: str
    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


@dataclass
class Delivery:
    """One request the service accepted (status < 300) or answered by plan."""

    name: str
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    claims: dict[str, Any] | None = None
    vapid_key: str | None = None
    payload: bytes | None = None

    @property
    def json(self) -> Any:
        assert self.payload is not None
        return json.loads(self.payload)


@dataclass
class PushService:
    base: str
    verify: bool = True
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    plans: dict[str, list[int]] = field(default_factory=dict)
    retry_after: dict[str, str] = field(default_factory=dict)
    requests: list[Delivery] = field(default_factory=list)  # every request, in arrival order
    problems: list[str] = field(default_factory=list)
    count: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def subscriber(self, name: str) -> Subscriber:
        sub = Subscriber(name, f"{self.base}/push/{name}")
        self.subscribers[name] = sub
        return sub

    def plan(self, name: str, statuses: list[int]) -> None:
        """The statuses to answer for the next requests to `name` (then 201 again)."""
        self.plans[name] = list(statuses)

    def delivered(self, name: str | None = None) -> list[Delivery]:
        return [d for d in self.requests if d.status == 201 and (name is None or d.name == name)]

    async def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"push service: timed out waiting for {what}; requests: "
                f"{[(d.name, d.status) for d in self.requests]}; problems: {self.problems}"
            ) from None

    async def wait(self, n: int, timeout: float = 20.0) -> list[Delivery]:
        """Waits until `n` deliveries succeeded; returns them."""
        await self.wait_for(lambda: len(self.delivered()) >= n, f"{n} deliveries", timeout)
        return self.delivered()

    # The handler --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        self.count += 1
        if not self.verify:
            self.changed.set()
            return web.Response(status=201)
        d = Delivery(name, 201, {k.lower(): v for k, v in request.headers.items()}, body)
        try:
            self._check(d)
        except AssertionError as e:
            d.status = 400
            self.problems.append(f"{name}: {e}")
        plan = self.plans.get(name)
        if d.status == 201 and plan:
            d.status = plan.pop(0)
        self.requests.append(d)
        self.changed.set()
        headers = {}
        if d.status != 201 and name in self.retry_after:
            headers["Retry-After"] = self.retry_after[name]
        return web.Response(status=d.status, headers=headers, text="" if d.status < 300 else "no")

    def _check(self, d: Delivery) -> None:
        h = d.headers
        auth = h.get("authorization", "")
        assert auth.startswith("vapid "), f"Authorization is not vapid: {auth[:30]!r}"
        parts = dict(p.strip().split("=", 1) for p in auth[len("vapid ") :].split(","))
        token, k = parts["t"], parts["k"]
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(unb64url(head_b64))
        assert header.get("alg") == "ES256", f"JWT alg {header.get('alg')}"
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(k))
        sig = unb64url(sig_b64)
        assert len(sig) == 64, f"JWT signature of {len(sig)} bytes"
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            pub.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AssertionError("JWT signature does not verify") from None
        claims = json.loads(unb64url(claims_b64))
        assert claims.get("aud") == self.base, f"aud {claims.get('aud')!r} != {self.base!r}"
        now = time.time()
        assert now < claims["exp"] <= now + 24 * 3600 + 60, f"exp {claims['exp']} vs now {now}"
        assert isinstance(claims.get("sub"), str) and claims["sub"], "no sub claim"
        assert h.get("content-encoding") == "aes128gcm", h.get("content-encoding")
        assert h.get("ttl", "").isdigit(), f"TTL header {h.get('ttl')!r}"
        assert len(d.body) <= 4096, f"body of {len(d.body)} bytes"
        sub = self.subscribers[d.name]
        d.claims, d.vapid_key = claims, k
        d.payload = http_ece.decrypt(
            d.body, private_key=sub.key, auth_secret=sub.auth, version="aes128gcm"
        )


@asynccontextmanager
async def push_service(verify: bool = True) -> AsyncIterator[PushService]:
    """Runs the service on 127.0.0.1 (a free port) for the duration of the block."""
    svc: PushService | None = None

    async def handle(request: web.Request) -> web.Response:
        assert svc is not None
        return await svc.handle(request)

    app = web.Application()
    app.router.add_post("/push/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    svc = PushService(f"http://127.0.0.1:{port}", verify=verify)
    try:
        yield svc
    finally:
        await runner.cleanup()
