"""The client channel: what a plugin registers on the socket and tui primitives is released
with it (issue 9), and PTY input follows the channel's forwarders whoever made them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botster.base.framing import (
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    Frame,
    encode_frame,
    encode_session,
    split_session,
)
from botster.primitives import socket as socket_primitive
from botster.primitives import tui as tui_primitive
from botster.sessions.protocol import encode_output
from botster.transports.client import HubConnection
from botster.transports.forwarder import PtyForwarder
from tests.inproc import LogLines, make_repo, running_hubs, socket_of

PLUGIN = """
require("lib.commands").register("test.setup", function(args)
  local h = assert(pty.spawn({cmd = "sh", args = {"-c", "read l; echo got:$l; read x"}}))
  local sid = h:id()
  return {
    sid = sid,
    socket_fwd = assert(socket.create_pty_forwarder({client_id = args.client_id, session_id = sid})),
    tui_fwd = assert(tui.create_pty_forwarder({session_id = sid})),
    listeners = {
      socket.on_client_connected(function() end),
      socket.on_client_disconnected(function() end),
      socket.on_message(function() end),
      tui.on_connected(function() end),
      tui.on_disconnected(function() end),
      tui.on_message(function() end),
    },
  }
end)
log.info("RESULT loaded")
"""


def _pty_input(session_id: str, data: bytes) -> bytes:
    return encode_frame(PTY_INPUT, encode_session(session_id, data))


def _listeners(hub, module) -> int:
    state = hub.state(module._State)
    return len(state.on_connected) + len(state.on_disconnected) + len(state.on_message)


async def _first_snapshot(frames: list[Frame], changed: asyncio.Event) -> None:
    async with asyncio.timeout(20):
        while not any(f.type == SNAPSHOT for f in frames):
            changed.clear()
            await changed.wait()


async def test_reload_releases_socket_and_tui_forwarders_and_listeners(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    lines = LogLines()
    repo = make_repo(tmp_path / "repo", {"fw": PLUGIN})
    conns: list[HubConnection] = []
    with lines.attached():
        async with running_hubs([repo], lines) as (hub,):
            try:
                got: dict[str, list[Frame]] = {"plain": [], "tui": []}
                changed = asyncio.Event()

                def collect(name: str):
                    def on_frame(frame: Frame) -> None:
                        got[name].append(frame)
                        changed.set()

                    return on_frame

                plain = await HubConnection.connect(socket_of(hub), "plain")
                conns.append(plain)
                plain.on_frame = collect("plain")
                ui = await HubConnection.connect(socket_of(hub), "tui")
                conns.append(ui)
                ui.on_frame = collect("tui")
                assert [c.id for c in hub.clients.named("tui")] == [ui.client_id]
                socket_before = _listeners(hub, socket_primitive)
                tui_before = _listeners(hub, tui_primitive)

                made = await plain.request("test.setup", {"client_id": plain.client_id})
                await _first_snapshot(got["plain"], changed)
                await _first_snapshot(got["tui"], changed)
                assert hub.clients.forwarder_count() == 2
                assert _listeners(hub, socket_primitive) == socket_before + 3
                assert _listeners(hub, tui_primitive) == tui_before + 3
                assert sorted(hub.owners._held["fw"]) == sorted(
                    [made["socket_fwd"], made["tui_fwd"], *made["listeners"]]
                )

                await plain.request("plugins.reload", {"name": "fw"})
                assert lines.count("RESULT loaded") == 2
                assert hub.clients.forwarder_count() == 0
                assert _listeners(hub, socket_primitive) == socket_before
                assert _listeners(hub, tui_primitive) == tui_before
                assert "fw" not in hub.owners.owners()
                # Neither client may type into the session any more.
                errors: list[dict] = []
                plain.on_message = errors.append
                plain.send_raw(_pty_input(made["sid"], b"hello\n"))
                assert await plain.request("ping") == {"pong": True}
                assert [e["code"] for e in errors] == ["bad_message"]
            finally:
                for conn in conns:
                    await conn.close()


SHARED = """
require("lib.commands").register("test.spawn", function()
  return assert(pty.spawn({cmd = "sh", args = {"-c",
    "read go; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line$i; done; echo END; read x"}})):id()
end)
"""


async def test_watchers_of_a_session_share_one_encoded_frame(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Issue 11: output is encoded once per chunk; every level watcher sends the same bytes."""
    lines = LogLines()
    repo = make_repo(tmp_path / "repo", {"shared": SHARED})
    with lines.attached():
        async with running_hubs([repo], lines) as (hub,):
            conn = await HubConnection.connect(socket_of(hub), "t")
            try:
                sid = await conn.request("test.spawn")
                session = hub.sessions.get(sid)
                sinks: list[list[bytes]] = [[], [], []]
                changed = asyncio.Event()

                def sink(frames: list[bytes]):
                    def send(frame: bytes) -> bool:
                        frames.append(frame)
                        changed.set()
                        return True

                    return send

                fwds = [PtyForwarder(session, sink(frames), lambda: 0) for frames in sinks]

                def output(frames: list[bytes]) -> bytes:
                    out = [split_session(f[5:]) for f in frames if f[4] == PTY_OUTPUT]
                    assert all(s == sid for s, _ in out)
                    return b"".join(d for _, d in out)

                async with asyncio.timeout(20):
                    while not all(f and f[0][4] == SNAPSHOT for f in sinks):
                        changed.clear()
                        await changed.wait()
                session.client.write(b"go\n")
                async with asyncio.timeout(60):
                    while not all(b"END\r\n" in output(f) for f in sinks):
                        changed.clear()
                        await changed.wait()
                expected = b"".join(b"line%d\r\n" % i for i in range(1, 3001)) + b"END\r\n"
                live = [[f for f in frames if f[4] == PTY_OUTPUT] for frames in sinks]
                for frames in live:
                    assert output(frames).endswith(expected)
                # Level watchers got the very same frame objects: each chunk encoded once.
                assert len(live[0]) == len(live[1]) == len(live[2])
                assert all(a is b is c for a, b, c in zip(*live, strict=True))
                for fwd in fwds:
                    fwd.stop()
                session.client.write(b"x\n")
            finally:
                await conn.close()


async def test_output_of_one_read_leaves_as_one_frame_before_the_read_returns(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """Issue 11: an echo goes out in the loop turn it came in (no call_soon hop), and the
    chunks of one read still leave as one frame. The read is fed to the session connection's
    protocol (its transport's entry point) so that where it is cut is the test's choice."""
    lines = LogLines()
    repo = make_repo(tmp_path / "repo", {"shared": SHARED})
    with lines.attached():
        async with running_hubs([repo], lines) as (hub,):
            conn = await HubConnection.connect(socket_of(hub), "t")
            try:
                sid = await conn.request("test.spawn")  # waits for a line: prints nothing
                session = hub.sessions.get(sid)
                frames: list[bytes] = []
                snapshot = asyncio.Event()

                def sink(frame: bytes) -> bool:
                    frames.append(frame)
                    if frame[4] == SNAPSHOT:
                        snapshot.set()
                    return True

                fwd = PtyForwarder(session, sink, lambda: 0)
                await asyncio.wait_for(snapshot.wait(), 20)
                start = session.client.output_offset
                protocol = session.client._transport.get_protocol()
                protocol.data_received(
                    encode_output(start, b"ab") + encode_output(start + 2, b"cd")
                )
                live = [f for f in frames if f[4] == PTY_OUTPUT]
                assert [split_session(f[5:]) for f in live] == [(sid, b"abcd")]
                protocol.data_received(encode_output(start + 4, b"e"))
                live = [f for f in frames if f[4] == PTY_OUTPUT]
                assert [split_session(f[5:])[1] for f in live] == [b"abcd", b"e"]
                fwd.stop()
            finally:
                await conn.close()
