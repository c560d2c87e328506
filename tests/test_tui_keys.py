"""Keys reach the agent byte for byte as tmux would send them, whatever the timing.

A private tmux server holds two windows: one runs a recorder program directly (what tmux
itself delivers), the other runs `botster attach` on a hub whose only agent runs the same
recorder. The same keys go to both with `send-keys`, all at once and with gaps of 20, 60
and 120 ms between them; the bytes each recorder read must be the same. The recorder can
turn on application cursor keys (DECCKM), which changes what tmux sends for the arrows. It
runs on the alternate screen, as full-screen programs do: there PgUp is the program's (on
the primary screen, a shell's, it pages the UI's scrollback; test_tui.py tests that).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from botster.tui.rawinput import PANE, PASTE, UI, InputRouter
from harness import hub_socket, wait_until
from tests.test_tui import start_hub

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="the key tests need tmux")

RECORDER = r"""
import os, sys, tty
out = open(sys.argv[1], "ab", buffering=0)
tty.setraw(0)
os.write(1, b"\x1b[?1049hREADY\r\n")
while True:
    data = os.read(0, 4096)
    if not data:
        break
    out.write(data)
    if b"#CKM#" in data:  # the test asks for application cursor keys
        os.write(1, b"\x1b[?1hCKM-ON\r\n")
"""

SCENARIOS = [
    ["Escape", ":", "w", "Enter"],
    ["Escape", "v", "Down", "Down", "Escape", "Escape", "x"],
    ["M-b", "M-f", "C-h", "C-Space", "M-[", "M-O", "BSpace", "C-a"],
    ["Up", "Left", "Home", "End", "F1", "F5", "C-Left", "BTab", "é", "DC", "PPage"],
]
GAPS_MS = [0, 20, 60, 120]


class Tmux:
    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    async def run(self, *args: str) -> str:
        def run() -> str:
            out = subprocess.run(
                ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if out.returncode != 0:
                raise AssertionError(f"tmux {' '.join(args)} failed: {out.stderr}")
            return out.stdout

        return await asyncio.to_thread(run)

    async def capture(self, target: str) -> str:
        return await self.run("capture-pane", "-p", "-t", target)

    async def wait_text(self, target: str, text: str, timeout: float = 30.0) -> None:
        screen = ""

        async def shows() -> bool:
            nonlocal screen
            screen = await self.capture(target)
            return text in screen

        deadline = asyncio.get_running_loop().time() + timeout
        while not await shows():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{target} never showed {text!r}; it shows:\n{screen}")
            await asyncio.sleep(0.05)  # another process draws the pane; polled


async def send(tmux: Tmux, targets: list[str], keys: list[str], gap_ms: int) -> None:
    """The same keys to every target: in one send-keys each, or one key at a time."""
    if gap_ms == 0:
        await asyncio.gather(*(tmux.run("send-keys", "-t", t, *keys) for t in targets))
        return
    for key in keys:
        await asyncio.gather(*(tmux.run("send-keys", "-t", t, key) for t in targets))
        await asyncio.sleep(gap_ms / 1000)  # the gap is the stimulus, not a wait


async def test_keys_reach_the_program_as_tmux_sends_them(hub, git_repo: Path, tmp_path: Path):
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    ui_bytes, plain_bytes = tmp_path / "ui.bin", tmp_path / "plain.bin"
    agent_dir = git_repo / ".botster" / "agents" / "rec"
    agent_dir.mkdir(parents=True)
    (agent_dir / "initialization").write_text(
        f"#!/usr/bin/env bash\nexec {sys.executable} {recorder} {ui_bytes}\n"
    )
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await proc.connect()
    await conn.request("create_agent", {"branch": "keys", "agent": "rec"})
    await wait_until(lambda: ui_bytes.exists(), "the agent's recorder", timeout=30)

    socket = hub_socket(Path(proc.env["BOTSTER_RUNTIME_DIR"]))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    keep = [k for k in env if k.startswith(("BOTSTER_", "XDG_")) or k in ("HOME", "PATH")]
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep)
    tmux = Tmux(tmp_path / "tmux.sock", env)
    botster = f"{sys.executable} -m botster.cli"
    await tmux.run(
        "new-session", "-d", "-s", "k", "-n", "ui", "-x", "120", "-y", "36",
        f"env {exports} TERM=xterm-256color {botster} attach --socket {socket}",
    )  # fmt: skip
    await tmux.run(
        "new-window", "-d", "-t", "k", "-n", "plain", f"{sys.executable} {recorder} {plain_bytes}"
    )
    targets = ["k:ui", "k:plain"]
    try:
        await tmux.wait_text("k:ui", "READY")
        await tmux.wait_text("k:plain", "READY")
        marker = 0
        for ckm in (False, True):
            if ckm:
                await send(tmux, targets, ["-l", "#CKM#"], 0)
                for t in targets:
                    await tmux.wait_text(t, "CKM-ON")
            for keys in SCENARIOS:
                for gap in GAPS_MS:
                    await send(tmux, targets, keys, gap)
                    marker += 1
                    end = f"#END{marker}#".encode()
                    await send(tmux, targets, ["-l", end.decode()], 0)
                    try:
                        await wait_until(
                            lambda end=end: (
                                end in ui_bytes.read_bytes() and end in plain_bytes.read_bytes()
                            ),
                            f"the recorders to read {end!r}",
                            timeout=20,
                        )
                    except AssertionError as e:
                        raise AssertionError(
                            f"{e}; keys {keys} at {gap} ms (application cursor keys {ckm})\n"
                            f"  through the UI: {ui_bytes.read_bytes()[-120:]!r}\n"
                            f"  tmux sends:     {plain_bytes.read_bytes()[-120:]!r}\n"
                            f"the UI shows:\n{await tmux.capture('k:ui')}"
                        ) from None
                    got, want = ui_bytes.read_bytes(), plain_bytes.read_bytes()
                    assert got == want, (
                        f"keys {keys} at {gap} ms gaps (application cursor keys {ckm}):\n"
                        f"  through the UI: {got[-120:]!r}\n  tmux sends:     {want[-120:]!r}"
                    )
        # A paste (bracketed towards the UI, which asked for it; the recorder did not, so
        # tmux sends it plain) arrives as tmux delivers it, Esc and all.
        await tmux.run("set-buffer", "-b", "p", "pasted\x1b:text\nsecond line")
        for t in targets:
            await tmux.run("paste-buffer", "-p", "-b", "p", "-t", t)
        await send(tmux, targets, ["-l", "#PASTED#"], 0)
        await wait_until(
            lambda: (
                b"#PASTED#" in ui_bytes.read_bytes() and b"#PASTED#" in plain_bytes.read_bytes()
            ),
            "the paste",
            timeout=20,
        )
        assert ui_bytes.read_bytes() == plain_bytes.read_bytes(), ui_bytes.read_bytes()[-80:]
        assert b"pasted\x1b:text\rsecond line#PASTED#" in ui_bytes.read_bytes()
    finally:
        with contextlib.suppress(Exception):
            await tmux.run("kill-server")
        await conn.close()


def test_router_splits_keys_from_the_uis_input():
    r = InputRouter([b"\x02"])
    # Keys, whatever they look like, are the program's, in one piece.
    assert r.feed(b"\x1b:w\r\x1bb\x08\x00\x1b[A\x1bOP", raw=True) == [
        (PANE, b"\x1b:w\r\x1bb\x08\x00\x1b[A\x1bOP")
    ]
    # Mouse reports, focus and replies to the UI's queries are the UI's.
    got = r.feed(
        b"a\x1b[<0;5;6Mb\x1b[I\x1b[?2026;2$y\x1b]11;rgb:0/0/0\x07\x1b[48;36;120;0;0tc", True
    )
    assert got == [
        (PANE, b"a"),
        (UI, b"\x1b[<0;5;6M"),
        (PANE, b"b"),
        (UI, b"\x1b[I\x1b[?2026;2$y\x1b]11;rgb:0/0/0\x07\x1b[48;36;120;0;0t"),
        (PANE, b"c"),
    ]
    # A paste, even one cut by reads, is one paste.
    assert r.feed(b"x\x1b[200~one\ntw", True) == [(PANE, b"x")]
    assert r.feed(b"o\x1b[201~y", True) == [(PASTE, b"one\ntwo"), (PANE, b"y")]
    # A sequence cut by the read waits for its end; one that never ends was typed.
    assert r.feed(b"\x1b[<0;1", True) == []
    assert r.feed(b";1m", True) == [(UI, b"\x1b[<0;1;1m")]
    assert r.feed(b"\x1bO", True) == []
    assert r.flush(True) == [(PANE, b"\x1bO")]
    # Alt with a UTF-8 character keeps the whole character.
    assert r.feed("\x1bé!".encode(), True) == [(PANE, "\x1bé!".encode())]
    # Not raw (a dialog has the keyboard): everything is Textual's.
    assert r.feed(b"\x1b:", False) == [(UI, b"\x1b:")]


def test_router_prefix_hands_the_next_keys_to_the_ui_until_released():
    r = InputRouter([b"\x02", b"\x1b[24~"])
    assert r.feed(b"ab\x02nxyz", True) == [(PANE, b"ab"), (UI, b"\x02nxyz")]
    assert r.feed(b"q", True) == [(UI, b"q")]  # the UI key's action has not run yet
    r.release()
    assert r.feed(b"q\x1b[24~d", True) == [(PANE, b"q"), (UI, b"\x1b[24~d")]
