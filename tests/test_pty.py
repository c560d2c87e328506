"""pty.spawn and its handle, terminal attach over the socket, and sessions surviving the hub."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
from pathlib import Path

import avt

from botster.base.framing import (
    PROCESS_EXITED,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    encode_frame,
    encode_session,
    split_session,
)
from botster.transports.client import HubConnection
from botster.transports.handshake import hello
from harness import HubProcess


def render(cols: int, rows: int, data: bytes) -> list[str]:
    """The screen a fresh terminal shows after `data` (the same model the hub uses)."""
    vt = avt.Vt(cols, rows, 0)
    vt.feed_str(data.decode("utf-8", "replace"))
    return [line.rstrip() for line in vt.text()]


def socket_of(proc) -> Path:
    entry = next((Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "hubs").glob("*.json"))
    return Path(json.loads(entry.read_text())["socket"])


class Terminal:
    """A client-side view of one attached session, fed from frames."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.changed = asyncio.Event()
        self.exit_code: int | None = None

    def on_frame(self, frame) -> None:
        sid, data = split_session(frame.payload)
        self.frames.append((frame.type, data))
        if frame.type == PROCESS_EXITED:
            (self.exit_code,) = struct.unpack("<i", data)
        self.changed.set()

    def output(self) -> bytes:
        return b"".join(d for t, d in self.frames if t == PTY_OUTPUT)

    async def wait_for(self, needle: bytes, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.output():
                self.changed.clear()
                await self.changed.wait()

    async def wait_exit(self, timeout: float = 10) -> int:
        async with asyncio.timeout(timeout):
            while self.exit_code is None:
                self.changed.clear()
                await self.changed.wait()
        return self.exit_code


async def test_spawn_write_resize_exit(hub):
    proc = await hub(
        plugins={
            "p": """
        events.on("process_exited", function(d) log.info("RESULT exited " .. json.encode(d)) end)
        timer.after(0, function()
          local h = assert(pty.spawn({cmd = "sh", args = {"-c",
            "trap 'stty size' WINCH; stty size; while ! read line; do :; done; echo got:$line; sleep 0.2; exit 7"},
            rows = 30, cols = 90, port_forward = true, labels = {role = "test"}}))
          log.info("RESULT handle " .. json.encode({id = h:id(), pid = h:pid(), port = h:port(),
            alive = h:is_alive(), str = tostring(h)}))
          for i = 1, 50 do
            local t = h:text()
            if t:find("30 90") then break end
            coroutine.yield()
          end
          assert(h:resize(40, 120))
          for i = 1, 200 do
            if h:text():find("40 120") then break end
            coroutine.yield()
          end
          assert(h:write("hello\\n"))
          for i = 1, 200 do
            if h:text():find("got:hello") then break end
            coroutine.yield()
          end
          log.info("RESULT screen " .. json.encode(h:text()))
          log.info("RESULT list " .. json.encode(pty.list()[1].labels))
          local ok, err = pcall(function() return h.write("x") end)
          log.info("RESULT dot " .. json.encode(err))
        end)
    """
        }
    )
    handle = await proc.result("handle")
    assert handle["id"].startswith("sess-") and handle["pid"] > 0 and handle["alive"] is True
    assert 1024 <= handle["port"] <= 65535 and handle["str"] == f"pty handle {handle['id']}"
    screen = await proc.result("screen")
    assert "30 90" in screen and "40 120" in screen and "got:hello" in screen
    labels = await proc.result("list")
    assert labels["role"] == "test" and labels["owner"] == "p"
    assert "use handle:write(...) with a colon" in await proc.result("dot")
    exited = await proc.result("exited")
    assert exited["session_id"] == handle["id"] and exited["exit_code"] == 7


async def test_attach_snapshot_then_live_output_input_and_exit(hub):
    proc = await hub(
        plugins={
            "p": """
        local commands = require("lib.commands")
        commands.register("test.spawn", function()
          local h = assert(pty.spawn({cmd = "sh", args = {"-c",
            "printf '\\\\033[31mred\\\\033[0m ready\\\\n'; while read l; do [ \\"$l\\" = quit ] && exit 3; echo \\"echo:$l\\"; done"}}))
          return h:id()
        end)
    """
        }
    )
    conn = await HubConnection.connect(socket_of(proc), "t")
    sid = await conn.request("test.spawn")
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid, "rows": 24, "cols": 80})
    async with asyncio.timeout(10):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    assert term.frames[0][0] == SNAPSHOT
    rows, cols = struct.unpack_from("<HH", term.frames[0][1])
    assert (rows, cols) == (24, 80)
    conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"ping\n")))
    await term.wait_for(b"echo:ping")
    text = "\n".join(render(80, 24, term.frames[0][1][4:] + term.output()))
    assert "red ready" in text and "echo:ping" in text
    conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"quit\n")))
    assert await term.wait_exit() == 3
    await conn.close()


async def test_input_to_a_session_not_attached_is_refused(hub):
    proc = await hub(
        plugins={
            "p": """
        require("lib.commands").register("test.spawn", function()
          return assert(pty.spawn({cmd = "cat"})):id()
        end)
    """
        }
    )
    messages: list[dict] = []
    conn = await HubConnection.connect(socket_of(proc), "t", on_message=messages.append)
    sid = await conn.request("test.spawn")
    conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"sneaky\n")))
    await conn.request("ping")
    assert messages[-1]["message"] == f"pty input for {sid}: not attached to that session"
    await conn.close()


async def test_sessions_survive_kill_9_of_the_hub_and_are_adopted(
    hub, git_repo: Path, isolated_env
):
    first = await hub(
        plugins={
            "p": """
        require("lib.commands").register("test.spawn", function()
          local h = assert(pty.spawn({cmd = "python3", args = {"-u", "-c",
            "import time\\nfor i in range(1, 401):\\n    print(i)\\n    time.sleep(0.005)\\nprint('DONE')\\ninput()"},
            rows = 500, cols = 40, labels = {agent_key = "a1"}}))
          return h:id()
        end)
    """
        }
    )
    conn = await HubConnection.connect(socket_of(first), "t")
    sid = await conn.request("test.spawn")
    await conn.close()
    first.signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    first.allow_nonzero_exit = True
    first.allow_registry_left = True

    second = HubProcess(git_repo, isolated_env)
    await second.start()
    await second.wait_ready()
    await second.wait_for(r"adopted 1 sessions")
    conn = await HubConnection.connect(socket_of(second), "t2")
    sessions = await conn.request("sessions.list")
    assert [(s["id"], s["labels"]["agent_key"]) for s in sessions] == [(sid, "a1")]
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid})
    # DONE may already be in the snapshot; otherwise it arrives live.
    async with asyncio.timeout(20):
        while not term.frames or (
            b"DONE" not in term.frames[0][1] and b"DONE" not in term.output()
        ):
            term.changed.clear()
            await term.changed.wait()
    # Snapshot + live output, replayed into a screen tall enough for everything printed.
    numbers = [
        line for line in render(40, 500, term.frames[0][1][4:] + term.output()) if line.isdigit()
    ]
    assert numbers == [str(i) for i in range(1, 401)], "every line accounted for, in order"
    await conn.close()
    await second.stop_and_verify()


async def test_first_attach_after_adoption_shows_the_exact_screen(
    hub, git_repo: Path, isolated_env
):
    """Issue 11: a hub that adopts a session does not replay its ring; the first client that
    attaches gets the session's exact screen, the same snapshot the previous hub gave."""
    first = await hub(
        plugins={
            "p": """
        require("lib.commands").register("test.spawn", function()
          return assert(pty.spawn({cmd = "python3", args = {"-c", [[
import sys
out = sys.stdout.buffer
for i in range(20000):
    out.write(b"\\x1b[3%dm%07d %s\\x1b[0m\\n" % (i % 8, i, b"x" * (i % 50)))
out.write(b"\\x1b]0;before the kill\\x07READY")
out.flush()
sys.stdin.readline()
]]}, rows = 12, cols = 60})):id()
        end)
    """
        }
    )
    conn = await HubConnection.connect(socket_of(first), "t")
    sid = await conn.request("test.spawn")
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid})
    await term.wait_for(b"READY", timeout=60)
    term.frames.clear()
    conn.subscribe("terminal", {"session_id": sid})  # a new forwarder: a fresh snapshot
    async with asyncio.timeout(20):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    kind, before = term.frames[0]
    assert kind == SNAPSHOT
    await conn.close()
    first.signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    first.allow_nonzero_exit = True
    first.allow_registry_left = True

    second = HubProcess(git_repo, isolated_env)
    await second.start()
    await second.wait_ready()
    await second.wait_for(r"adopted 1 sessions")
    conn = await HubConnection.connect(socket_of(second), "t2")
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid})
    await conn.request("ping")
    async with asyncio.timeout(20):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    kind, after = term.frames[0]
    assert kind == SNAPSHOT
    assert after == before
    screen = render(60, 12, after[4:])
    assert screen[-1] == "READY" and screen[-2].startswith("0019999 ")
    assert term.output() == b""  # nothing replayed after the snapshot
    conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"\n")))
    await conn.close()
    await second.stop_and_verify()


async def test_several_clients_watch_one_session_in_order(hub):
    proc = await hub(
        plugins={
            "p": """
        require("lib.commands").register("test.spawn", function()
          return assert(pty.spawn({cmd = "sh", args = {"-c",
            "read go; i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line$i; done; read x"}})):id()
        end)
    """
        }
    )
    path = socket_of(proc)
    first = await HubConnection.connect(path, "first")
    sid = await first.request("test.spawn")
    terms = []
    conns = [first] + [await HubConnection.connect(path, f"c{i}") for i in range(3)]
    for conn in conns:
        term = Terminal()
        conn.on_frame = term.on_frame
        conn.subscribe("terminal", {"session_id": sid})
        terms.append(term)
    for term in terms:
        async with asyncio.timeout(10):
            while not term.frames:
                term.changed.clear()
                await term.changed.wait()
    first.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"go\n")))
    for term in terms:
        await term.wait_for(b"line300")
        text = term.output().decode()
        numbers = [int(x) for x in text.replace("\r", "").split("line")[1:] if x.strip().isdigit()]
        assert numbers == list(range(1, 301))
    for conn in conns:
        await conn.close()


async def test_a_client_that_falls_behind_is_resynced_not_cut(hub, tmp_path: Path):
    import socket as socketlib

    from botster.base.framing import FrameDecoder, encode_json

    marker = tmp_path / "flood-done"
    flood = f"read go; head -c 6000000 /dev/zero | tr '\\\\\\\\0' x; echo; echo END; touch {marker}; read x"
    proc = await hub(
        plugins={
            "p": f"""
        require("lib.commands").register("test.flood", function()
          return assert(pty.spawn({{cmd = "sh", args = {{"-c", "{flood}"}}, rows = 10, cols = 40}})):id()
        end)
    """
        }
    )
    path = socket_of(proc)
    control = await HubConnection.connect(path, "control")
    sid = await control.request("test.flood")
    # The laggard subscribes, then reads nothing while 6 MB go by (a plain socket: an asyncio
    # reader would drain it in the background).
    laggard = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    laggard.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 32 << 10)
    laggard.connect(str(path))
    laggard.sendall(encode_json(hello("laggard")))
    laggard.sendall(
        encode_json({"type": "subscribe", "channel": "terminal", "params": {"session_id": sid}})
    )
    term = Terminal()
    control.on_frame = term.on_frame
    control.subscribe("terminal", {"session_id": sid})
    async with asyncio.timeout(10):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    control.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"go\n")))
    async with asyncio.timeout(30):
        while not marker.exists():
            await control.request("ping")  # the hub keeps answering while it routes the flood
    reader, writer = await asyncio.open_unix_connection(sock=laggard, limit=1 << 24)
    decoder, frames = FrameDecoder(), []
    async with asyncio.timeout(20):
        while True:
            data = await reader.read(1 << 20)
            assert data, "the hub cut the laggard"
            frames.extend(f for f in decoder.feed(data) if f.type in (SNAPSHOT, PTY_OUTPUT))
            last = max(i for i, f in enumerate(frames) if f.type == SNAPSHOT)
            screen = split_session(frames[last].payload)[1][4:] + b"".join(
                split_session(f.payload)[1] for f in frames[last + 1 :]
            )
            if "END" in "\n".join(render(40, 10, screen)):
                break
    snapshots = sum(1 for f in frames if f.type == SNAPSHOT)
    received = sum(len(f.payload) for f in frames if f.type == PTY_OUTPUT)
    assert snapshots >= 2, f"a client that fell behind gets a fresh snapshot ({received} B)"
    assert received < 6_000_000, "instead of the whole backlog"
    writer.close()
    await control.close()
