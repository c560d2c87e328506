"""The WebRTC data plane in a process of its own: every aiortc peer connection of one hub.

aiortc's SCTP and DTLS are pure Python and cost about a core at 20-30 MB/s. On a thread of the
hub they still hold the hub's GIL, so a browser taking a flood showed in the hub's timers
(bench/webrtc.py); here they share nothing with the hub but a socket. The hub
(``PeerManager`` in ``remote/webrtc.py``) starts this module with
``python -m botster.remote.rtc_process <fd>`` when remote access is first used (a code shown,
a bundle asked for, an offer) and talks to it over one end of a Unix socketpair. It is the only
process that imports aiortc. It exits when the socket closes: the hub stopped, or was killed
(kill -9 included: the kernel closes the hub's end; ``PR_SET_PDEATHSIG`` backs that up).

Nothing here decrypts: Olm stays in the hub (one owner for the account and its sessions); this
process moves already-encrypted data-channel messages.

Wire, both ways: ``[u32 body length][u8 op][u32 peer number][body]`` (big-endian). The peer
number is the hub's handle for one ``RTCPeerConnection``.

* hub -> here: ``OFFER`` (JSON ``{sdp, ice_servers}``), ``ICE`` (JSON candidate
  ``{candidate, sdpMid, sdpMLineIndex}``), ``SEND`` (DC messages, each ``[u32 len][bytes]``;
  one SEND is one batch), ``CLOSE``;
* here -> hub: ``READY`` (peer 0, after aiortc is imported), ``ANSWER`` (JSON ``{sdp}`` or
  ``{error}``), ``OPEN`` (the ``relay`` channel is open), ``MESSAGE`` (one binary DC message),
  ``TEXT`` (a text message arrived: the carrier is binary, the hub closes the peer), ``SENT``
  (``[u32 bytes handed to the channel][u32 bufferedAmount]``, after each SEND and at
  ``bufferedamountlow``: the hub's flow control), ``CLOSED`` (UTF-8 reason).

Receiver acks. A browser's SCTP stack takes whatever arrives and queues it for the page's main
thread, so on a slow device (a phone, bench/browser.py's throttled CPU) ``bufferedAmount`` stays
near zero while hundreds of MB wait in the tab, which then crashes (out of memory). So the web
app acknowledges what it has processed: a DC message ``[0x03][u32 bytes]`` (``ACK``, not
encrypted: it carries a count, and DTLS protects it) handled here, never passed to the hub.
From a peer's first ACK on, the ``bufferedAmount`` reported in ``SENT`` also counts the bytes
sent but not yet acknowledged, so the hub's hold-and-resync sees the page's backlog. Peers that
never ack (the Python test browser, older pages) are accounted as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
from typing import Any

__all__ = ["HEAD", "LOW_WATER", "Op", "main"]

HEAD = struct.Struct(">IBI")
SENT_BODY = struct.Struct(">II")
LEN = struct.Struct(">I")
LOW_WATER = 16 << 10  # bufferedamountlow threshold (the hub's drained() mark)
ACK = 0x03  # DC message prefix of a receiver ack (see the module docstring)
ACK_BODY = struct.Struct(">I")
MAX_BODY = 64 << 20


class Op:
    """Message kinds (see the module docstring)."""

    OFFER, ICE, SEND, CLOSE = 1, 2, 3, 4
    READY, ANSWER, OPEN, MESSAGE, TEXT, SENT, CLOSED = 10, 11, 12, 13, 14, 15, 16


log = logging.getLogger("webrtc-process")


def _die_with_parent() -> None:
    """SIGTERM when the hub dies (Linux), in case the socket's EOF is not seen."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _ice_servers(rtc: Any, servers: list[dict[str, Any]]) -> list[Any]:
    """aiortc's ``RTCIceServer`` list; aiortc's URL parser takes no bracketed IPv6 host."""
    out = []
    for server in servers:
        urls = [u for u in server.get("urls", []) if "[" not in u]
        if urls:
            out.append(
                rtc.RTCIceServer(
                    urls=urls, username=server.get("username"), credential=server.get("credential")
                )
            )
    return out


class Plane:
    """Every peer connection of the hub at the other end of `writer`."""

    def __init__(self, rtc: Any, writer: asyncio.StreamWriter) -> None:
        self.rtc = rtc
        self.writer = writer
        self.pcs: dict[int, Any] = {}
        self.dcs: dict[int, Any] = {}
        self.unacked: dict[int, int] = {}  # bytes sent, not yet acked (peers that ack)

    def out(self, op: int, peer: int, body: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(HEAD.pack(len(body), op, peer) + body)

    def sent(self, peer: int, size: int) -> None:
        dc = self.dcs.get(peer)
        buffered = int(dc.bufferedAmount) if dc is not None else 0
        buffered += self.unacked.get(peer, 0)
        self.out(Op.SENT, peer, SENT_BODY.pack(size, min(buffered, 0xFFFFFFFF)))

    async def offer(self, peer: int, body: bytes) -> None:
        rtc = self.rtc
        try:
            req = json.loads(body)
            # A list, never None: with None aiortc would use Google's STUN server.
            config = rtc.RTCConfiguration(iceServers=_ice_servers(rtc, req.get("ice_servers", [])))
            pc = rtc.RTCPeerConnection(config)
            self.pcs[peer] = pc
            pc.on("datachannel", lambda dc: self.channel(peer, dc))

            @pc.on("connectionstatechange")
            def _on_state() -> None:
                if pc.connectionState in ("failed", "closed") and self.pcs.get(peer) is pc:
                    self.out(Op.CLOSED, peer, f"connection {pc.connectionState}".encode())

            await pc.setRemoteDescription(rtc.RTCSessionDescription(sdp=req["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            reply = {"sdp": str(pc.localDescription.sdp)}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        self.out(Op.ANSWER, peer, json.dumps(reply).encode())

    def channel(self, peer: int, dc: Any) -> None:
        if dc.label != "relay" or peer not in self.pcs:
            dc.close()
            return
        self.dcs[peer] = dc
        dc.bufferedAmountLowThreshold = LOW_WATER
        dc.on("bufferedamountlow", lambda: self.sent(peer, 0))

        def message(m: Any) -> None:
            if isinstance(m, str):
                self.out(Op.TEXT, peer)
            elif len(m) == 1 + ACK_BODY.size and m[0] == ACK:
                (n,) = ACK_BODY.unpack_from(m, 1)
                self.unacked[peer] = max(0, self.unacked.get(peer, 0) - n)
                self.sent(peer, 0)
            else:
                self.out(Op.MESSAGE, peer, m)

        dc.on("message", message)
        dc.on("close", lambda: self.out(Op.CLOSED, peer, b"data channel closed"))
        dc.on("open", lambda: self.out(Op.OPEN, peer))
        if dc.readyState == "open":
            self.out(Op.OPEN, peer)

    def send(self, peer: int, body: bytes) -> None:
        messages, pos = [], 0
        while pos < len(body):
            (n,) = LEN.unpack_from(body, pos)
            messages.append(body[pos + 4 : pos + 4 + n])
            pos += 4 + n
        dc = self.dcs.get(peer)
        try:
            if dc is not None and dc.readyState == "open":
                for m in messages:
                    dc.send(m)
                    if peer in self.unacked:
                        self.unacked[peer] += len(m)
        except Exception as e:
            log.info("peer %d: data channel send failed: %s", peer, e)
        # Every byte the hub posted is accounted for, sent or not (its queued() balances).
        self.sent(peer, sum(map(len, messages)))

    async def ice(self, peer: int, body: bytes) -> None:
        pc = self.pcs.get(peer)
        if pc is None:
            return
        try:
            from aiortc.sdp import candidate_from_sdp

            c = json.loads(body)
            cand = candidate_from_sdp(str(c["candidate"]).removeprefix("candidate:"))
            cand.sdpMid = c.get("sdpMid")
            cand.sdpMLineIndex = c.get("sdpMLineIndex")
            await pc.addIceCandidate(cand)
        except Exception as e:
            log.info("peer %d: ICE candidate refused: %s", peer, e)

    async def close(self, peer: int) -> None:
        self.dcs.pop(peer, None)
        self.unacked.pop(peer, None)
        pc = self.pcs.pop(peer, None)
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 2)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(p) for p in list(self.pcs)), return_exceptions=True)


async def _serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    import aiortc

    if os.environ.get("BOTSTER_WEBRTC_LOOPBACK") == "1":
        import aioice.ice

        # Tests and benchmarks: host candidates on 127.0.0.1 only, nothing leaves the machine.
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    plane = Plane(aiortc, writer)
    plane.out(Op.READY, 0)
    tasks: set[asyncio.Task[None]] = set()

    def start(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        while True:
            head = await reader.readexactly(HEAD.size)
            size, op, peer = HEAD.unpack(head)
            if size > MAX_BODY:
                raise ValueError(f"message of {size} bytes")
            body = await reader.readexactly(size) if size else b""
            if op == Op.SEND:
                plane.send(peer, body)
            elif op == Op.OFFER:
                start(plane.offer(peer, body))
            elif op == Op.ICE:
                start(plane.ice(peer, body))
            elif op == Op.CLOSE:
                start(plane.close(peer))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the hub stopped (or died)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(plane.close_all(), 3)
        writer.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the hub's; it closes us
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-5s webrtc-process %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        import uvloop  # optional, as for the hub: less time per datagram and write
    except ImportError:
        asyncio.run(_serve(int(args[0])))
    else:
        uvloop.run(_serve(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
