"""A Python stand-in for the browser, for tests and benchmarks.

Pairs from a pairing URL (verifies the bundle, pins the hub's keys, opens an outbound Olm
session with the code's one-time key), offers WebRTC with aiortc, and then speaks the client
protocol over the encrypted data channel: hello, requests, subscriptions, terminal input and
resize. Signalling goes through a ``Signaller``: ``SocketSignaller`` uses the hub socket's
``remote.signal`` command (no relay); a relay signaller posts the same envelopes through
HubSignalingChannel.

Olm: vodozemac's Python outbound sessions are v1 (the hub detects the version). The session
sends PreKey messages until the hub's first message decrypts, as the wire contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import vodozemac

from botster.base.framing import (
    JSON,
    PROCESS_EXITED,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    encode_json,
    encode_session,
    split_session,
)
from botster.remote.bundle import Bundle, b64u, parse_pairing_url, unb64, verify
from botster.remote.webrtc import (
    DC_BUNDLE,
    DC_NORMAL,
    DC_PREKEY,
    Reassembler,
    encode_plaintexts,
)
from botster.transports.handshake import hello

__all__ = ["RelaySignaller", "Signaller", "SocketSignaller", "TestBrowser", "force_loopback"]


def force_loopback() -> None:
    """aioice host candidates on 127.0.0.1 only (nothing leaves the machine)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class Signaller(Protocol):
    """Carries envelopes to the hub; returns the envelopes it answered with."""

    async def signal(self, identity: str, envelope: dict[str, Any]) -> list[dict[str, Any]]: ...
    async def bundle_request(self, identity: str) -> list[dict[str, Any]]: ...


class SocketSignaller:
    """Signalling over a hub-socket connection (``remote.signal`` / ``remote.bundle_request``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def signal(self, identity: str, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        res = await self.conn.request(
            "remote.signal", {"browser_identity": identity, "envelope": envelope}
        )
        return list(res.get("envelopes") or [])

    async def bundle_request(self, identity: str) -> list[dict[str, Any]]:
        res = await self.conn.request("remote.bundle_request", {"browser_identity": identity})
        return list(res.get("envelopes") or [])


class RelaySignaller:
    """Signalling through the relay, as a browser does: ActionCable ``HubSignalingChannel``
    ``{hub_id, browser_identity}``; performs ``signal {envelope}`` and ``request_bundle``, and
    collects the ``signal`` envelopes and ``health`` states the relay sends."""

    def __init__(self, relay_url: str, server_id: str) -> None:
        self.relay_url = relay_url.rstrip("/")
        self.server_id = server_id
        self.envelopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.health: list[str] = []
        self._session: Any = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._identifier = ""
        self._confirmed = asyncio.Event()
        self._health_seen = asyncio.Event()

    async def open(self, identity: str) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        url = "ws" + self.relay_url.removeprefix("http") + "/cable"
        self._ws = await self._session.ws_connect(url, protocols=("actioncable-v1-json",))
        self._identifier = json.dumps(
            {
                "channel": "HubSignalingChannel",
                "hub_id": self.server_id,
                "browser_identity": identity,
            },
            separators=(",", ":"),
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self._ws.send_str(
            json.dumps({"command": "subscribe", "identifier": self._identifier})
        )
        async with asyncio.timeout(10):
            await self._confirmed.wait()
            await self._health_seen.wait()  # the relay sends the hub's health on subscribe

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if data.get("type") == "confirm_subscription":
                self._confirmed.set()
            message = data.get("message")
            if data.get("identifier") != self._identifier or not isinstance(message, dict):
                continue
            if message.get("type") == "health":
                self.health.append(str(message.get("cli")))
                self._health_seen.set()
            elif message.get("type") == "signal":
                self.envelopes.put_nowait(message["envelope"])

    async def _perform(self, action: str, **data: Any) -> None:
        payload = json.dumps({"action": action, **data})
        await self._ws.send_str(
            json.dumps({"command": "message", "identifier": self._identifier, "data": payload})
        )

    async def _replies(self, want: Callable[[dict[str, Any]], bool], wait: float) -> list[Any]:
        out: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(wait):
                while not out or not want(out[-1]):
                    out.append(await self.envelopes.get())
        except TimeoutError:
            pass
        return out

    async def signal(self, identity: str, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        await self._perform("signal", envelope=envelope)
        return await self._replies(lambda e: e.get("t") in (0, 1), self.reply_wait)

    async def bundle_request(self, identity: str) -> list[dict[str, Any]]:
        await self._perform("request_bundle")
        return await self._replies(lambda e: e.get("t") == 2, self.reply_wait)

    reply_wait = 15.0

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()


class TestBrowser:
    """One browser profile paired (or pairing) with one hub.

    Args:
        url: a pairing URL, or None with `bundle` for a browser that got a bundle elsewhere.
        signaller: how envelopes reach the hub.
    """

    __test__ = False  # not a pytest class

    def __init__(self, url: str | None, signaller: Signaller, *, bundle: Bundle | None = None):
        if url is not None:
            self.relay_url, self.server_id, bundle = parse_pairing_url(url)
        assert bundle is not None
        self.signaller = signaller
        self.account = vodozemac.Account()
        self.key = self.account.curve25519_key.to_base64()
        self.identity = f"{self.key}:{uuid.uuid4()}"
        self.hub_identity = bundle.identity_key
        self.hub_signing = bundle.signing_key
        self._rekey(bundle)
        self.pc: Any = None
        self.dc: Any = None
        self.answer_sdp = ""  # the hub's last answer (its candidates: host, relay)
        self.messages: list[dict[str, Any]] = []
        self.frames: list[tuple[int, bytes]] = []
        self.screens: dict[str, bytearray] = {}  # session id -> snapshot + output since
        self.exits: dict[str, int] = {}
        self.bundles_received = 0
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reasm = Reassembler()
        self._ids = iter(range(1, 1 << 30))
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.on_frame: Callable[[int, bytes], None] | None = None

    # Olm -------------------------------------------------------------------------------------

    def _rekey(self, bundle: Bundle) -> None:
        verify(bundle.raw, identity_key=self.hub_identity, signing_key=self.hub_signing)
        self.session = self.account.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_bytes(bundle.identity_key),
            vodozemac.Curve25519PublicKey.from_bytes(bundle.one_time_key),
        )

    def envelope(self, payload: dict[str, Any]) -> dict[str, Any]:
        t, body = self.session.encrypt(json.dumps(payload).encode()).to_parts()
        env = {"t": t, "b": b64u(body)}
        if t == 0:
            env["k"] = self.key
        return env

    def open_envelope(self, env: dict[str, Any]) -> dict[str, Any] | None:
        if env.get("t") == 2:
            self._rekey(verify(unb64(env["b"])))
            self.bundles_received += 1
            return None
        msg = vodozemac.AnyOlmMessage.from_parts(int(env["t"]), unb64(env["b"]))
        return dict(json.loads(self.session.decrypt(msg)))

    # Signalling and connection ---------------------------------------------------------------

    async def request_bundle(self) -> int:
        """Asks for a fresh bundle (as a browser does on every page load); returns how many
        envelopes came back (0 for a browser the hub does not know)."""
        replies = await self.signaller.bundle_request(self.identity)
        for env in replies:
            self.open_envelope(env)
        return len(replies)

    async def connect(
        self,
        within: float = 20.0,
        *,
        ice_servers: list[dict[str, Any]] | None = None,
        relay_only: bool = False,
    ) -> None:
        """Offers, applies the answer, waits for the channel and completes the hello.

        Args:
            ice_servers: STUN/TURN servers as ``GET /hubs/<id>/webrtc`` lists them.
            relay_only: gather TURN relay candidates only (``iceTransportPolicy: "relay"``).

        Raises:
            ConnectionError: the hub sent no answer (not paired, or refused).
        """
        from aiortc import (
            RTCConfiguration,
            RTCIceServer,
            RTCPeerConnection,
            RTCSessionDescription,
        )
        from aiortc.rtcconfiguration import RTCIceTransportPolicy

        if os.environ.get("BOTSTER_WEBRTC_LOOPBACK") == "1":
            force_loopback()
        if self.pc is not None:
            await self.pc.close()  # a reconnect: a new peer, a new page of messages
        self.messages, self.frames, self.screens, self.exits = [], [], {}, {}
        self.closed = asyncio.Event()
        self._reasm = Reassembler()
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers or []
        ]
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        self.dc = self.pc.createDataChannel("relay", ordered=True)
        opened = asyncio.Event()
        self.dc.on("open", opened.set)
        self.dc.on("message", self._on_dc)
        self.dc.on("close", self.closed.set)
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        replies = await self.signaller.signal(
            self.identity, self.envelope({"type": "offer", "sdp": self.pc.localDescription.sdp})
        )
        answer = None
        for env in replies:
            plain = self.open_envelope(env)
            if plain and plain.get("type") == "answer":
                answer = plain["sdp"]
        if answer is None:
            await self.close()
            raise ConnectionError("the hub did not answer the offer")
        self.answer_sdp = answer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        async with asyncio.timeout(within):
            await opened.wait()
            await self.wait_for(lambda: any(m.get("type") == "dc_ready" for m in self.messages))
        self.send(hello("browser"))
        async with asyncio.timeout(within):
            await self.wait_for(lambda: any(m.get("type") == "hello_ack" for m in self.messages))

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()

    def path_kind(self) -> str | None:
        """``"relayed"`` when the nominated ICE pair's local candidate is a TURN relay
        candidate, ``"direct"`` for any other, None before a pair is nominated (what the web
        app's link badge shows, read from aioice since aiortc has no candidate-pair stats)."""
        sctp = self.pc.sctp if self.pc is not None else None
        if sctp is None:
            return None
        nominated = getattr(sctp.transport.transport._connection, "_nominated", {})
        pair = nominated.get(1)
        if pair is None:
            return None
        return "relayed" if pair.local_candidate.type == "relay" else "direct"

    # Data channel ------------------------------------------------------------------------------

    def send_inner(self, inner: bytes) -> None:
        for plain in encode_plaintexts(inner):
            t, body = self.session.encrypt(plain).to_parts()
            if t == 0:
                self.dc.send(bytes([DC_PREKEY]) + unb64(self.key) + body)
            else:
                self.dc.send(bytes([DC_NORMAL]) + body)

    def send(self, msg: dict[str, Any]) -> None:
        self.send_inner(encode_json(msg)[4:])

    def send_raw(self, data: bytes) -> None:
        """Sends bytes on the channel as they are (for corrupted-frame tests)."""
        self.dc.send(data)

    def _on_dc(self, data: Any) -> None:
        if isinstance(data, str) or not data:
            return
        if data[0] == DC_BUNDLE:
            self._rekey(verify(bytes(data[1:])))
            self.bundles_received += 1
        elif data[0] in (DC_PREKEY, DC_NORMAL):
            msg = vodozemac.AnyOlmMessage.from_parts(int(data[0]), bytes(data[1:]))
            for ftype, payload in self._reasm.feed(self.session.decrypt(msg)):
                self._frame(ftype, payload)
        self._changed.set()

    def _frame(self, ftype: int, payload: bytes) -> None:
        if self.on_frame is not None:
            self.on_frame(ftype, payload)
        if ftype == JSON:
            msg = json.loads(payload)
            if msg.get("type") == "dc_ping":
                self.send({"type": "dc_pong"})
            if msg.get("type") == "response":
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                    return
            self.messages.append(msg)
            return
        self.frames.append((ftype, payload))
        if ftype in (SNAPSHOT, PTY_OUTPUT, PROCESS_EXITED):
            sid, data = split_session(payload)
            if ftype == SNAPSHOT:
                self.screens[sid] = bytearray(data[4:])
            elif ftype == PTY_OUTPUT:
                self.screens.setdefault(sid, bytearray()).extend(data)
            else:
                self.exits[sid] = int.from_bytes(data[:4], "little", signed=True)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # The client protocol -----------------------------------------------------------------

    async def request(self, command: str, args: dict[str, Any] | None = None) -> Any:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send({"type": "request", "id": rid, "command": command, "args": args or {}})
        msg = await asyncio.wait_for(fut, 30)
        if not msg.get("ok"):
            raise RuntimeError(str(msg.get("error")))
        return msg.get("result")

    def attach(self, session_id: str, rows: int = 24, cols: int = 80) -> None:
        self.send(
            {
                "type": "subscribe",
                "channel": "terminal",
                "params": {"session_id": session_id, "rows": rows, "cols": cols},
            }
        )

    def type(self, session_id: str, data: bytes) -> None:
        self.send_inner(bytes([PTY_INPUT]) + encode_session(session_id, data))

    async def resize(self, session_id: str, rows: int, cols: int) -> Any:
        return await self.request(
            "terminal.resize", {"session_id": session_id, "rows": rows, "cols": cols}
        )
