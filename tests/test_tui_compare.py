"""The UI draws a program as tmux does: less, vim and a colour script, cell for cell.

Cells are compared as text (`capture-pane -p`); colours are checked by test_tui_colors (24-bit
through tmux) and the SVG snapshots of test_tui_snapshots.

One tmux server, two windows: `botster attach` on a hub whose agent runs the program, and
the same program directly in a window sized to the UI's terminal pane. The pane's region of
the UI window must read as the plain window does: after attach, after both are resized, and
after the hub restarts (the UI reconnects and the next hub adopts the agent).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import hub_socket, wait_until
from tests.test_tui_keys import Tmux

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or shutil.which("less") is None or shutil.which("vim") is None,
    reason="needs tmux, less and vim",
)

COLOURS = r"""
for i in $(seq 0 15); do printf '\033[38;5;%dmc%02d\033[0m ' $i $i; done; echo
printf '\033[38;2;255;100;0mtrue\033[48;2;0;0;200m colour\033[0m \033[1mbold\033[0m \033[7minv\033[0m\n'
for i in $(seq 1 60); do echo "line $i of the colour script"; done
"""
PROGRAMS = {  # the command, and what shows once it has drawn
    "less": ("less -R +G {file}", "row 199"),
    "vim": ("vim -u NONE -N -n -c 'set nomore' -c 'normal 30G' {file}", "row 29:"),
}


def pane_region(screen: str, cols: int, rows: int, left: int) -> list[str]:
    """The UI's terminal pane: `rows` rows under the header and the border, after the list."""
    lines = screen.split("\n")
    return [line[left : left + cols].rstrip() for line in lines[2 : 2 + rows]]


@pytest.mark.parametrize("program", sorted(PROGRAMS))
async def test_ui_draws_programs_as_tmux(hub, git_repo: Path, tmp_path: Path, program: str):
    text = tmp_path / "file.txt"
    text.write_text("".join(f"row {i}: {'abcdefghij' * 3} {i * i}\n" for i in range(200)))
    script = tmp_path / "run.sh"
    # The program starts once its terminal has the pane's size (84x32): a program started at
    # another size and then resized draws what its own resize handling decides.
    script.write_text(
        f"{COLOURS}\nwhile [ \"$(stty size)\" != '32 84' ]; do sleep 0.05; done\n"
        f"exec {PROGRAMS[program][0].format(file=text)}\n"
    )
    d = git_repo / ".botster" / "agents" / "cmp"
    d.mkdir(parents=True)
    (d / "initialization").write_text(f"#!/usr/bin/env bash\nexec bash {script}\n")
    subprocess.run(["git", "add", ".botster"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=git_repo, check=True)
    env_extra = {"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")}
    proc = await hub(env=env_extra)
    conn = await proc.connect()
    await conn.request("create_agent", {"branch": "cmp", "agent": "cmp"})
    await conn.close()
    socket = hub_socket(Path(proc.env["BOTSTER_RUNTIME_DIR"]))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    keep = [k for k in env if k.startswith(("BOTSTER_", "XDG_")) or k in ("HOME", "PATH")]
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep)
    tmux = Tmux(tmp_path / "tmux.sock", env)

    async def compare(width: int, height: int, what: str) -> None:
        # The pane: the list takes 34 columns (24 under 110), header and footer a row each,
        # the pane's border one cell all round.
        side = 34 if width >= 110 else 24
        cols, rows = width - side - 2, height - 4
        await tmux.run("resize-window", "-t", "c:ui", "-x", str(width), "-y", str(height))
        await tmux.run("resize-window", "-t", "p", "-x", str(cols), "-y", str(rows))
        shown: dict[str, list[str]] = {}

        async def same() -> bool:
            ui = await tmux.run("capture-pane", "-p", "-t", "c:ui")
            plain = await tmux.run("capture-pane", "-p", "-t", "p")
            shown["ui"] = pane_region(ui, cols, rows, side + 1)
            shown["plain"] = [line.rstrip() for line in plain.split("\n")[:rows]]
            return shown["ui"] == shown["plain"]

        try:
            await wait_until(same, what, timeout=20)
        except AssertionError:
            diff = [
                f"{y:2} ui   |{a}|\n   plain|{b}|"
                for y, (a, b) in enumerate(zip(shown["ui"], shown["plain"], strict=False))
                if a != b
            ]
            raise AssertionError(f"{program} {what} differs:\n" + "\n".join(diff[:12])) from None

    try:
        await tmux.run(
            "new-session", "-d", "-s", "c", "-n", "ui", "-x", "120", "-y", "36",
            f"env {exports} TERM=xterm-256color {sys.executable} -m botster.cli attach "
            f"--socket {socket}",
        )  # fmt: skip
        await tmux.run(
            "new-session", "-d", "-s", "p", "-x", "84", "-y", "32",
            f"env TERM=xterm-256color bash {script}",
        )  # fmt: skip
        await tmux.wait_text("p", PROGRAMS[program][1])
        await compare(120, 36, "after attach")
        await compare(100, 30, "after a resize")
        await proc.stop()
        again = await hub(env=env_extra)
        await again.wait_for(r"adopted 1 sessions")
        await compare(100, 30, "after a hub restart")
    finally:
        await tmux.run("kill-server")


# Echoes each typed key in a colour of its own and keeps a count of keys on row 1 (cursor
# saved and restored around it), so every key changes two rows and moves the cursor; Enter
# starts a new line, Backspace erases: a line editor's output, drawn key by key.
TYPIST = r"""
import os, tty
tty.setraw(0)
os.write(1, b"READY\r\n")
n = 0
while True:
    for b in os.read(0, 64):
        n += 1
        if b == 13:
            out = b"\r\n"
        elif b == 127:
            out = b"\b \b"
        else:
            out = b"\x1b[3%dm%c\x1b[0m" % (n % 8, b)
        os.write(1, out + b"\x1b[s\x1b[1;70H\x1b[7mkeys %05d\x1b[0m\x1b[u" % n)
"""


async def test_typing_drawn_at_once_matches_tmux(hub, git_repo: Path, tmp_path: Path):
    """Issue 12: with output drawn at once (the fast path, on), what a user types ends as
    the same screen as in plain tmux, cell for cell."""
    program = tmp_path / "typist.py"
    program.write_text(TYPIST)
    script = tmp_path / "run.sh"
    script.write_text(
        "while [ \"$(stty size)\" != '32 84' ]; do sleep 0.05; done\n"
        f"exec {sys.executable} {program}\n"
    )
    d = git_repo / ".botster" / "agents" / "typist"
    d.mkdir(parents=True)
    (d / "initialization").write_text(f"#!/usr/bin/env bash\nexec bash {script}\n")
    subprocess.run(["git", "add", ".botster"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=git_repo, check=True)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")})
    conn = await proc.connect()
    await conn.request("create_agent", {"branch": "typist", "agent": "typist"})
    await conn.close()
    socket = hub_socket(Path(proc.env["BOTSTER_RUNTIME_DIR"]))
    env = {**os.environ, "TERM": "xterm-256color", "BOTSTER_TUI_FAST_PAINT": "1"}
    env.pop("TMUX", None)
    keep = [k for k in env if k.startswith(("BOTSTER_", "XDG_")) or k in ("HOME", "PATH")]
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep)
    tmux = Tmux(tmp_path / "tmux.sock", env)
    cols, rows = 84, 32
    shown: dict[str, list[str]] = {}

    async def same() -> bool:
        ui = await tmux.run("capture-pane", "-p", "-t", "c:ui")
        plain = await tmux.run("capture-pane", "-p", "-t", "p")
        shown["ui"] = pane_region(ui, cols, rows, 35)
        shown["plain"] = [line.rstrip() for line in plain.split("\n")[:rows]]
        return shown["ui"] == shown["plain"]

    try:
        await tmux.run(
            "new-session", "-d", "-s", "c", "-n", "ui", "-x", "120", "-y", "36",
            f"env {exports} {sys.executable} -m botster.cli attach --socket {socket}",
        )  # fmt: skip
        await tmux.run(
            "new-session", "-d", "-s", "p", "-x", str(cols), "-y", str(rows), f"bash {script}"
        )
        await tmux.wait_text("p", "READY")
        await tmux.wait_text("c:ui", "READY")
        text = "the quick brown fox jumps"
        for i, key in enumerate([*text, "BSpace", "BSpace", "Enter", *"over 13 lazy dogs"]):
            for target in ("c:ui", "p"):
                await tmux.run(
                    "send-keys", "-t", target, *(["-l", key] if len(key) == 1 else [key])
                )
            if i % 5 == 4:  # keys apart, as typed: each echo is drawn on its own
                await tmux.wait_text("p", f"keys {i + 1:05d}")
        await tmux.wait_text("p", "over 13 lazy dogs")
        try:
            await wait_until(same, "the typed screen", timeout=20)
        except AssertionError:
            diff = [
                f"{y:2} ui   |{a}|\n   plain|{b}|"
                for y, (a, b) in enumerate(zip(shown["ui"], shown["plain"], strict=False))
                if a != b
            ]
            raise AssertionError("typed screen differs:\n" + "\n".join(diff[:12])) from None
        assert "the quick brown fox jum" in "\n".join(shown["ui"])
    finally:
        await tmux.run("kill-server")
