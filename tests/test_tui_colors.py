"""24-bit colour reaches the user's terminal when it can show it, and `tui_colors` forces it.

The end-to-end test runs the UI in tmux (TERM=xterm-256color, no COLORTERM: Rich alone would
round every 24-bit colour to the palette) and reads the colours tmux received with
`capture-pane -e`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from botster.tui.colors import ColorsError, color_system, load_colors_setting
from harness import hub_socket, wait_until
from tests.test_tui_keys import Tmux

RGB = "38;2;10;200;30"
AGENT = r"""#!/usr/bin/env bash
printf '\033[38;2;10;200;30mRGB-TEXT\033[0m\n'
exec cat
"""


@pytest.mark.parametrize(
    ("env", "setting", "want"),
    [
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, "auto", "truecolor"),
        ({"TERM": "xterm-256color"}, "auto", "256"),
        ({"TERM": "xterm-kitty"}, "auto", "truecolor"),
        ({"TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"}, "auto", "truecolor"),
        ({"TERM": "xterm-256color", "VTE_VERSION": "7200"}, "auto", "truecolor"),
        ({"TERM": "xterm-256color", "VTE_VERSION": "3405"}, "auto", "256"),
        ({"TERM": "xterm"}, "auto", "standard"),
        ({"TERM": "xterm"}, "truecolor", "truecolor"),
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, "16", "standard"),
    ],
)
def test_color_system(env, setting, want):
    assert color_system(env, setting) == want


def test_colors_setting(tmp_path: Path):
    assert load_colors_setting(tmp_path) == "auto"
    (tmp_path / "config.json").write_text(json.dumps({"tui_colors": "truecolor"}))
    assert load_colors_setting(tmp_path) == "truecolor"
    (tmp_path / "config.json").write_text(json.dumps({"tui_colors": "millions"}))
    with pytest.raises(ColorsError, match="tui_colors must be one of .*got 'millions'"):
        load_colors_setting(tmp_path)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
async def test_truecolor_reaches_the_terminal(hub, git_repo: Path, tmp_path: Path, isolated_env):
    d = git_repo / ".botster" / "agents" / "rgb"
    d.mkdir(parents=True)
    (d / "initialization").write_text(AGENT)
    subprocess.run(["git", "add", ".botster"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=git_repo, check=True)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")})
    conn = await proc.connect()
    await conn.request("create_agent", {"branch": "rgb", "agent": "rgb"})
    socket = hub_socket(Path(isolated_env["BOTSTER_RUNTIME_DIR"]))
    config = Path(isolated_env["BOTSTER_HOME"]) / "config.json"
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    env.pop("COLORTERM", None)
    keep = [k for k in env if k.startswith(("BOTSTER_", "XDG_")) or k in ("HOME", "PATH")]
    exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep)
    tmux = Tmux(tmp_path / "tmux.sock", env)
    seen = {}
    try:
        for setting in ("auto", "truecolor"):
            config.write_text(json.dumps({"lua_slow_step_ms": 500, "tui_colors": setting}))
            await tmux.run(
                "new-session", "-d", "-s", setting, "-x", "120", "-y", "30",
                f"env -u COLORTERM {exports} TERM=xterm-256color "
                f"{sys.executable} -m botster.cli attach --socket {socket}",
            )  # fmt: skip
            await tmux.wait_text(setting, "RGB-TEXT")
            screen = ""

            async def drawn(setting=setting) -> bool:
                nonlocal screen
                screen = await tmux.run("capture-pane", "-p", "-e", "-t", setting)
                return "RGB-TEXT" in screen

            await wait_until(drawn, "the coloured text")
            seen[setting] = RGB in screen
    finally:
        await tmux.run("kill-server")
        await conn.close()
    assert seen == {"auto": False, "truecolor": True}, "auto rounds (no COLORTERM); forced passes"
