"""Attaching: the UI subscribes at its pane's real size, once, and draws the first screen exact.

The agent logs every SIGWINCH with the size it then has. A first attach resizes it once to
the pane's size; attaching again at the same size resizes nothing (no 24x80 guess first);
every snapshot the UI loads is already at the pane's size.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from botster.transports.client import HubConnection
from botster.tui.app import BotsterApp
from tests.test_pty import socket_of
from tests.test_tui import SIZE, until

WINCH_AGENT = r"""#!/usr/bin/env bash
trap 'echo "$(stty size)" >> "{log}"' WINCH
echo READY
while true; do
  if IFS= read -r line; then echo "got:$line"; fi
done
"""


def define_winch_agent(repo: Path, log: Path) -> None:
    d = repo / ".botster" / "agents" / "winch"
    d.mkdir(parents=True, exist_ok=True)
    (d / "initialization").write_text(WINCH_AGENT.replace("{log}", str(log)))
    subprocess.run(["git", "add", ".botster"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "winch agent"], cwd=repo, check=True)


async def attach_and_probe(proc, probe: str) -> tuple[int, int]:
    """Runs the UI until the agent echoed `probe`; checks every snapshot had the pane's size."""
    app = BotsterApp(socket_of(proc))
    snapshots: list[tuple[int, int]] = []
    load = app.terminal.load_snapshot

    def recording(sid: str, rows: int, cols: int, data: bytes) -> None:
        snapshots.append((rows, cols))
        load(sid, rows, cols, data)

    app.terminal.load_snapshot = recording
    async with app.run_test(size=SIZE) as pilot:
        view = app.terminal
        await until(pilot, lambda: "READY" in view.screen_text(), "the agent's screen")
        pane = (view.size.height, view.size.width)
        # Typed text echoes after any SIGWINCH the attach caused has been handled.
        await pilot.press(*probe, "enter")
        await until(pilot, lambda: f"got:{probe}" in view.screen_text(), "the probe echoed")
        assert snapshots and all(s == pane for s in snapshots), snapshots
    return pane


async def test_attach_subscribes_once_at_the_panes_size(hub, git_repo: Path, tmp_path: Path):
    log = tmp_path / "winch.log"
    define_winch_agent(git_repo, log)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")})
    conn = await HubConnection.connect(socket_of(proc), "setup")
    await conn.request("create_agent", {"branch": "winch", "agent": "winch"})
    for attach in range(2):
        pane = await attach_and_probe(proc, f"probe{attach}")
        sizes = log.read_text().split("\n")[:-1] if log.exists() else []
        want = [f"{pane[0]} {pane[1]}"]  # one resize, from the session's size to the pane's
        assert sizes == want, f"attach {attach + 1}: the agent saw resizes {sizes}"
    await conn.close()


async def test_detach_after_the_hub_died_says_so(hub, git_repo: Path, tmp_path: Path):
    define_winch_agent(git_repo, tmp_path / "winch.log")
    proc = await hub()
    app = BotsterApp(socket_of(proc))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.link.connected, "connected")
        await proc.kill()
        proc.allow_nonzero_exit = proc.allow_registry_left = True
        await until(pilot, lambda: not app.link.connected, "the hub gone")
        await pilot.press("ctrl+b", "d")
    assert app.hub_gone and not app.hub_stopped
