"""Scrollback as tmux keeps it: CSI 3 J erases it, and resizing never pulls it onto the screen.

The terminal model (the sessions' and the UI pane's) is compared with tmux itself: the same
bytes printed in a tmux pane, the window shrunk and grown again, the cursor row and the
screen must match.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from botster.sessions.terminal import make_terminal

LINES = b"".join(b"line%d\r\n" % i for i in range(40)) + b"$ "


def test_csi_3j_erases_the_scrollback_however_the_stream_is_split():
    clear = b"\x1b[H\x1b[2J\x1b[3Jafter"
    for cut in range(len(clear) + 1):
        t = make_terminal(10, 30, 100, backend="avt")
        t.feed(LINES)
        assert len(t.history()) > t.rows
        t.feed(clear[:cut])
        t.feed(clear[cut:])
        assert len(t.history()) == t.rows, f"cut at {cut}: history kept"
        assert t.text().split("\n")[0] == "after" and t.cursor.col == 5
    # Without 3 J (plain `clear` of old ncurses: 2 J only) the history stays.
    t = make_terminal(10, 30, 100, backend="avt")
    t.feed(LINES + b"\x1b[H\x1b[2J")
    assert len(t.history()) > t.rows


def test_erasing_the_scrollback_keeps_screen_pen_and_modes():
    t = make_terminal(6, 30, 100, backend="avt")
    t.feed(LINES + b"\x1b[?1h\x1b[31mred\x1b[3J")
    assert len(t.history()) == t.rows and t.app_cursor
    t.feed(b"more")
    row = t.cells()[t.cursor.row]
    assert "".join(c[0] for c in row).startswith("$ redmore") and row[6][1] == "i1"


CLEARED = LINES + b"\x1b[H\x1b[2J\x1b[3J" + b"".join(b"after%d\r\n" % i for i in range(3))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="compares with tmux")
@pytest.mark.parametrize("output", [LINES[:-2], CLEARED], ids=["scrolled", "cleared"])
def test_shrink_and_grow_as_tmux_does(tmp_path: Path, output: bytes):
    """Shrinking then growing the window: the same screen and cursor row as tmux.

    tmux, like xterm, brings scrolled-off lines back when the window grows; after `clear`
    (CSI 3 J) there are none, so the prompt stays where it was.
    """
    out = tmp_path / "out"
    out.write_bytes(output)
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", sock, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout

    last = output.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode()
    tmux("new-session", "-d", "-s", "s", "-x", "80", "-y", "24", f"cat {out}; exec sleep 60")
    try:
        deadline = time.monotonic() + 10
        while last not in tmux("capture-pane", "-p", "-t", "s"):
            assert time.monotonic() < deadline, "tmux never showed the output"
            time.sleep(0.05)  # another process draws the pane
        tmux("resize-window", "-t", "s", "-y", "9")
        tmux("resize-window", "-t", "s", "-y", "24")
        row = int(tmux("display", "-p", "-t", "s", "#{cursor_y}"))
        screen = tmux("capture-pane", "-p", "-t", "s").rstrip("\n").split("\n")
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
    t = make_terminal(24, 80, 1000, backend="avt")
    t.feed(output.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    t.resize(9, 80)
    t.resize(24, 80)
    ours = [line.rstrip() for line in t.text().split("\n")]
    assert (t.cursor.row, ours[: len(screen)]) == (row, [s.rstrip() for s in screen])


def test_snapshots_replay_in_pyte_as_in_avt():
    """Snapshot bytes use plain SGR (semicolons) and no REP, so pyte draws from the snapshot
    what it draws from the program's own output."""
    output = (
        b"\x1b[38;5;208mpalette\x1b[0m \x1b[38;2;1;2;3;48;2;250;128;0mrgb\x1b[0m"
        b"\r\n\x1b[1;4;7mbold under inverse\x1b[0m          spaces   x\r\n"
        b"\x1b[48;5;17m" + b" " * 30 + b"\x1b[0m\r\n" + "wide 中文 é".encode()
    )
    t = make_terminal(6, 40, 100, backend="avt")
    t.feed(output)
    snap = t.snapshot()
    assert b":" not in snap and re.search(rb"\x1b\[\d+b", snap) is None
    direct, replay = (make_terminal(6, 40, 100, backend="pyte") for _ in range(2))
    direct.feed(output)
    replay.feed(snap)
    assert replay.cells() == direct.cells()
    assert replay.text() == t.text()
    assert (replay.cursor.row, replay.cursor.col) == (t.cursor.row, t.cursor.col)
