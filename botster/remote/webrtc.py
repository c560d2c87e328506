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

aiortc (~190 ms, ~50 MB with av) never enters the hub: every peer connection lives in the
WebRTC process (``remote/rtc_process.py``), a child of the hub started when remote access is
first used (a code shown, a bundle asked for, an offer) and again on demand if it died. Its
pure-Python SCTP and DTLS then hold no lock the hub's loop needs (on a thread of the hub they
shared its GIL, and on the hub's own loop bench/webrtc.py measured its timer p99 at 30 ms
under a flood), and the hub never maps aiortc and av. Olm stays on the hub's loop (one owner
for the account and sessions): the process only moves encrypted bytes. What a peer posts in
one loop iteration goes to the process in one write.
Signalling (offers, ICE, ratchet restarts) is driven by ``PeerManager`` and tagged with a
generation per browser key, so answers, ICE and channel events of a superseded offer are
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botster.base.errors import ProtocolError
from botster.base.framing import BINARY, JSON, PTY_INPUT, TYPE_NAMES, Frame, encode_json
from botster.remote.rtc_process import HEAD, LEN, LOW_WATER, SENT_BODY, Op

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
PROCESS_STOP_S = 5.0  # the WebRTC process's time to close its connections at shutdown
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
    direct_terminal = False  # a remote peer: terminals are relayed by the hub

    def __init__(self, manager: PeerManager, key: str, identity: str, generation: int) -> None:
        self.manager = manager
        self.key = key  # browser curve25519 key (base64)
        self.identity = identity  # <key>:<tab id>
        self.generation = generation
        self.id = f"webrtc:{next(_seq):x}{secrets.token_hex(2)}"
        self.name = "browser"
        self.num = next(manager.nums)  # the WebRTC process's handle for this connection
        self.open = False  # the data channel is open
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
        self._posted = 0  # bytes posted to the WebRTC process
        self._sent = 0  # of those, handed to the channel (the process's SENT reports)
        self._buffered = 0  # the channel's bufferedAmount, as last reported

    # ChannelClient's face --------------------------------------------------------------------

    def queued(self) -> int:
        """Bytes accepted for the channel but not yet handed to the network (posted to the
        WebRTC process, plus the channel's ``bufferedAmount`` there)."""
        return self._posted - self._sent + self._buffered

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
        ``[type][payload]`` frame, compressed/split as needed, to the WebRTC process."""
        if self.closed or not self.open:
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
        self._posted += sum(map(len, messages))
        self.manager.post(self.num, messages)

    # Channel events (from the WebRTC process) -------------------------------------------------

    def _on_sent(self, size: int, buffered: int) -> None:
        self._sent += size
        self._buffered = buffered
        if self.queued() <= LOW_WATER:
            self._low.set()

    def _opened(self) -> None:
        if self.closed or self.open or self.manager.peers.get(self.key) is not self:
            return  # a channel of a superseded offer
        self.open = True
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
        if not data:
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
        if not self.closed and self.open:
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
        self.manager.close_connection(self.num)


def _raw_key(b64: str) -> bytes:
    from botster.remote.bundle import unb64

    return unb64(b64)


# All peers -------------------------------------------------------------------------------------


class _Process:
    """One WebRTC process (``remote/rtc_process.py``) and the hub's end of its socket."""

    def __init__(
        self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.ready = asyncio.get_running_loop().create_future()
        self.out: list[bytes] = []
        self.gone = False


class PeerManager:
    """Every peer of one hub, by browser key; signalling with generations; the WebRTC
    process that holds their connections."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.hub = remote.hub
        self.peers: dict[str, Peer] = {}  # browser key -> current peer
        self.clients: dict[str, Peer] = {}  # peer id -> peer
        self.generations: dict[str, int] = {}
        self.nums = itertools.count(1)
        self._by_num: dict[int, Peer] = {}  # the process's handle -> peer
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._process: _Process | None = None
        self._starting: asyncio.Task[_Process] | None = None
        self._closing = False

    # The WebRTC process ------------------------------------------------------------------------

    def warm(self) -> None:
        """Starts the WebRTC process now (remote access is about to be used: a code shown, a
        bundle asked for), so the first offer does not wait for aiortc's import."""
        if self._process is None and self._starting is None and not self._closing:
            self._starting = self.hub.spawn(self._start(), name="webrtc process", owner="hub")

    async def process(self) -> _Process:
        """The running WebRTC process, started (again) if needed, once it imported aiortc."""
        if self._closing:
            raise ConnectionError("hub is shutting down")
        if self._process is None:
            if self._starting is None:
                self._starting = self.hub.spawn(self._start(), name="webrtc process", owner="hub")
            await asyncio.shield(self._starting)
        assert self._process is not None
        await asyncio.shield(self._process.ready)
        return self._process

    async def _start(self) -> _Process:
        t0 = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "botster.remote.rtc_process",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # the terminal's Ctrl-C is the hub's, not its
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        except BaseException:  # cancelled at shutdown: the process sees EOF and exits
            ours.close()
            raise
        p = _Process(proc, reader, writer)
        self._process = p
        self._starting = None
        self.hub.spawn(self._read(p, t0), name="webrtc process reader", owner="hub")
        return p

    async def _read(self, p: _Process, t0: float) -> None:
        try:
            while True:
                size, op, num = HEAD.unpack(await p.reader.readexactly(HEAD.size))
                body = await p.reader.readexactly(size) if size else b""
                if op == Op.READY:
                    log.info(
                        "webrtc process %d ready in %.0f ms",
                        p.proc.pid,
                        (time.monotonic() - t0) * 1000,
                    )
                    p.ready.set_result(None)
                    continue
                if op == Op.ANSWER:
                    fut = self._answers.pop(num, None)
                    if fut is not None and not fut.done():
                        fut.set_result(json.loads(body))
                    continue
                peer = self._by_num.get(num)
                if peer is None:
                    continue  # a connection the hub already closed
                if op == Op.SENT:
                    peer._on_sent(*SENT_BODY.unpack(body))
                elif op == Op.MESSAGE:
                    peer._on_message(body)
                elif op == Op.OPEN:
                    peer._opened()
                elif op == Op.TEXT:
                    peer.close("text data-channel message (the carrier is binary)")
                elif op == Op.CLOSED:
                    peer.close(body.decode(errors="replace"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("webrtc process %d: bad message; stopping it", p.proc.pid)
        finally:
            await self._lost(p)

    async def _lost(self, p: _Process) -> None:
        """The process's socket closed: its peers are gone; the next offer starts another."""
        p.gone = True
        if self._process is p:
            self._process = None
        p.writer.close()
        if not p.ready.done():
            p.ready.set_exception(ConnectionError("the WebRTC process did not start"))
            p.ready.exception()  # retrieved: a waiter may not exist
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the WebRTC process exited"))
        self._answers.clear()
        if not self._closing:
            log.warning("webrtc process %d exited; peers closed", p.proc.pid)
        for peer in list(self._by_num.values()):
            peer.close("the WebRTC process exited")
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(p.proc.wait(), PROCESS_STOP_S)
        if p.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.proc.kill()
            await p.proc.wait()

    def _write(self, op: int, num: int, body: bytes = b"") -> None:
        p = self._process
        if p is None or p.gone:
            return
        if not p.out:
            # Everything posted in this loop iteration goes in one write.
            self.hub.loop.call_soon(self._flush, p)
        p.out.append(HEAD.pack(len(body), op, num))
        p.out.append(body)

    def _flush(self, p: _Process) -> None:
        data, p.out = b"".join(p.out), []
        if not p.gone:
            p.writer.write(data)

    def post(self, num: int, messages: list[bytes]) -> None:
        """Sends data-channel messages on connection `num` (one SEND)."""
        self._write(Op.SEND, num, b"".join(LEN.pack(len(m)) + m for m in messages))

    def close_connection(self, num: int) -> None:
        self._by_num.pop(num, None)
        self._write(Op.CLOSE, num)

    # Signalling ------------------------------------------------------------------------------

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
        _, ice_servers = await asyncio.gather(self.process(), self._ice_servers())
        if self.generations.get(key) != gen:
            raise StaleOffer(f"offer {gen} from {key[:12]}… was superseded")
        peer = Peer(self, key, identity, gen)
        self.peers[key] = peer
        self.clients[peer.id] = peer
        self._by_num[peer.num] = peer
        if ANSWER_DELAY_S:
            await asyncio.sleep(ANSWER_DELAY_S)
        answer = self.hub.loop.create_future()
        self._answers[peer.num] = answer
        offer = {"sdp": sdp, "ice_servers": ice_servers}
        self._write(Op.OFFER, peer.num, json.dumps(offer).encode())
        try:
            reply = await answer
            if "error" in reply:
                raise RuntimeError(str(reply["error"]))
        except Exception as e:
            peer.close(f"offer failed: {e}")
            raise
        finally:
            self._answers.pop(peer.num, None)
        if self.generations.get(key) != gen or peer.closed:
            peer.close("superseded while answering")
            raise StaleOffer(f"offer {gen} from {key[:12]}… was superseded")
        peer.answered = True
        queued, peer.ice_queue = peer.ice_queue, []
        for ice in queued:
            if ice.generation == gen:
                self._add_ice(peer, ice.candidate)
        return str(reply["sdp"])

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
        self._add_ice(peer, candidate)
        return True

    def _add_ice(self, peer: Peer, candidate: dict[str, Any]) -> None:
        if not candidate.get("candidate"):
            return  # end of candidates
        if peer.closed or self.peers.get(peer.key) is not peer:
            return  # for a superseded generation
        self._write(Op.ICE, peer.num, json.dumps(candidate).encode())

    def restart_ratchet(self, key: str) -> None:
        """Three undecryptable frames in a row: restart the session (``Remote.restart_ratchet``)."""
        peer = self.peers.get(key)
        self.remote.restart_ratchet(key, peer.identity if peer is not None else key, emit=True)

    async def close_key(self, key: str, reason: str) -> None:
        peer = self.peers.get(key)
        if peer is not None:
            peer.close(reason)

    async def close_all(self) -> None:
        """Closes every peer and stops the WebRTC process (at hub shutdown)."""
        self._closing = True
        for peer in list(self.peers.values()):
            peer.close("hub is shutting down")
        if self._starting is not None:
            await asyncio.wait([self._starting])
        p = self._process
        if p is None:
            return
        self._flush(p)
        # EOF tells it to close its connections (and the browsers hear it) and exit.
        p.writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(p.proc.wait(), PROCESS_STOP_S)
        if p.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                p.proc.kill()
            await p.proc.wait()
