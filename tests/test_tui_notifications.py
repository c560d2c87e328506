"""What the UI writes to the user's own terminal when an agent needs them: the bell and a
desktop notification (OSC 9 / OSC 777), never an agent's raw control characters.

The end-to-end test runs `botster attach` on the slave of a real PTY (the test is the
terminal: it reads every byte the UI writes from the master) against a real hub with two
agents; the one not on screen rings its bell.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
import termios
from pathlib import Path

from botster.base.framing import PTY_INPUT, SNAPSHOT, encode_frame, encode_session
from botster.transports.client import HubConnection
from botster.tui.notify import desktop_notification
from tests.test_pty import Terminal, socket_of
from tests.test_tui import start_hub


def test_osc9_by_default_osc777_for_foot_and_urxvt():
    env = {"TERM": "xterm-256color"}
    assert desktop_notification("botster a1", "tests passed", env) == (
        "\x1b]9;botster a1: tests passed\x1b\\"
    )
    assert desktop_notification("botster a1", "done", {"TERM": "foot"}) == (
        "\x1b]777;notify;botster a1;done\x1b\\"
    )
    assert desktop_notification("a;b", "c;d", {"TERM": "rxvt-unicode"}) == (
        "\x1b]777;notify;a,b;c;d\x1b\\"
    )


def test_inside_tmux_the_sequence_goes_through_its_passthrough():
    seq = desktop_notification("t", "b", {"TERM": "tmux-256color", "TMUX": "/tmp/x,1,0"})
    assert seq == "\x1bPtmux;\x1b\x1b]9;t: b\x1b\x1b\\\x1b\\"


def test_an_agent_cannot_write_escapes_to_the_users_terminal():
    hostile = "ok\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m\r\nmore\x00"
    seq = desktop_notification("botster a\x1b[1m", hostile, {})
    inner = seq[len("\x1b]9;") : -len("\x1b\\")]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in inner)
    assert inner == "botster a [1m: ok ]52;c;ZXZpbA== [2J 31m more"  # inert text
    long = desktop_notification("t", "x" * 5000, {})
    assert len(long) < 300 and long.endswith("…\x1b\\")


async def running_session(conn: HubConnection, key: str, timeout: float = 30) -> str:
    """The session id of agent `key` once it runs (its worktree may still be in the making);
    re-checked on each of the hub's agent events."""
    changed = asyncio.Event()
    conn.on_message = lambda msg: changed.set()
    conn.subscribe("hub")
    async with asyncio.timeout(timeout):
        while True:
            changed.clear()
            agents = {a["agent_key"]: a for a in await conn.request("list_agents")}
            agent = agents.get(key) or {}
            if agent.get("status") == "running" and agent.get("session_id"):
                return str(agent["session_id"])
            await changed.wait()


class PtyTerminal:
    """The test as the user's terminal: `argv` on a PTY's slave, every byte written kept."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 36, cols: int = 120):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.argv, self.env, self.slave = argv, env, slave
        self.output = bytearray()
        self.changed = asyncio.Event()

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=self.env,
            start_new_session=True,
        )
        os.close(self.slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.master, 1 << 16)
        except (BlockingIOError, OSError):
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += data
        self.changed.set()

    async def wait_for(self, needle: bytes, what: str, start: int = 0, timeout: float = 20):
        """Waits until `needle` appears in the output after `start`; returns where it ends."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (at := self.output.find(needle, start)) < 0:
            self.changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if self.proc.returncode is not None or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1))
        if at < 0:
            tail = bytes(self.output[-2000:])
            raise AssertionError(f"no {what} from the UI; its last output: {tail!r}")
        return at + len(needle)

    async def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)


async def test_an_agent_off_screen_rings_the_users_terminal(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "a1"})
    await conn.request("create_agent", {"branch": "a2"})
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    ui = PtyTerminal(
        [sys.executable, "-m", "botster.cli", "attach", "--socket", str(socket_of(proc))], env
    )
    await ui.start()
    try:
        # The UI is up and showing a1 (the first agent): its screen has a1's greeting.
        seen = await ui.wait_for(b"ready", "screen of a1")
        session_id = await running_session(conn, "a2")
        # Typing into a session takes a terminal subscription (its snapshot comes first).
        term = Terminal()
        conn.on_frame = term.on_frame
        conn.subscribe("terminal", {"session_id": session_id})
        async with asyncio.timeout(10):
            while not term.frames or term.frames[0][0] != SNAPSHOT:
                term.changed.clear()
                await term.changed.wait()
        # a2, not on screen, rings its bell: the UI rings the terminal and asks for a
        # desktop notification naming the agent.
        conn.send_raw(encode_frame(PTY_INPUT, encode_session(session_id, b"bell\n")))
        end = await ui.wait_for(b"\x1b]9;botster a2: ", "desktop notification", seen)
        assert b"\x07" in ui.output[seen:end]  # the bell came with it
        await ui.wait_for(b"\x1b\\", "the notification's end", end)
    finally:
        await ui.close()
        await conn.close()
