"""Remote access: bundles, pairing codes, admission, signalling, and the terminal over WebRTC.

Pure tests (bundle, URL, QR) run in-process. Everything else runs a real hub and the Python
test browser (``botster.remote.test_browser``: aiortc offerer + vodozemac outbound session).
WebRTC tests run in a network namespace that has only loopback: the ``netns`` fixture re-runs
the test under ``unshare --net`` (after ``ip link set lo up``) and the outer run only checks
that it passed; aioice's host candidates are forced to 127.0.0.1 on both ends
(``BOTSTER_WEBRTC_LOOPBACK=1``), so no packet leaves the machine. Signalling goes over the hub
socket (``remote.signal``), the path a relay-less client uses; the relay path is tested with
the relay.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from botster.base.errors import ProtocolError
from botster.base.framing import (
    BINARY,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    encode_frame,
    encode_session,
    split_session,
)
from botster.remote import bundle as B
from botster.remote.test_browser import RelaySignaller, SocketSignaller, TestBrowser
from botster.remote.webrtc import MAX_DC_MESSAGE, PART, Reassembler, encode_plaintexts
from botster.transports.client import HubConnection, RequestFailed
from harness import HubProcess, wait_until
from tests.test_pty import render
from tests.test_socket import socket_of

ROOT = Path(__file__).resolve().parent.parent

# Bundles, URLs and QR codes ------------------------------------------------------------------


def _signed_bundle() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    sk = Ed25519PrivateKey.generate()
    pub = sk.public_key().public_bytes_raw()
    raw = B.build(b"\x01" * 32, pub, b"\x02" * 32, sk.sign)
    return raw, pub


def test_bundle_builds_verifies_and_rejects_tampering():
    raw, pub = _signed_bundle()
    assert len(raw) == 161 and raw[0] == 6
    b = B.verify(raw, identity_key=b"\x01" * 32, signing_key=pub)
    assert (b.identity_key, b.signing_key, b.one_time_key) == (b"\x01" * 32, pub, b"\x02" * 32)
    for i in (0, 1, 40, 70, 100, 160):
        bad = bytearray(raw)
        bad[i] ^= 1
        with pytest.raises(B.BundleError):
            B.verify(bytes(bad))
    with pytest.raises(B.BundleError, match="expected 161 bytes"):
        B.verify(raw[:-1])
    with pytest.raises(B.BundleError, match="pinned"):
        B.verify(raw, identity_key=b"\x03" * 32)


def test_pairing_url_round_trip_keeps_the_bundle_in_the_fragment():
    raw, _ = _signed_bundle()
    url = B.pairing_url("https://relay.example/", "42", raw)
    base, _, fragment = url.partition("#")
    assert base == "https://relay.example/hubs/42/pairing"
    assert len(fragment) == 258 and fragment == fragment.upper() and "=" not in fragment
    relay, sid, b = B.parse_pairing_url(url)
    assert (relay, sid, b.raw) == ("https://relay.example", "42", raw)
    with pytest.raises(B.BundleError):
        B.parse_pairing_url("https://relay.example/hubs/42/pairing")
    with pytest.raises(B.BundleError):
        B.parse_pairing_url(url[:-4] + "AAAA")


def _decode_qr_data(url: str) -> str:
    """Decodes the QR's segment bit streams back to text (byte and alphanumeric modes)."""
    from segno import consts, encoder

    alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    modes = {"byte": consts.MODE_BYTE, "alphanumeric": consts.MODE_ALPHANUMERIC}
    code = encoder.encode([(t, modes[m]) for t, m in B.qr_segments(url)], error="l")
    assert code.matrix == B.make_qr(url).matrix
    out = []
    for seg in code.segments:
        bits = "".join(str(b) for b in seg.bits)
        if seg.mode == 4:  # byte
            out.append(bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)).decode())
        else:
            assert seg.mode == 2, "the Base32 tail is alphanumeric"
            text, pos = [], 0
            for _ in range(seg.char_count // 2):
                v = int(bits[pos : pos + 11], 2)
                text += [alnum[v // 45], alnum[v % 45]]
                pos += 11
            if seg.char_count % 2:
                text.append(alnum[int(bits[pos : pos + 6], 2)])
            out.append("".join(text))
    return "".join(out)


def test_qr_has_two_segments_and_round_trips():
    raw, _ = _signed_bundle()
    url = B.pairing_url("http://127.0.0.1:8420", "7", raw)
    segs = B.qr_segments(url)
    assert [m for _, m in segs] == ["byte", "alphanumeric"] and segs[0][0].endswith("#")
    assert _decode_qr_data(url) == url
    art = B.qr_ascii(url)
    lines = art.split("\n")
    assert len({len(line) for line in lines}) == 1 and set(art) <= set("█▀▄ \n")
    # Redraw the modules from the half blocks and compare with segno's matrix.
    matrix = B.make_qr(url).matrix
    size = len(matrix)
    top = {"█": 0, "▀": 0, "▄": 1, " ": 1}
    bottom = {"█": 0, "▀": 1, "▄": 0, " ": 1}
    grid = []
    for line in lines:
        grid.append([top[c] for c in line])
        grid.append([bottom[c] for c in line])
    assert [row[2 : 2 + size] for row in grid[2 : 2 + size]] == [
        [int(bool(m)) for m in row] for row in matrix
    ]


def test_carrier_framing_compresses_splits_and_reassembles():
    small = bytes([1]) + b'{"type":"x"}'
    assert encode_plaintexts(small) == [small]
    text = bytes([2]) + b"\x00\x00" + b"hello world " * 50_000  # compresses well
    (one,) = encode_plaintexts(text)
    assert one[0] == 0x07 and len(one) < len(text) // 10
    noise = bytes([6]) + os.urandom(700_000)  # does not compress: split into parts
    parts = encode_plaintexts(noise)
    assert len(parts) == 3 and all(p[0] == PART for p in parts)
    assert all(len(p) + 100 < MAX_DC_MESSAGE for p in parts)
    r = Reassembler()
    got = [f for p in [small, one, *parts] for f in r.feed(p)]
    assert got == [(1, small[1:]), (2, text[1:]), (6, noise[1:])]
    for bad in (b"", bytes([PART, 7]), bytes([0x07]) + b"not gzip", bytes([0x42, 1])):
        with pytest.raises(ProtocolError):
            list(Reassembler().feed(bad))
    bomb = bytes([0x07]) + __import__("gzip").compress(bytes([6]) + bytes(20 << 20))
    with pytest.raises(ProtocolError, match="over"):
        list(Reassembler().feed(bomb))


# A running hub -------------------------------------------------------------------------------

SPAWN_PLUGIN = """
require("lib.commands").register("test.spawn", function(args)
  local h = assert(pty.spawn({cmd = "sh", args = {"-c", args.script}, rows = 24, cols = 80}))
  return h:id()
end)
webrtc.on_peer_connected(function(id) log.info("RESULT peer_connected " .. json.encode(id)) end)
webrtc.on_peer_disconnected(function(id) log.info("RESULT peer_gone " .. json.encode(id)) end)
require("lib.commands").register("test.hubfns", function(args)
  local _, ea = hub.handle_webrtc_offer(args.identity, "v=0")
  local _, eb = hub.handle_ice_candidate(args.identity, "candidate:1 1 udp 1 127.0.0.1 9 typ host")
  local _, ec = hub.request_ratchet_restart(args.identity)
  return {ea, eb, ec}
end)
events.on("connection_code_ready", function(c) log.info("RESULT code_ready " .. json.encode(c.url)) end)
"""


def _loaded_webrtc(pid: int) -> bool:
    """Whether process `pid` has av/aiortc's native libraries mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "/site-packages/av/" in maps or "/site-packages/aiortc/" in maps


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by init, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _webrtc_processes(hub_pid: int) -> list[int]:
    """The hub's WebRTC processes (children running botster.remote.rtc_process)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == hub_pid and b"botster.remote.rtc_process" in cmdline:
            found.append(int(d.name))
    return found


async def _cli(proc, *args: str, fails: bool = False) -> str:
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botster.cli",
        *args,
        "--repo",
        str(proc.repo),
        env=proc.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await cli.communicate()
    assert (cli.returncode != 0) == fails, (out, err)
    return (err if fails else out).decode()


async def _pair(proc) -> tuple[HubConnection, TestBrowser]:
    conn = await HubConnection.connect(socket_of(proc), "test")
    code = await conn.request("connection.code")
    browser = TestBrowser(code["url"], SocketSignaller(conn))
    await browser.connect()
    return conn, browser


async def test_pairing_code_and_account_at_rest(hub, isolated_env):
    proc = await hub(
        plugins={"p": SPAWN_PLUGIN}, config={"lua_slow_step_ms": 500, "embedded_relay": False}
    )
    conn = await HubConnection.connect(socket_of(proc), "test")
    code = await conn.request("connection.code")
    assert code["hub_id"] == conn.hub_id
    relay, sid, bundle = B.parse_pairing_url(code["url"])
    # No relay configured and no server id: the default relay URL and the hub id stand in.
    assert (relay, sid) == ("http://127.0.0.1:8420", conn.hub_id)
    assert code["qr_ascii"] == B.qr_ascii(code["url"])
    assert await proc.result("code_ready") == code["url"]
    # The same code until it is used; regenerate makes a new one-time key.
    assert (await conn.request("connection.code"))["url"] == code["url"]
    fresh = await conn.request("connection.regenerate")
    _, _, b2 = B.parse_pairing_url(fresh["url"])
    assert b2.identity_key == bundle.identity_key and b2.one_time_key != bundle.one_time_key
    # The account is stored encrypted, 0600, with its key in a 0600 file (no keyring here).
    store = Path(isolated_env["BOTSTER_HOME"]) / "remote" / conn.hub_id
    enc = store / "account.enc"
    data = json.loads(enc.read_text())
    assert set(data) == {"nonce", "ciphertext", "version"}
    assert stat.S_IMODE(enc.stat().st_mode) == 0o600
    assert stat.S_IMODE((store / "olm.key").stat().st_mode) == 0o600
    assert B.b64u(bundle.identity_key).encode() not in enc.read_bytes()
    assert await conn.request("connection.paired") == []
    assert not _loaded_webrtc(proc.proc.pid), "the hub never loads aiortc and av"
    # `botster pair` prints the running hub's code.
    out = json.loads(await _cli(proc, "pair", "--json"))
    assert out == {"url": fresh["url"], "qr": fresh["qr_ascii"]}
    assert json.loads(await _cli(proc, "pair", "--list", "--json")) == []
    err = await _cli(proc, "pair", "--revoke", "nobody", fails=True)
    assert "nobody is not a paired browser" in err
    await conn.close()
    # The account survives a restart: same identity key.
    await proc.stop_and_verify()
    proc2 = await hub(config={"lua_slow_step_ms": 500, "embedded_relay": False})
    conn = await HubConnection.connect(socket_of(proc2), "test")
    _, _, b3 = B.parse_pairing_url((await conn.request("connection.code"))["url"])
    assert b3.identity_key == bundle.identity_key
    await conn.close()


async def test_pairing_admits_the_browser_and_refuses_others(hub, netns):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    assert (await browser.request("ping", {"echo": "over webrtc"}))["echo"] == "over webrtc"
    peer_id = await proc.result("peer_connected")
    assert peer_id.startswith("webrtc:")
    paired = await conn.request("connection.paired")
    assert [p["browser_key"] for p in paired] == [browser.key]
    # The code was spent: a new one was announced.
    urls = []
    await proc.wait_for(r"RESULT code_ready", since=0)
    code = await conn.request("connection.code")
    urls.append(code["url"])

    # A second browser with a bundle it got without a code (one a relay could see: a ratchet
    # restart's plain bundle, issued to the paired browser) is refused.
    restart = await conn.request("remote.bundle_request", {"browser_identity": browser.identity})
    (env,) = restart["envelopes"]
    assert env["t"] == 2
    stolen = B.verify(B.unb64(env["b"]))
    intruder = TestBrowser(None, SocketSignaller(conn), bundle=stolen)
    with pytest.raises(ConnectionError, match="did not answer"):
        await intruder.connect()
    # ... and a bundle request injected for its key gets nothing.
    assert await intruder.request_bundle() == 0
    assert [p["browser_key"] for p in await conn.request("connection.paired")] == [browser.key]
    # The hub's signalling functions refuse an unpaired identity, each with nil, err.
    errs = await conn.request("test.hubfns", {"identity": intruder.identity})
    assert [e.split(":")[0] for e in errs] == [
        "hub.handle_webrtc_offer",
        "hub.handle_ice_candidate",
        "hub.request_ratchet_restart",
    ]
    assert all("is not paired with this hub" in e for e in errs)
    # The paired browser got the same bundle on its data channel, re-keyed, and still works.
    await browser.wait_for(lambda: browser.bundles_received == 1)
    assert (await browser.request("ping", {"echo": 2}))["echo"] == 2
    await browser.close()
    await conn.close()


async def test_revoke_closes_the_peer_and_refuses_the_browser(hub, netns):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    assert await conn.request("connection.revoke", {"browser_key": browser.key}) == {
        "revoked": True
    }
    await proc.result("peer_gone")
    async with asyncio.timeout(20):
        await browser.closed.wait()
    assert await conn.request("connection.paired") == []
    assert await browser.request_bundle() == 0
    with pytest.raises(ConnectionError):
        await browser.connect()
    assert await conn.request("connection.revoke", {"browser_key": browser.key}) == {
        "revoked": False
    }
    with pytest.raises(RequestFailed, match="browser_key"):
        await conn.request("connection.revoke", {})
    await conn.close()


async def test_ratchet_restarts_after_three_undecryptable_frames(hub, netns):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    proc.expect_log(r"undecryptable frame")
    for _ in range(2):
        browser.send_raw(b"\x01" + os.urandom(120))
    assert (await browser.request("ping", {"echo": 1}))["echo"] == 1, "two bad frames: no restart"
    assert browser.bundles_received == 0
    for _ in range(3):
        browser.send_raw(b"\x01" + os.urandom(120))
    await browser.wait_for(lambda: browser.bundles_received == 1)
    # The browser re-keyed from the signed bundle; its next frames are PreKey messages that
    # open a new session (it is paired, so any of the hub's one-time keys will do).
    assert (await browser.request("ping", {"echo": 3}))["echo"] == 3
    # The carrier is binary: a text message closes the peer (the browser sees its channel go).
    browser.dc.send("hello")
    await proc.wait_for(r"peer webrtc:\S+ .* closed: text data-channel message")
    await asyncio.wait_for(browser.closed.wait(), 30)
    await browser.close()
    await conn.close()


async def test_terminal_over_webrtc(hub, netns):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    assert _webrtc_processes(proc.proc.pid) == [], "no code shown, no peer: no WebRTC process"
    conn, browser = await _pair(proc)
    assert not _loaded_webrtc(proc.proc.pid), "aiortc lives in the WebRTC process, not the hub"
    (rtc_pid,) = _webrtc_processes(proc.proc.pid)
    assert _loaded_webrtc(rtc_pid)
    script = 'echo "ready $(stty size)"; while read l; do echo "got:$l $(stty size)"; done; exit 3'
    sid = await browser.request("test.spawn", {"script": script})
    browser.attach(sid, rows=20, cols=70)
    await browser.wait_for(lambda: any(m.get("type") == "subscribed" for m in browser.messages))

    def screen(cols: int = 100, rows: int = 30) -> str:
        return "\n".join(render(cols, rows, bytes(browser.screens.get(sid, b""))))

    # The snapshot shows what was printed before the subscription resized the terminal.
    await browser.wait_for(lambda: "ready 24 80" in screen())
    assert browser.frames[0][0] == SNAPSHOT
    browser.type(sid, b"hello\n")
    await browser.wait_for(lambda: "got:hello 20 70" in screen())
    assert await browser.resize(sid, 30, 100) == {"rows": 30, "cols": 100}
    browser.type(sid, b"x\n")
    await browser.wait_for(lambda: "got:x 30 100" in screen())
    # A long line comes back whole (frames over 4 KiB travel gzipped).
    browser.type(sid, b"y" * 3000 + b"\n")
    await browser.wait_for(lambda: b"got:" + b"y" * 3000 in browser.screens[sid])
    browser.type(sid, b"\x04")
    await browser.wait_for(lambda: sid in browser.exits)
    assert browser.exits[sid] == 3
    await browser.close()
    await conn.close()


async def test_a_browser_that_acks_is_held_to_what_it_processed(hub, netns, tmp_path):
    """A page that acks (web/src/recvack.ts) gets no more than it processed plus the hub's
    hold-and-resync window, however fast the hub could send; its next ack resumes it with a
    fresh SNAPSHOT. A browser that never acks is fed as before (the other tests)."""
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    browser.send_raw(b"\x03" + (0).to_bytes(4, "big"))  # ACK 0: the hub starts counting
    mark = tmp_path / "flooded"
    script = f"head -c 6000000 /dev/urandom | base64; echo FLOODED; touch {mark}; exec cat"
    got = {"output": 0}

    def on_frame(ftype: int, payload: bytes) -> None:
        if ftype == PTY_OUTPUT:
            got["output"] += len(payload)

    browser.on_frame = on_frame
    sid = await browser.request("test.spawn", {"script": script})
    browser.attach(sid)
    await wait_until(mark.exists, "the flood written", timeout=60)
    # 8 MB were written; without acks beyond the first, the page got at most the window.
    assert got["output"] < 1 << 20, got
    snapshots = sum(f[0] == SNAPSHOT for f in browser.frames)
    browser.send_raw(b"\x03" + (0xFFFFFFFF).to_bytes(4, "big"))
    await browser.wait_for(lambda: sum(f[0] == SNAPSHOT for f in browser.frames) > snapshots)
    await browser.wait_for(lambda: b"FLOODED" in browser.screens[sid])
    await browser.close()
    await conn.close()


async def test_browser_reconnects_after_kill_9_of_the_hub(hub, netns, git_repo, isolated_env):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    await proc.wait_for(r"stored the Olm account: paired")
    sid = await browser.request("test.spawn", {"script": "while read l; do echo got:$l; done"})
    browser.attach(sid)
    browser.type(sid, b"before\n")
    await browser.wait_for(lambda: b"got:before" in browser.screens.get(sid, b""))
    await conn.close()
    (rtc_pid,) = _webrtc_processes(proc.proc.pid)
    proc.signal(signal.SIGKILL)
    assert await proc.wait_exit() == -signal.SIGKILL
    # The WebRTC process dies with its hub.
    await wait_until(lambda: not _alive(rtc_pid), "the WebRTC process to exit", timeout=20)
    proc.allow_nonzero_exit = True
    proc.allow_registry_left = True

    second = HubProcess(git_repo, isolated_env)
    await second.start()
    await second.wait_ready()
    conn = await HubConnection.connect(socket_of(second), "test")
    browser.signaller = SocketSignaller(conn)
    # Sessions are memory-only: a fresh bundle (the pairing survived on disk), then a new offer.
    assert await browser.request_bundle() == 1
    await browser.connect()
    browser.attach(sid)
    await browser.wait_for(lambda: b"got:before" in browser.screens.get(sid, b""))
    browser.type(sid, b"after\n")
    await browser.wait_for(lambda: b"got:after" in browser.screens[sid])
    await browser.close()
    await conn.close()
    await second.stop_and_verify()


async def test_webrtc_process_restarts_on_demand_and_stops_with_the_hub(hub, netns):
    if netns:
        return
    proc = await hub(plugins={"p": SPAWN_PLUGIN})
    conn, browser = await _pair(proc)
    sid = await browser.request("test.spawn", {"script": "while read l; do echo got:$l; done"})
    browser.attach(sid)
    browser.type(sid, b"one\n")
    await browser.wait_for(lambda: b"got:one" in browser.screens.get(sid, b""))
    (first,) = _webrtc_processes(proc.proc.pid)
    since = len(proc.lines)
    os.kill(first, signal.SIGKILL)
    # The hub closes the peers it held; the next offer starts another process.
    await proc.wait_for(r"webrtc process \d+ exited; peers closed", since=since)
    await proc.wait_for(r"peer webrtc:\S+ .* closed: the WebRTC process exited", since=since)
    await browser.connect()
    (second,) = _webrtc_processes(proc.proc.pid)
    assert second != first
    browser.attach(sid)
    browser.type(sid, b"two\n")
    await browser.wait_for(lambda: b"got:two" in browser.screens.get(sid, b""))
    await browser.close()
    await conn.close()
    await proc.stop_and_verify()
    assert not _alive(second), "a stopped hub leaves no WebRTC process"


async def test_a_newer_offer_supersedes_one_in_flight(hub, netns):
    if netns:
        return
    from aiortc import RTCConfiguration, RTCPeerConnection

    proc = await hub(plugins={"p": SPAWN_PLUGIN}, env={"BOTSTER_WEBRTC_ANSWER_DELAY_S": "0.5"})
    conn, browser = await _pair(proc)
    await browser.close()
    pcs, envs = [], []
    for _ in range(2):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("relay")
        await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        envs.append(browser.envelope({"type": "offer", "sdp": pc.localDescription.sdp}))
    # Both in flight at once: the first is still being answered when the second arrives.
    first, second = await asyncio.gather(
        *(
            conn.request("remote.signal", {"browser_identity": browser.identity, "envelope": e})
            for e in envs
        )
    )
    assert first["envelopes"] == [] and len(second["envelopes"]) == 1
    await proc.wait_for(r"offer from .* not answered: .*superseded")
    assert browser.open_envelope(second["envelopes"][0])["type"] == "answer"
    for pc in pcs:
        await pc.close()
    await conn.close()


RELAY_PLUGIN = (
    SPAWN_PLUGIN
    + """
events.on("relay_registered", function(d) log.info("RESULT registered " .. json.encode(d.server_id)) end)
"""
)


async def test_pairing_and_terminal_through_the_relay_reveal_nothing_to_it(
    hub, netns, isolated_env
):
    if netns:
        return
    proc = await hub(plugins={"p": RELAY_PLUGIN})  # the hub serves its embedded relay
    server_id = await proc.result("registered", timeout=30)
    conn = await HubConnection.connect(socket_of(proc), "test")
    # The hub opens its HubCommandChannel once remote access is in use: a code was shown.
    code = await conn.request("connection.code")
    await proc.wait_for(r"relay: hub \S+ online")
    relay_url, sid, _ = B.parse_pairing_url(code["url"])
    assert sid == server_id and relay_url.startswith("http://127.0.0.1:")
    # The browser pairs with signalling through the relay only.
    signaller = RelaySignaller(relay_url, server_id)
    browser = TestBrowser(code["url"], signaller)
    await signaller.open(browser.identity)
    assert signaller.health[:1] == ["online"]
    await browser.connect()
    assert await conn.request("connection.paired") != []
    sid_ = await browser.request(
        "test.spawn", {"script": "read l; echo SECRET-MARKER-$((6*7)); read l"}
    )
    browser.attach(sid_)
    browser.type(sid_, b"go\n")
    await browser.wait_for(lambda: b"SECRET-MARKER-42" in browser.screens.get(sid_, b""))

    # A browser that never paired: the relay's automatic bundle request on its subscribe
    # gets nothing, and neither does an explicit one.
    from botster.remote.test_browser import TestBrowser as Other

    stranger = Other(code["url"], RelaySignaller(relay_url, server_id))
    stranger.signaller.reply_wait = 0.5
    await stranger.signaller.open(stranger.identity)
    assert await stranger.request_bundle() == 0
    # Flush: the paired browser's request, sent later down the same path, is answered first.
    assert await browser.request_bundle() == 1
    assert stranger.signaller.envelopes.empty()

    # Neither the relay's log (the hub's, the relay being embedded) nor its storage hold what
    # the agent printed.
    await browser.close()
    await conn.close()
    await stranger.signaller.close()
    await signaller.close()
    await proc.stop_and_verify()
    assert "SECRET-MARKER-42" not in "\n".join(proc.lines)
    for path in Path(isolated_env["BOTSTER_HOME"]).rglob("*"):
        if path.is_file():
            assert b"SECRET-MARKER-42" not in path.read_bytes(), path


async def test_copy_to_clipboard_goes_to_the_tui_else_says_why(hub, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # no clipboard tool here
    proc = await hub(
        plugins={
            "p": """
        require("lib.commands").register("test.copy", function()
          local ok, err = connection.copy_to_clipboard()
          return {ok = ok or false, err = err}
        end)
    """
        }
    )
    plain = await HubConnection.connect(socket_of(proc), "test")
    res = await plain.request("test.copy")
    assert res == {
        "ok": False,
        "err": "connection.copy_to_clipboard: no terminal UI is attached and no clipboard "
        "tool (wl-copy, xclip, xsel, pbcopy) is installed",
    }
    # A fake clipboard tool gets the URL on stdin.
    tool = bin_dir / "xsel"
    tool.write_text(f'#!/bin/sh\ncat > "{tmp_path}/clip"\n')
    tool.chmod(0o755)
    assert await plain.request("test.copy") == {"ok": True}
    url = await plain.request("connection.code")
    assert (tmp_path / "clip").read_text() == url["url"]
    # With a terminal UI attached, the URL goes to it (it sets the clipboard with OSC 52).
    seen: list[dict] = []
    tui = await HubConnection.connect(socket_of(proc), "tui", on_message=seen.append)
    assert await plain.request("test.copy") == {"ok": True}
    await tui.request("ping")
    assert {"type": "tui", "data": {"type": "clipboard", "text": url["url"]}} in seen
    await tui.close()
    await plain.close()


# One client channel: a browser and a socket client are the same kind of client ---------------

AGENT_INIT = 'echo "agent up"; while read l; do echo "got:$l"; done\n'

CHANNEL_PLUGIN = """
local commands = require("lib.commands")
local function r(a, b) return {ok = a or false, err = b} end
commands.register("test.webrtc_fns", function(args, ctx)
  local out = {}
  out.by_agent = r(webrtc.create_pty_forwarder({peer_id = ctx.client_id, agent_index = 0}))
  out.no_agent = r(webrtc.create_pty_forwarder({peer_id = ctx.client_id, agent_index = 7}))
  out.no_pty = r(webrtc.create_pty_forwarder({peer_id = ctx.client_id, agent_index = 0, pty_index = 4}))
  out.stop = webrtc.stop_pty_forwarder(ctx.client_id, args.sid)
  out.stop_again = webrtc.stop_pty_forwarder(ctx.client_id, args.sid)
  out.binary = r(webrtc.send_binary(ctx.client_id, "\\1\\0\\2"))
  out.sent = r(webrtc.send(ctx.client_id, {type = "notice", text = "hi"}))
  out.not_a_peer = r(webrtc.send(args.socket_id, {type = "notice"}))
  out.not_a_peer_fwd = r(webrtc.create_pty_forwarder({peer_id = args.socket_id, session_id = args.sid}))
  out.peers = webrtc.peers()
  out.raises = {
    select(2, pcall(webrtc.create_pty_forwarder, {peer_id = ctx.client_id})),
    select(2, pcall(webrtc.create_pty_forwarder, {peer_id = ctx.client_id, agent_index = -1})),
    select(2, pcall(webrtc.create_pty_forwarder, {peer_id = ctx.client_id, agent_index = 0, bogus = 1})),
  }
  return out
end)
webrtc.on_message(function(id, msg)
  if msg.type == "request" and msg.command == "test.webrtc_fns" then
    log.info("RESULT webrtc_message " .. json.encode(id))
  end
end)
"""


class _Screens:
    """A socket client's screens, fed from frames as the test browser's are."""

    def __init__(self) -> None:
        self.screens: dict[str, bytearray] = {}
        self.changed = asyncio.Event()

    def on_frame(self, frame) -> None:
        sid, data = split_session(frame.payload)
        if frame.type == SNAPSHOT:
            self.screens[sid] = bytearray(data[4:])
        elif frame.type == PTY_OUTPUT:
            self.screens.setdefault(sid, bytearray()).extend(data)
        self.changed.set()

    async def wait_for(self, predicate, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def test_a_browser_and_a_socket_client_watch_one_agent_alike(hub, netns, git_repo):
    if netns:
        return
    d = git_repo / ".botster" / "agents" / "echo"
    d.mkdir(parents=True)
    (d / "initialization").write_text(AGENT_INIT)
    subprocess.run(["git", "add", ".botster"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=git_repo, check=True)
    proc = await hub(plugins={"p": SPAWN_PLUGIN, "ch": CHANNEL_PLUGIN})
    conn, browser = await _pair(proc)
    watcher = _Screens()
    sock = await HubConnection.connect(socket_of(proc), "watcher", on_frame=watcher.on_frame)
    await sock.request("create_agent", {"branch": "watched"})
    async with asyncio.timeout(30):
        while not (agents := await sock.request("list_agents")) or (
            agents[0]["status"] != "running"
        ):
            await asyncio.sleep(0.05)
    sid = agents[0]["session_id"]

    # Both subscribe to the agent's terminal through the same client protocol.
    browser.attach(sid, rows=24, cols=80)
    sock.subscribe("terminal", {"session_id": sid, "rows": 24, "cols": 80})
    await browser.wait_for(lambda: b"agent up" in browser.screens.get(sid, b""))
    await watcher.wait_for(lambda: b"agent up" in watcher.screens.get(sid, b""))
    # Each types; both see both lines, and end on the same screen.
    browser.type(sid, b"from-browser\n")
    await watcher.wait_for(lambda: b"got:from-browser" in watcher.screens[sid])
    sock.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"sock\n")))
    await browser.wait_for(lambda: b"got:sock" in browser.screens[sid])
    await watcher.wait_for(lambda: b"got:sock" in watcher.screens[sid])
    seen_by_browser = render(80, 24, bytes(browser.screens[sid]))
    assert seen_by_browser == render(80, 24, bytes(watcher.screens[sid]))
    assert "got:from-browser" in seen_by_browser and "got:sock" in seen_by_browser

    # The hub lists them the same way: same fields, the same subscription; only the transport
    # and the hello's name tell them apart.
    listed = {c["id"]: c for c in await conn.request("clients.list")}
    peer_id = await proc.result("peer_connected")
    as_browser, as_socket = listed[peer_id], listed[sock.client_id]
    assert as_browser == {
        "id": peer_id,
        "name": "browser",
        "transport": "webrtc",
        "subscriptions": [],
        "terminals": [sid],
    }
    assert as_socket == {
        "id": sock.client_id,
        "name": "watcher",
        "transport": "socket",
        "subscriptions": [],
        "terminals": [sid],
    }
    assert listed[conn.client_id]["transport"] == "socket"
    # The browser sees the same listing over WebRTC.
    assert {c["id"]: c for c in await browser.request("clients.list")} == listed

    # Every webrtc function is a view over the same channel.
    out = await browser.request("test.webrtc_fns", {"sid": sid, "socket_id": sock.client_id})
    assert await proc.result("webrtc_message") == peer_id
    assert out["by_agent"]["ok"].startswith("fwd")
    assert out["no_agent"] == {
        "ok": False,
        "err": "webrtc.create_pty_forwarder: no agent at index 7",
    }
    assert out["no_pty"] == {
        "ok": False,
        "err": "webrtc.create_pty_forwarder: agent watched has no pty at index 4",
    }
    assert out["stop"] is True and out["stop_again"] is False
    assert out["binary"] == {"ok": True} and out["sent"] == {"ok": True}
    assert out["not_a_peer"] == {"ok": False, "err": f"webrtc.send: no peer {sock.client_id}"}
    assert out["not_a_peer_fwd"] == {
        "ok": False,
        "err": f"webrtc.create_pty_forwarder: no peer {sock.client_id}",
    }
    assert [e.split(": ", 1)[1] for e in out["raises"]] == [
        "opts: expected session_id or agent_index, got neither",
        "opts.agent_index: expected an integer >= 0, got -1",
        "opts: unknown key 'bogus' (known: agent_index, peer_id, pty_index, session_id)",
    ], out["raises"]
    assert all("webrtc.create_pty_forwarder" in e for e in out["raises"])
    assert out["peers"] == [{"id": peer_id, "name": "browser", "browser_key": browser.key}]
    await browser.wait_for(lambda: (BINARY, b"\x01\x00\x02") in browser.frames)
    assert {"type": "notice", "text": "hi"} in browser.messages

    # The browser's forwarder stopped (stop_pty_forwarder): the socket client still watches.
    sock.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"x\n")))
    await watcher.wait_for(lambda: b"got:x" in watcher.screens[sid])

    # A message over the limits is refused by the client protocol, once, as on the socket;
    # the plugin's webrtc.on_message listener never sees it.
    proc.expect_log(r"nested deeper than 64 levels")
    deep: dict = {}
    for _ in range(100):
        deep = {"d": deep}
    with pytest.raises(RuntimeError, match="nested deeper than 64 levels"):
        await browser.request("test.webrtc_fns", deep)
    assert await browser.request("ping", {"echo": "after"}) == {"pong": True, "echo": "after"}
    refusals = [m for m in browser.messages if m.get("type") in ("error", "response")]
    assert refusals == [], refusals  # the refusal was the request's one response, nothing else
    assert proc.count(r"RESULT webrtc_message") == 1

    # Gone from the listing once it closes, like any client.
    await browser.close()
    await proc.result("peer_gone")
    listed = await conn.request("clients.list")
    assert [c["id"] for c in listed] == sorted([conn.client_id, sock.client_id])
    await sock.close()
    await conn.close()
