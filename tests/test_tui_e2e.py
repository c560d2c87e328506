"""End to end through a real terminal: tmux runs `botster start` and `botster attach`.

A private tmux server (its own socket, no user config) holds one 120x36 pane running a plain
shell. The test types into it with `send-keys` and reads it with `capture-pane -p`, exactly as
a user would see it: start the hub and the UI, create an agent through the dialog, type into
the agent, see its output, detach (the hub and the agent keep running), re-attach and see
the same terminal content, then stop the hub from the UI.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from botster.base.registry import find_hub_for
from tests.test_tui import define_agent

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed: the end-to-end UI test needs it"
)

COLS, ROWS = 120, 36
SIDEBAR = 34  # the agent list's width: the terminal pane starts after it


class Tmux:
    """One private tmux server with one pane."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def run(self, *args: str) -> str:
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

    def send(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "bt", *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        self.send(text, literal=True)

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", "bt")

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        """Polls the pane until `predicate(screen)`; fails with the last screen."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if predicate(screen):
                return screen
            time.sleep(0.1)  # another process draws the pane; nothing to await
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{screen}")

    def wait_text(self, text: str, timeout: float = 30.0) -> str:
        return self.wait(lambda s: text in s, repr(text), timeout)


def terminal_pane(screen: str) -> list[str]:
    """The agent's terminal as the UI draws it: the right pane's rows from the top down to
    the first blank one (notifications pop up at the bottom, so they are left out)."""
    out = []
    for line in screen.splitlines()[2:-2]:  # header, top border ... bottom border, footer
        row = line[SIDEBAR:].strip().strip("│").rstrip()
        if not row:
            break
        out.append(row)
    return out


@pytest.fixture
def tmux(tmp_path: Path, isolated_env: dict[str, str]) -> Iterator[Tmux]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "TERM": "xterm-256color",
        "BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees"),
        "PS1": "e2e$ ",
    }
    env.pop("TMUX", None)
    # tmux gives a pane its own idea of the environment: pass what matters explicitly.
    keep = [k for k in env if k.startswith(("BOTSTER_", "XDG_", "GIT_")) or k in ("HOME", "PATH")]
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep)
    t = Tmux(tmp_path / "tmux.sock", env)
    t.run(
        "new-session", "-d", "-s", "bt", "-x", str(COLS), "-y", str(ROWS),
        f"env {exports} TERM=xterm-256color PS1='e2e$ ' bash --norc --noprofile",
    )  # fmt: skip
    try:
        t.wait_text("e2e$")
        yield t
    finally:
        with contextlib.suppress(Exception):
            t.run("kill-server")


def test_start_create_type_detach_reattach(tmux: Tmux, git_repo: Path, isolated_env):
    define_agent(git_repo)
    tmux.type(f"cd {git_repo} && botster start")
    tmux.send("Enter")
    try:
        tmux.wait_text("No agents")
        entry = find_hub_for(git_repo)
        assert entry is not None, "botster start left no hub running"

        # Create an agent through the dialog.
        tmux.send("C-b")
        tmux.type("n")
        tmux.wait_text("Branch, or issue number")  # the dialog (the footer names it too)
        tmux.type("e2e/branch")
        tmux.wait_text("e2e/branch")  # in the field before it is submitted
        tmux.send("Enter")
        tmux.wait_text("ready 中文 e2e-branch")

        # Type into it; its output shows.
        tmux.type("hello-e2e")
        tmux.send("Enter")
        before = tmux.wait_text("got:hello-e2e")
        pane_before = terminal_pane(before)
        assert any("got:hello-e2e" in line for line in pane_before)
        assert any("ready 中文 e2e-branch" in line for line in pane_before)

        # Detach: the UI goes, the hub and the agent stay.
        tmux.send("C-b")
        tmux.type("d")
        tmux.wait_text("detached; the hub and its agents keep running")
        assert find_hub_for(git_repo) == entry

        # Re-attach: the same terminal content.
        tmux.send("C-l")
        tmux.wait(lambda s: "got:hello-e2e" not in s, "a cleared shell")
        tmux.type("botster attach")
        tmux.send("Enter")
        after = tmux.wait_text("got:hello-e2e")
        after = tmux.wait(
            lambda s: terminal_pane(s) == pane_before, "the same terminal content", timeout=10
        )
        assert "e2e-branch" in after

        # The agent still answers.
        tmux.type("again")
        tmux.send("Enter")
        tmux.wait_text("got:again")

        # Stop the hub from the UI (it asks first).
        tmux.send("C-b")
        tmux.type("S")
        tmux.wait_text("Stop the hub?")
        tmux.type("y")
        tmux.wait_text("hub stopped")
        deadline = time.monotonic() + 15
        while find_hub_for(git_repo) is not None and time.monotonic() < deadline:
            time.sleep(0.1)  # the hub process shuts down on its own
        assert find_hub_for(git_repo) is None
    finally:
        leftover = find_hub_for(git_repo)
        if leftover is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(leftover["pid"]), signal.SIGTERM)
        log = next(Path(isolated_env["BOTSTER_RUNTIME_DIR"]).glob("hub-*.log"), None)
        if log is not None:
            print(log.read_text(errors="replace")[-4000:])
