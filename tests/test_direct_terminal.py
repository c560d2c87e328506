"""Local clients read terminals straight from their session processes (issue 11: key-to-echo).

The hub decides who may watch (a one-time ticket from the session, ``terminal_direct``); the
bytes then skip it. Shown here against a real hub and real sessions: output reaches a direct
client while the hub is stopped, equal byte for byte to what the hub relays; detaching, the
hub's end and a refused or failed stream are handled; a watcher that does not read gets a fresh
screen instead of the backlog; tickets cannot be forged, reused or used to type.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

from botster.base.framing import (
    JSON,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    FrameDecoder,
    encode_frame,
    encode_json,
    encode_session,
    split_session,
)
from botster.transports.client import HubConnection
from botster.transports.handshake import hello
from harness import wait_until
from harness.sockets import first_frame, raw_connection
from tests.test_pty import Terminal, render, socket_of

SPAWN = """
require("lib.commands").register("test.spawn", function(args)
  return assert(pty.spawn({cmd = "sh", args = {"-c", args.script}, rows = 10, cols = 40})):id()
end)
"""


async def _attached(conn: HubConnection, sid: str) -> Terminal:
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid})
    async with asyncio.timeout(10):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    assert term.frames[0][0] == SNAPSHOT
    return term


async def test_output_skips_the_hub_and_equals_what_it_relays(hub, tmp_path: Path):
    go = tmp_path / "go"
    script = (
        f"echo ready; while [ ! -e {go} ]; do sleep 0.01; done; "
        "i=0; while [ $i -lt 300 ]; do printf 'line %d \\033[1;3%dmcolour\\033[0m\\n' $i $((i % 8)); "
        "i=$((i+1)); done; echo went-direct; exec cat"
    )
    proc = await hub(plugins={"p": SPAWN})
    direct = await HubConnection.connect(socket_of(proc), "direct")
    relayed = await HubConnection.connect(socket_of(proc), "relayed", direct_terminal=False)
    sid = await direct.request("test.spawn", {"script": script})
    seen_direct, seen_relayed = await _attached(direct, sid), await _attached(relayed, sid)
    assert direct.direct_terminals == {sid} and relayed.direct_terminals == set()

    # With the hub stopped, the program's output still reaches the direct client.
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        go.touch()
        await seen_direct.wait_for(b"went-direct")
        assert b"went-direct" not in seen_relayed.output()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    await seen_relayed.wait_for(b"went-direct")
    # Keys go straight into the PTY too: typed while the hub is stopped, echoed at once.
    await wait_until(lambda: direct.writes_pty(sid), "the client holds the PTY")
    assert not relayed.writes_pty(sid)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        direct.send_input(sid, b"typed past the hub\n")
        await seen_direct.wait_for(b"typed past the hub\r\ntyped past the hub\r\n")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # Keys from a relayed client go through the hub: both clients see the same bytes.
    relayed.send_input(sid, b"typed through the hub\n")
    await seen_direct.wait_for(b"typed through the hub\r\n" * 2)
    await seen_relayed.wait_for(b"typed through the hub\r\n" * 2)
    # The relayed client attached later: its bytes are the end of the direct client's.
    assert seen_direct.output().endswith(seen_relayed.output())
    snap_d, snap_r = seen_direct.frames[0][1], seen_relayed.frames[0][1]
    assert render(40, 10, snap_d[4:] + seen_direct.output()) == render(
        40, 10, snap_r[4:] + seen_relayed.output()
    )

    direct.send_input(sid, b"\x04")  # cat ends: PROCESS_EXITED comes from the session
    assert await seen_direct.wait_exit() == 0 and await seen_relayed.wait_exit() == 0
    await direct.close()
    await relayed.close()


async def test_detaching_and_the_hubs_end_close_the_stream(hub):
    proc = await hub(plugins={"p": SPAWN})
    conn = await HubConnection.connect(socket_of(proc), "direct")
    sid = await conn.request("test.spawn", {"script": "exec cat"})
    await _attached(conn, sid)
    assert conn.direct_terminals == {sid}
    conn.send({"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}})
    await wait_until(lambda: not conn.direct_terminals, "the session closed the stream")
    term = await _attached(conn, sid)  # again: a fresh ticket, a fresh screen
    assert conn.direct_terminals == {sid}
    conn.send_input(sid, b"again\n")
    await term.wait_for(b"again\r\nagain\r\n")
    # The hub that let the client in is gone: so is the stream (the session lives on).
    proc.allow_nonzero_exit = proc.allow_registry_left = True
    await proc.kill()
    await wait_until(lambda: not conn.direct_terminals, "the stream ended with its hub")
    await conn.close()


async def test_a_client_that_cannot_reach_the_session_is_relayed(hub):
    """The client speaks the protocol itself: it asks for direct terminals, is offered one,
    says it cannot connect, and gets the terminal through the hub instead. A stale or forged
    report changes nothing."""
    proc = await hub(plugins={"p": SPAWN})
    control = await HubConnection.connect(socket_of(proc), "control")
    sid = await control.request("test.spawn", {"script": "echo hello-relay; exec cat"})
    async with raw_connection(socket_of(proc)) as (reader, writer):
        writer.write(encode_json(hello("raw", direct_terminal=True)))
        writer.write(
            encode_json({"type": "subscribe", "channel": "terminal", "params": {"session_id": sid}})
        )
        decoder = FrameDecoder()

        async def next_frame(want: int | str):
            async with asyncio.timeout(10):
                while True:
                    while pending:
                        frame = pending.pop(0)
                        if frame.type == JSON and frame.json().get("type") == want:
                            return frame.json()
                        if frame.type == want:
                            return frame
                    pending.extend(decoder.feed(await reader.read(1 << 16)))

        pending: list = []
        offer = await next_frame("terminal_direct")
        assert offer["session_id"] == sid and Path(offer["socket"]).exists()
        assert len(offer["ticket"]) >= 32
        for stale in ({"session_id": sid, "ticket": "forged"}, {"session_id": "nope", "ticket": 1}):
            writer.write(encode_json({"type": "terminal_direct_failed", **stale, "error": "x"}))
        await control.request("ping")
        writer.write(
            encode_json(
                {
                    "type": "terminal_direct_failed",
                    "session_id": sid,
                    "ticket": offer["ticket"],
                    "error": "no such file (another mount namespace)",
                }
            )
        )
        snapshot = await next_frame(SNAPSHOT)
        assert split_session(snapshot.payload)[0] == sid
        assert "hello-relay" in "\n".join(render(40, 10, split_session(snapshot.payload)[1][4:]))
        writer.write(encode_frame(PTY_INPUT, encode_session(sid, b"relayed-echo\n")))
        out = b""
        while b"relayed-echo\r\nrelayed-echo" not in out:
            out += split_session((await next_frame(PTY_OUTPUT)).payload)[1]
        # The ticket was revoked when the hub fell back: it lets nobody in now.
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(offer["socket"])
            s.sendall(encode_json({"type": "watch", "version": 1, "ticket": offer["ticket"]}))
            reply = first_frame(s)
        assert reply.type == JSON and "unknown, used or expired ticket" in reply.json()["message"]
    await control.close()


async def test_a_watcher_that_does_not_read_gets_a_fresh_screen(hub, tmp_path: Path):
    marker = tmp_path / "flood-done"
    flood = (
        f"read go; head -c 6000000 /dev/zero | tr '\\\\0' x; echo; echo END; touch {marker}; read x"
    )
    proc = await hub(plugins={"p": SPAWN})
    control = await HubConnection.connect(socket_of(proc), "control")
    sid = await control.request("test.spawn", {"script": flood})
    term = await _attached(control, sid)
    # The laggard takes its offer by hand and then reads nothing while 6 MB go by.
    async with raw_connection(socket_of(proc)) as (reader, writer):
        writer.write(encode_json(hello("laggard", direct_terminal=True)))
        writer.write(
            encode_json({"type": "subscribe", "channel": "terminal", "params": {"session_id": sid}})
        )
        decoder, offer = FrameDecoder(), None
        async with asyncio.timeout(10):
            while offer is None:
                for frame in decoder.feed(await reader.read(1 << 16)):
                    if frame.type == JSON and frame.json().get("type") == "terminal_direct":
                        offer = frame.json()
        laggard = socket.socket(socket.AF_UNIX)
        laggard.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        laggard.connect(offer["socket"])
        laggard.sendall(encode_json({"type": "watch", "version": 1, "ticket": offer["ticket"]}))
        assert first_frame(laggard).type == SNAPSHOT  # watching before the flood starts
        control.send_input(sid, b"go\n")
        async with asyncio.timeout(30):
            while not marker.exists():
                await control.request("ping")
        await term.wait_for(b"END")
        lag_reader, lag_writer = await asyncio.open_unix_connection(sock=laggard, limit=1 << 24)
        decoder, frames = FrameDecoder(), []
        async with asyncio.timeout(20):
            while True:
                data = await lag_reader.read(1 << 20)
                assert data, "the session cut the laggard"
                frames.extend(f for f in decoder.feed(data) if f.type in (SNAPSHOT, PTY_OUTPUT))
                last = max((i for i, f in enumerate(frames) if f.type == SNAPSHOT), default=None)
                if last is None:
                    continue  # output from before it fell behind
                screen = split_session(frames[last].payload)[1][4:] + b"".join(
                    split_session(f.payload)[1] for f in frames[last + 1 :]
                )
                if "END" in "\n".join(render(40, 10, screen)):
                    break
        snapshots = sum(1 for f in frames if f.type == SNAPSHOT)
        received = sum(len(f.payload) for f in frames if f.type == PTY_OUTPUT)
        assert snapshots >= 1, f"a watcher that fell behind gets a fresh snapshot ({received} B)"
        assert received < 6_000_000, "instead of the whole backlog"
        lag_writer.close()
    await control.close()


async def test_keys_keep_their_order_while_the_client_takes_the_pty(hub, tmp_path: Path):
    """Keys typed from the moment of attaching go through the hub until the client holds the
    PTY, then straight in: the program gets every one, in order."""
    got = tmp_path / "got"
    proc = await hub(plugins={"p": SPAWN})
    conn = await HubConnection.connect(socket_of(proc), "typist")
    sid = await conn.request("test.spawn", {"script": f"stty -echo; exec cat > {got}"})
    term = Terminal()
    conn.on_frame = term.on_frame
    subscribed = asyncio.get_running_loop().create_future()
    conn.on_message = lambda m: m.get("type") == "subscribed" and subscribed.set_result(m)
    conn.subscribe("terminal", {"session_id": sid})
    await asyncio.wait_for(subscribed, 10)  # attached: typing starts before the stream has
    sent, through_hub = 0, 0
    while not conn.writes_pty(sid) or sent < through_hub + 50:
        conn.send_input(sid, b"k%04d\n" % sent)
        through_hub += not conn.writes_pty(sid)
        sent += 1
        await asyncio.sleep(0.0005)
        assert sent < 5000, "the client never took the PTY"
    conn.send_input(sid, b"\x04")
    assert await term.wait_exit() == 0
    assert through_hub > 0
    lines = got.read_bytes().split()
    assert lines == [b"k%04d" % n for n in range(sent)], f"{through_hub} went through the hub"
    await conn.close()
