"""The WebRTC carrier of the client protocol: peers, the data channel and its framing.

The third carrier after the Unix socket and the terminal UI (which rides the socket). Each
browser (one curve25519 key) has at most one peer: an aiortc answerer with one ordered,
reliable data channel labelled ``relay``. What travels on it (docs/protocol.md, "WebRTC
carrier"):

* DC message: ``[0x00][32-byte sender curve25519][Olm PreKey]`` | ``[0x01][Olm Normal]``
  (both directions) | ``[0x02][161-byte bundle]`` (hub -> browser, ratchet restart);
* Olm plaintext: one hub-socket frame without its length prefix, ``[type][payload]``, plus two
  carrier types: ``0x07 GZIP`` (payload = gzip of an inner ``[type][payload]``) and ``0x08
  PART`` (payload = ``[last u8][bytes]``; consecutive parts concatenate into one inner frame);
  every DC message stays under 256 KiB (Chromium's limit).

This module is only a carrier (docs/architecture.md, "The client channel: adding a
transport"): a peer is a ``ChannelClient`` of the hub's client channel (``hub.clients``,
``transports/channel.py``). ``send_frame`` takes an encoded socket frame, ``queued`` reports
the channel's ``bufferedAmount`` (so ``PtyForwarder``'s hold-and-resync flow control works
unchanged) and ``drained`` waits for it to fall. The browser's ``hello`` gets a ``hello_ack``
(``transports/handshake.py``); then the peer is ``hub.clients.connected``, its JSON messages
go to ``hub.clients.message``, its PTY input to ``hub.clients.pty_input``, and its end to
``hub.clients.disconnected``, exactly as the socket server's clients do. Registry, forwarders,
listeners and the client protocol are the channel's.

aiortc (~190 ms, ~50 MB with av) is imported when the first offer arrives, on the WebRTC
thread: every aiortc object lives on that thread's own event loop, so its pure-Python SCTP and
DTLS never run on the hub's loop (bench/webrtc.py measured the hub's timer p99 at 30 ms, max
452 ms, while a browser took a flood with aiortc on the hub's loop). Olm stays on the hub's
loop (one owner for the account and sessions): the thread only moves encrypted bytes, and
every channel event hops back with ``call_soon_threadsafe``.
Signalling (offers, ICE, ratchet restarts) is driven by ``PeerManager`` and tagged with a
generation per browser key, so answers, ICE and channel events of a superseded offer are
dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import importlib
import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botster.base.errors import ProtocolError
from botster.base.framing import BINARY, JSON, PTY_INPUT, TYPE_NAMES, Frame, encode_json

if TYPE_CHECKING:
    from botster.remote.state import Remote

__all__ = [
    "GZIP",
    "MAX_DC_MESSAGE",
    "PART",
    "Peer",
    "PeerManager",
    "Reassembler",
    "StaleOffer",
    "encode_plaintexts",
]

log = logging.getLogger("webrtc")

GZIP, PART = 0x07, 0x08
DC_PREKEY, DC_NORMAL, DC_BUNDLE = 0x00, 0x01, 0x02
MAX_DC_MESSAGE = 256 << 10  # Chromium's (and aiortc's) SCTP message limit
# Olm adds a header, up to 16 bytes of padding and a MAC (under 100 bytes in all); a part of
# this size leaves room for all of that and the PART header.
MAX_PART = MAX_DC_MESSAGE - 1024
COMPRESS_AT = 4096
PING_EVERY_S = 10.0
MAX_UNDECRYPTABLE = 3  # consecutive frames that fail to decrypt before a ratchet restart
SEND_LIMIT = 8 << 20  # bytes buffered for one peer before it is cut, as on the socket
MAX_INNER = 16 << 20  # largest reassembled frame, the socket's max_frame
MAX_QUEUED_ICE = 128
HELLO_TIMEOUT_S = 10.0
LOW_WATER = 16 << 10  # drained() returns below this
# Tests only: hold every answer this long, so a second offer can arrive while one is in flight.
ANSWER_DELAY_S = float(os.environ.get("BOTSTER_WEBRTC_ANSWER_DELAY_S", "0") or 0)


class StaleOffer(Exception):
    """A newer offer from the same browser superseded this one."""


# Framing ---------------------------------------------------------------------------------------


def encode_plaintexts(inner: bytes) -> list[bytes]:
    """The Olm plaintexts that carry one ``[type][payload]`` frame: gzipped when that helps,
    split into PART frames when too big for one DC message."""
    if len(inner) >= COMPRESS_AT:
        packed = gzip.compress(inner, compresslevel=1)
        if len(packed) + 1 < len(inner):
            inner = bytes([GZIP]) + packed
    if len(inner) <= MAX_PART:
        return [inner]
    step = MAX_PART - 2
    chunks = [inner[i : i + step] for i in range(0, len(inner), step)]
    return [bytes([PART, int(i == len(chunks) - 1)]) + c for i, c in enumerate(chunks)]


class Reassembler:
    """Turns Olm plaintexts back into ``(type, payload)`` frames (inverse of
    ``encode_plaintexts``); raises ProtocolError on anything malformed or oversized."""

    def __init__(self, max_inner: int = MAX_INNER) -> None:
        self.max_inner = max_inner
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, plain: bytes) -> Iterator[tuple[int, bytes]]:
        if not plain:
            raise ProtocolError("empty frame")
        if plain[0] == PART:
            if len(plain) < 2 or plain[1] not in (0, 1):
                raise ProtocolError("PART frame without a valid last flag")
            self._size += len(plain) - 2
            if self._size > self.max_inner:
                raise ProtocolError(f"frame in parts is over {self.max_inner} bytes")
            self._parts.append(plain[2:])
            if plain[1] == 0:
                return
            plain, self._parts, self._size = b"".join(self._parts), [], 0
            if not plain or plain[0] == PART:
                raise ProtocolError("PART frames may not nest")
        if plain[0] == GZIP:
            try:
                d = __import__("zlib").decompressobj(wbits=31)
                inner = d.decompress(plain[1:], self.max_inner + 1)
            except Exception as e:
                raise ProtocolError(f"GZIP frame does not inflate: {e}") from None
            if len(inner) > self.max_inner:
                raise ProtocolError(f"GZIP frame inflates over {self.max_inner} bytes")
            if not inner or inner[0] in (GZIP, PART):
                raise ProtocolError("GZIP frame holds no plain frame")
            plain = inner
        if plain[0] not in TYPE_NAMES:
            raise ProtocolError(f"unknown frame type 0x{plain[0]:02x}")
        yield plain[0], plain[1:]


# One peer --------------------------------------------------------------------------------------


_seq = itertools.count(1)


@dataclass
class _Ice:
    generation: int
    candidate: dict[str, Any]


class Peer:
    """One browser's peer connection and data channel; a ``ChannelClient`` of the hub."""

    transport = "webrtc"

    def __init__(self, manager: PeerManager, key: str, identity: str, generation: int) -> None:
        self.manager = manager
        self.key = key  # browser curve25519 key (base64)
        self.identity = identity  # <key>:<tab id>
        self.generation = generation
        self.id = f"webrtc:{next(_seq):x}{secrets.token_hex(2)}"
        self.name = "browser"
        self.pc: Any = None
        self.dc: Any = None
        self.closed = False
        self.close_reason: str | None = None
        self.registered = False  # hello answered, the channel told
        self.answered = False
        self.fails = 0
        self.last_pong = 0.0
        self.ice_queue: list[_Ice] = []
        self._reasm = Reassembler()
        self._low = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._was_opened = False
        self._posted = 0  # bytes posted to the WebRTC thread (written on the hub's loop)
        self._sent = 0  # of those, handed to the channel (written on the WebRTC thread)

    # ChannelClient's face --------------------------------------------------------------------

    def queued(self) -> int:
        """Bytes accepted for the channel but not yet handed to the network (posted to the
        WebRTC thread, plus the channel's ``bufferedAmount`` there)."""
        dc = self.dc
        buffered = int(dc.bufferedAmount) if dc is not None else 0
        return self._posted - self._sent + buffered

    async def drained(self) -> None:
        """Returns once the channel's buffer is low (or after a short wait, to re-check)."""
        if self.closed:
            raise ConnectionError("peer closed")
        self._low.clear()
        if self.queued() <= LOW_WATER:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._low.wait(), 0.25)

    def send_frame(self, frame: bytes) -> bool:
        """Sends one encoded socket frame (length prefix and all). False once the peer is gone."""
        return self.send_inner(frame[4:])

    def send_json(self, message: Any) -> bool:
        """Sends a JSON message. False once the peer is gone."""
        return self.send_frame(encode_json(message))

    def send_binary(self, data: bytes) -> bool:
        """Sends an opaque binary frame (type 0x06). False once the peer is gone."""
        return self.send_inner(bytes([BINARY]) + data)

    def send_inner(self, inner: bytes) -> bool:
        """Encrypts (here, on the hub's loop: Olm state has one owner) and posts one
        ``[type][payload]`` frame, compressed/split as needed, to the WebRTC thread."""
        if self.closed or self.dc is None or self.dc.readyState != "open":
            return False
        if self.queued() + len(inner) > SEND_LIMIT:
            self.close(f"send buffer over {SEND_LIMIT} bytes: the browser stopped reading")
            return False
        olm = self.manager.remote.olm
        try:
            messages = []
            for plain in encode_plaintexts(inner):
                t, body = olm.encrypt(self.key, plain)
                messages.append(bytes([DC_PREKEY if t == 0 else DC_NORMAL]) + body)
        except Exception as e:
            log.warning("peer %s: send failed: %s", self.id, e)
            self.close(f"send failed: {e}")
            return False
        self._post(messages)
        return True

    def _post(self, messages: list[bytes]) -> None:
        size = sum(map(len, messages))
        self._posted += size
        self.manager.rtc_loop.call_soon_threadsafe(self._send_on_rtc_thread, messages, size)

    def _send_on_rtc_thread(self, messages: list[bytes], size: int) -> None:
        # Runs on the WebRTC thread: the only place dc.send is called.
        try:
            if self.dc is not None and self.dc.readyState == "open":
                for m in messages:
                    self.dc.send(m)
        except Exception as e:
            log.info("peer %s: data channel send failed: %s", self.id, e)
        finally:
            self._sent += size
            # What waited here counts in queued() too: tell a waiting drained() it has gone
            # (aiortc's bufferedamountlow only fires when its own buffer crosses the mark).
            dc = self.dc
            if dc is None or dc.bufferedAmount <= LOW_WATER:
                self.manager.hub.loop.call_soon_threadsafe(self._low.set)

    # Channel events ----------------------------------------------------------------------------

    def wire_channel_on_rtc_thread(self, dc: Any) -> None:
        """Runs on the WebRTC thread when the browser's channel appears: every channel event
        hops to the hub's loop."""
        hub_loop = self.manager.hub.loop
        if dc.label != "relay":
            dc.close()
            return
        dc.bufferedAmountLowThreshold = LOW_WATER
        dc.on("bufferedamountlow", lambda: hub_loop.call_soon_threadsafe(self._low.set))
        dc.on("message", lambda m: hub_loop.call_soon_threadsafe(self._on_message, m))
        dc.on(
            "close",
            lambda: hub_loop.call_soon_threadsafe(self.close, "data channel closed"),
        )
        dc.on("open", lambda: hub_loop.call_soon_threadsafe(self._opened))
        hub_loop.call_soon_threadsafe(self._channel, dc)

    def _channel(self, dc: Any) -> None:
        if self.closed:
            self.manager.rtc_loop.call_soon_threadsafe(dc.close)
            return
        self.dc = dc
        if dc.readyState == "open":
            self._opened()

    def _opened(self) -> None:
        if self.closed or self._was_opened or self.manager.peers.get(self.key) is not self:
            return  # a channel of a superseded offer, or the open event after _channel saw it
        self._was_opened = True
        log.info("peer %s (%s…) data channel open", self.id, self.key[:12])
        self.send_json({"type": "dc_ready"})
        hub = self.manager.hub
        self._tasks.append(hub.spawn(self._ping(), name=f"dc_ping {self.id}", owner="hub"))
        self._tasks.append(hub.spawn(self._hello_timeout(), name=f"hello {self.id}", owner="hub"))

    async def _ping(self) -> None:
        while not self.closed:
            await asyncio.sleep(PING_EVERY_S)
            self.send_json({"type": "dc_ping", "timestamp": int(time.time() * 1000)})

    async def _hello_timeout(self) -> None:
        await asyncio.sleep(HELLO_TIMEOUT_S)
        if not self.registered:
            self.close(f"no hello within {HELLO_TIMEOUT_S:.0f} s")

    def _on_message(self, data: Any) -> None:
        if self.closed:
            return
        if isinstance(data, str) or not data:
            self.close("text or empty data-channel message (the carrier is binary)")
            return
        kind = data[0]
        olm = self.manager.remote.olm
        try:
            if kind == DC_PREKEY:
                if len(data) < 34 or data[1:33] != _raw_key(self.key):
                    raise ValueError("PreKey frame from a key other than this peer's")
                plain = olm.decrypt(self.key, 0, bytes(data[33:]))
            elif kind == DC_NORMAL:
                plain = olm.decrypt(self.key, 1, bytes(data[1:]))
            else:
                raise ValueError(f"unknown data-channel frame 0x{kind:02x}")
        except Exception as e:
            self.fails += 1
            log.info("peer %s: undecryptable frame (%d in a row): %s", self.id, self.fails, e)
            if self.fails >= MAX_UNDECRYPTABLE:
                self.fails = 0
                self.manager.restart_ratchet(self.key)
            return
        self.fails = 0
        self.manager.remote.after_decrypt(self.key)
        try:
            for ftype, payload in self._reasm.feed(plain):
                self._dispatch(ftype, payload)
        except ProtocolError as e:
            self.send_json({"type": "error", "code": "protocol_error", "message": str(e)})
            self.close(f"protocol error: {e}")

    def _dispatch(self, ftype: int, payload: bytes) -> None:
        channel = self.manager.hub.clients
        if ftype == JSON:
            msg = Frame(ftype, payload).json()
            mtype = msg.get("type")
            if mtype == "dc_ping":
                self.send_json({"type": "dc_pong", "timestamp": msg.get("timestamp")})
                return
            if mtype == "dc_pong":
                self.last_pong = time.monotonic()
                return
            if not self.registered:
                self._hello(msg)
                return
            channel.message(self, msg)
        elif ftype == PTY_INPUT and self.registered:
            channel.pty_input(self, payload)  # ProtocolError when malformed: closes the peer
        else:
            raise ProtocolError(f"a client may not send frame type 0x{ftype:02x}")

    def _hello(self, msg: dict[str, Any]) -> None:
        from botster.transports.handshake import check_hello, hello_ack

        check_hello(msg)
        self.name = str(msg.get("client", "browser"))[:64]
        self.send_json(hello_ack(self.manager.hub.hub_id, self.id, MAX_INNER))
        self.registered = True
        log.info("peer %s (%s) connected", self.id, self.name)
        self.manager.hub.clients.connected(self)

    def send_bundle(self, raw: bytes) -> None:
        """Sends a ratchet-restart bundle (plain, signed) if the channel is open."""
        if not self.closed and self.dc is not None and self.dc.readyState == "open":
            self._post([bytes([DC_BUNDLE]) + raw])

    def close(self, reason: str) -> None:
        """Closes the peer (idempotent); the client channel hears about it once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("peer %s (%s…) closed: %s", self.id, self.key[:12], reason)
        for task in self._tasks:
            task.cancel()
        self.manager._forget(self)
        if self.registered:
            try:
                self.manager.hub.clients.disconnected(self)
            except Exception:
                log.exception("disconnect handler failed for %s", self.id)
        if self.pc is not None:
            self.manager.on_rtc_soon(self.manager.close_pc_on_rtc_thread(self.pc))


def _raw_key(b64: str) -> bytes:
    from botster.remote.bundle import unb64

    return unb64(b64)


# All peers -------------------------------------------------------------------------------------


def _rtc_ice_servers(rtc: Any, servers: list[dict[str, Any]]) -> list[Any]:
    """aiortc's ``RTCIceServer`` list for `servers` (``relay_link.parse_ice_servers``
    shape). aiortc's URL parser takes no bracketed IPv6 host: those URLs are left out."""
    out = []
    for server in servers:
        urls = [u for u in server["urls"] if "[" not in u]
        if urls:
            out.append(
                rtc.RTCIceServer(
                    urls=urls, username=server.get("username"), credential=server.get("credential")
                )
            )
    return out


def _force_loopback_candidates() -> None:
    """Host candidates on 127.0.0.1 only (tests and benchmarks: nothing leaves the machine)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def _import_aiortc_blocking() -> Any:
    aiortc = importlib.import_module("aiortc")
    if os.environ.get("BOTSTER_WEBRTC_LOOPBACK") == "1":
        _force_loopback_candidates()
    return aiortc


class PeerManager:
    """Every peer of one hub, by browser key; signalling with generations."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.hub = remote.hub
        self.peers: dict[str, Peer] = {}  # browser key -> current peer
        self.clients: dict[str, Peer] = {}  # peer id -> peer
        self.generations: dict[str, int] = {}
        self._aiortc: Any = None
        self.rtc_loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._thread: threading.Thread | None = None
        self._pcs: set[Any] = set()  # every RTCPeerConnection, touched on the WebRTC thread
        self._restarting: set[str] = set()

    async def _rtc(self) -> Any:
        """aiortc, imported on the WebRTC thread (started on first use)."""
        if self._aiortc is None:
            ready: concurrent.futures.Future[tuple[Any, Any]] = concurrent.futures.Future()

            def main() -> None:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
                try:
                    module = _import_aiortc_blocking()
                except BaseException as e:
                    ready.set_exception(e)
                    loop.close()
                    return
                ready.set_result((loop, module))
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            self._thread = threading.Thread(target=main, name="webrtc", daemon=True)
            self._thread.start()
            self.rtc_loop, self._aiortc = await asyncio.wrap_future(ready)
        return self._aiortc

    async def on_rtc(self, coro: Any) -> Any:
        """Runs a coroutine on the WebRTC thread and waits for it from the hub's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.rtc_loop))

    async def close_pc_on_rtc_thread(self, pc: Any) -> None:
        await pc.close()
        self._pcs.discard(pc)

    def on_rtc_soon(self, coro: Any) -> None:
        """Runs a coroutine on the WebRTC thread without waiting (closing a peer)."""
        asyncio.run_coroutine_threadsafe(coro, self.rtc_loop)

    def _forget(self, peer: Peer) -> None:
        if self.peers.get(peer.key) is peer:
            del self.peers[peer.key]
        self.clients.pop(peer.id, None)

    async def handle_offer(self, identity: str, sdp: str) -> str:
        """Answers a browser's offer; returns the answer SDP.

        A new offer from the same browser replaces its peer (a new generation); a superseded
        offer raises StaleOffer instead of answering.
        """
        from botster.remote.olm import identity_key_of

        key = identity_key_of(identity)
        gen = self.generations.get(key, 0) + 1
        self.generations[key] = gen
        old = self.peers.pop(key, None)
        if old is not None:
            old.close("replaced by a new offer")
        rtc, ice_servers = await asyncio.gather(self._rtc(), self._ice_servers())
        if self.generations.get(key) != gen:
            raise StaleOffer(f"offer {gen} from {key[:12]}… was superseded")
        peer = Peer(self, key, identity, gen)
        self.peers[key] = peer
        self.clients[peer.id] = peer
        hub_loop = self.hub.loop

        async def answer_on_rtc_thread() -> str:
            # Never None: aiortc would then use Google's STUN server.
            config = rtc.RTCConfiguration(iceServers=_rtc_ice_servers(rtc, ice_servers))
            pc = rtc.RTCPeerConnection(config)
            peer.pc = pc
            self._pcs.add(pc)
            pc.on("datachannel", peer.wire_channel_on_rtc_thread)

            @pc.on("connectionstatechange")
            def _on_state() -> None:
                if pc.connectionState in ("failed", "closed"):
                    reason = f"connection {pc.connectionState}"
                    hub_loop.call_soon_threadsafe(peer.close, reason)

            await pc.setRemoteDescription(rtc.RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return str(pc.localDescription.sdp)

        if ANSWER_DELAY_S:
            await asyncio.sleep(ANSWER_DELAY_S)
        try:
            answer_sdp = await self.on_rtc(answer_on_rtc_thread())
        except Exception as e:
            peer.close(f"offer failed: {e}")
            raise
        if self.generations.get(key) != gen or peer.closed:
            peer.close("superseded while answering")
            raise StaleOffer(f"offer {gen} from {key[:12]}… was superseded")
        peer.answered = True
        queued, peer.ice_queue = peer.ice_queue, []
        for ice in queued:
            if ice.generation == gen:
                self.hub.spawn(self._add_ice(peer, ice.candidate), name="ice", owner="hub")
        return str(answer_sdp)

    async def _ice_servers(self) -> list[dict[str, Any]]:
        """The relay's STUN/TURN servers (checked and cached by the relay link), or none."""
        link = getattr(self.hub, "relay", None)
        fetch = getattr(link, "ice_servers", None)
        return list(await fetch()) if fetch is not None else []

    async def handle_ice(self, identity: str, candidate: dict[str, Any]) -> bool:
        """Adds a browser's trickled candidate to its current peer (queued while the offer is
        being answered). False when there is no peer for it."""
        from botster.remote.olm import identity_key_of

        peer = self.peers.get(identity_key_of(identity))
        if peer is None:
            return False
        if not peer.answered:
            if len(peer.ice_queue) < MAX_QUEUED_ICE:
                peer.ice_queue.append(_Ice(peer.generation, candidate))
            return True
        await self._add_ice(peer, candidate)
        return True

    async def _add_ice(self, peer: Peer, candidate: dict[str, Any]) -> None:
        rtc = await self._rtc()
        line = str(candidate.get("candidate") or "")
        if not line:
            return  # end of candidates
        from aiortc.sdp import candidate_from_sdp

        try:
            cand = candidate_from_sdp(line.removeprefix("candidate:"))
        except Exception as e:
            log.info("peer %s: unusable ICE candidate: %s", peer.id, e)
            return
        cand.sdpMid = candidate.get("sdpMid")
        cand.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if peer.closed or self.peers.get(peer.key) is not peer:
            return  # for a superseded generation
        del rtc
        try:
            await self.on_rtc(peer.pc.addIceCandidate(cand))
        except Exception as e:
            log.info("peer %s: ICE candidate refused: %s", peer.id, e)

    def restart_ratchet(self, key: str) -> None:
        """Three undecryptable frames in a row: restart the session (``Remote.restart_ratchet``)."""
        peer = self.peers.get(key)
        self.remote.restart_ratchet(key, peer.identity if peer is not None else key, emit=True)

    async def close_key(self, key: str, reason: str) -> None:
        peer = self.peers.get(key)
        if peer is not None:
            peer.close(reason)

    async def close_all(self) -> None:
        """Closes every peer and stops the WebRTC thread (at hub shutdown)."""
        for peer in list(self.peers.values()):
            peer.close("hub is shutting down")
        if self._thread is None:
            return

        async def close_on_rtc_thread() -> None:
            # Every connection ever made (superseded ones too), then whatever aiortc left.
            for pc in list(self._pcs):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 2)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.on_rtc(close_on_rtc_thread()), 5)
        self.rtc_loop.call_soon_threadsafe(self.rtc_loop.stop)
        await self.hub.run_blocking(self._thread.join, 2)
