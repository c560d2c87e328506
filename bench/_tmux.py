"""The tmux anchor for key-to-echo benchmarks, and the echo program both sides run.

Shared by ``tui_tmux`` (the real UI next to tmux) and ``socket_echo`` (a socket client next
to tmux):

    argv = write_echo(sandbox.root)          # the echo program, run by this interpreter
    tmux = Tmux(sandbox.root, sandbox.env)   # a private tmux server (its own socket)
    tmux.new_session(argv)                   # one pane running it, ROWS x COLS
    term = OuterTerminal(tmux.attach_argv(), env)
    term.wait_for(b"READY"); ms = term.keystroke(1)
    term.close(); tmux.kill()

``ECHO`` (raw mode) answers every byte with its own count, ``\\r ESC[K <n>``, so each key has
a token of its own on screen. ``OuterTerminal`` runs a client on a pseudo-terminal this
process reads, as a terminal emulator would: a key is written to the master and the time
taken when the client's output, escape sequences removed, shows the token.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

__all__ = ["COLS", "ECHO", "ESCAPES", "ROWS", "OuterTerminal", "Tmux", "token", "write_echo"]

ROWS, COLS = 36, 120
ECHO = r"""
import os, tty
tty.setraw(0)
os.write(1, b"READY\r\n")
n = 0
while True:
    for _ in os.read(0, 64):
        n += 1
        os.write(1, b"\r\x1b[K<%06d>" % n)
"""
ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b."
)


def write_echo(root: Path) -> list[str]:
    """The ECHO program, written under `root`, as an argv run by this interpreter."""
    program = root / "echo.py"
    program.write_text(ECHO)
    return [sys.executable, str(program)]


def token(n: int) -> bytes:
    """What ECHO draws for the n-th byte it reads (escape sequences removed)."""
    return b"%06d>" % n


class Tmux:
    """A private tmux server (its own socket under `root`, no config file)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.cmd = ["tmux", "-S", str(root / "tmux.sock"), "-f", "/dev/null"]
        self.env = env

    @staticmethod
    def installed() -> bool:
        return shutil.which("tmux") is not None

    def new_session(self, argv: list[str], name: str = "b") -> None:
        """A detached session `name` of ROWS x COLS whose one pane runs `argv`."""
        subprocess.run(
            [*self.cmd, "new-session", "-d", "-s", name, "-x", str(COLS), "-y", str(ROWS),
             "exec " + shlex.join(argv)],
            env=self.env,
            check=True,
        )  # fmt: skip

    def attach_argv(self, name: str = "b") -> list[str]:
        return [*self.cmd, "attach", "-t", name]

    def kill(self) -> None:
        subprocess.run([*self.cmd, "kill-server"], env=self.env, capture_output=True)


class OuterTerminal:
    """`argv` on a PTY this benchmark reads, as a terminal emulator would."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm-256color"},
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.seen = b""

    def read(self, timeout: float) -> bytes:
        if not select.select([self.master], [], [], timeout)[0]:
            return b""
        try:
            return os.read(self.master, 1 << 16)
        except OSError:
            return b""

    def wait_for(self, text: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        buf = b""
        while text not in ESCAPES.sub(b"", buf):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} never showed; last output {buf[-400:]!r}")
            buf += self.read(0.1)

    def drain(self) -> None:
        while self.read(0):
            pass

    def keystroke(self, n: int, within: float = 5.0) -> float:
        """Types a key; ms until the program's n-th token is drawn."""
        self.drain()
        expected = token(n)
        buf = b""
        t0 = time.perf_counter()
        os.write(self.master, b"x")
        deadline = t0 + within
        while expected not in ESCAPES.sub(b"", buf):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"token {n} never drawn; output {buf[-300:]!r}")
            buf += self.read(left)
        return (time.perf_counter() - t0) * 1000

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)
