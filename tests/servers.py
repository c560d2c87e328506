"""Loopback servers for network primitive tests: a real aiohttp app on 127.0.0.1, port 0.

    async with http_server() as srv:       # plain HTTP + a websocket echo endpoint
        srv.url("/echo")                   # "http://127.0.0.1:<port>/echo"
        srv.ws_url("/ws")                  # "ws://127.0.0.1:<port>/ws"
    async with http_server(tls=True) ...   # the same app over TLS with a self-signed cert

Routes (any method unless noted):
  /echo               200, JSON {method, path, query, headers, body} of the request
  /raw                200, the request body as-is (application/octet-stream)
  /status/<code>      that status, body "status <code>"
  /headers            200, a repeated header (X-Multi: a, X-Multi: b) and X-Single
  /slow?ms=N          waits N ms (the server's own behaviour), then 200 "slow done"
  /hang               never answers until the server stops
  /hold               answers "held" once the test sets ``srv.release``
  /huge               claims a 100 MiB Content-Length, sends a few bytes, then hangs
  /ws                 websocket echo; text "close <code> <reason>" makes the server close,
                      "drop" drops the TCP connection, "headers" replies with the handshake
                      headers as JSON, "big <n>" sends n bytes in one binary message,
                      anything else is echoed back with its frame type
  /no-ws              a plain 404 for websocket handshakes

Everything the server saw is kept in ``srv.seen`` (method, path, headers, body) so tests can
assert what really went over the wire. Every request also sets ``srv.arrived``;
``srv.wait_ws_open(n)`` waits until n websocket connections are open on the server side.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.lua_prelude import lua_str  # re-exported: test_hub_client still imports it from here

__all__ = ["LoopbackServer", "free_port", "http_server", "lua_str"]


@dataclass
class LoopbackServer:
    base: str
    ws_base: str
    seen: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ws_open: int = 0  # websocket handlers running now
    ws_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def ws_url(self, path: str = "/ws") -> str:
        return self.ws_base + path

    async def wait_seen(self, path: str, within: float = 5.0) -> None:
        """Waits until a request for `path` has reached the server."""

        async def scan() -> None:
            while not any(s["path"] == path for s in self.seen):
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(scan(), within)
        except TimeoutError:
            seen = [s["path"] for s in self.seen]
            raise AssertionError(f"no request for {path} arrived; seen: {seen}") from None

    async def wait_ws_open(self, count: int, within: float = 5.0) -> None:
        """Waits until exactly `count` websocket connections are open on the server side."""

        async def settle() -> None:
            while self.ws_open != count:
                self.ws_changed.clear()
                await self.ws_changed.wait()

        try:
            await asyncio.wait_for(settle(), within)
        except TimeoutError:
            raise AssertionError(
                f"server has {self.ws_open} websocket connections open, expected {count}"
            ) from None


async def free_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


def _self_signed(tmp: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


def _app(srv: LoopbackServer) -> web.Application:
    async def record(request: web.Request) -> bytes:
        body = await request.read()
        srv.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        srv.arrived.set()
        return body

    async def echo(request: web.Request) -> web.Response:
        body = await record(request)
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
        )

    async def raw(request: web.Request) -> web.Response:
        body = await record(request)
        return web.Response(body=body, content_type="application/octet-stream")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def headers(request: web.Request) -> web.Response:
        await record(request)
        resp = web.Response(text="headers")
        resp.headers.add("X-Multi", "a")
        resp.headers.add("X-Multi", "b")
        resp.headers["X-Single"] = "one"
        return resp

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
        return web.Response(text="slow done")

    async def hang(request: web.Request) -> web.Response:
        await record(request)
        await srv.stopping.wait()
        return web.Response(text="too late")

    async def hold(request: web.Request) -> web.Response:
        await record(request)
        await srv.release.wait()
        return web.Response(text="held")

    async def huge(request: web.Request) -> web.StreamResponse:
        await record(request)
        resp = web.StreamResponse(headers={"Content-Length": str(100 << 20)})
        await resp.prepare(request)
        await resp.write(b"x" * 1024)
        await srv.stopping.wait()
        return resp

    async def ws(request: web.Request) -> web.WebSocketResponse:
        await record(request)
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        srv.ws_open += 1
        srv.ws_changed.set()
        try:
            await serve(request, sock)
        finally:
            srv.ws_open -= 1
            srv.ws_changed.set()
        return sock

    async def serve(request: web.Request, sock: web.WebSocketResponse) -> None:
        async for msg in sock:
            if msg.type is WSMsgType.TEXT:
                text = msg.data
                if text.startswith("close "):
                    _, code, reason = text.split(" ", 2)
                    await sock.close(code=int(code), message=reason.encode())
                    break
                if text == "drop":
                    assert request.transport is not None
                    request.transport.abort()
                    break
                if text.startswith("big "):
                    await sock.send_bytes(b"x" * int(text[4:]))
                    continue
                if text == "headers":
                    hs = {k.lower(): v for k, v in request.headers.items()}
                    await sock.send_str(json.dumps(hs))
                    continue
                await sock.send_str(text)
            elif msg.type is WSMsgType.BINARY:
                await sock.send_bytes(msg.data)

    async def no_ws(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=404, text="no websocket here")

    app = web.Application(client_max_size=1 << 26)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/raw", raw)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/headers", headers)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/hang", hang)
    app.router.add_route("*", "/hold", hold)
    app.router.add_route("*", "/huge", huge)
    app.router.add_get("/ws", ws)
    app.router.add_get("/no-ws", no_ws)
    return app


@asynccontextmanager
async def http_server(*, tls: bool = False) -> AsyncIterator[LoopbackServer]:
    """Runs the test app on 127.0.0.1 (port 0) in this process until the block exits."""
    srv = LoopbackServer(base="", ws_base="")
    runner = web.AppRunner(_app(srv), handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _self_signed(Path(tmp)) if tls else None
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if tls else "http"
        srv.base = f"{scheme}://127.0.0.1:{port}"
        srv.ws_base = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}"
        try:
            yield srv
        finally:
            srv.stopping.set()
            srv.release.set()
            await runner.cleanup()
