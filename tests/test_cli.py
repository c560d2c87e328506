"""The command line as a user meets it: one error format, and `botster status` (issue 12).

Every command runs as a process (``python -m botster.cli``), the hub as `botster start`
launches it (detached, logging to its file), so what is printed is what a user reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from botster.base.registry import find_hub_for
from botster.hub.launch import start_hub_blocking


async def botster(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Runs the CLI; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botster.cli", *args, cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["bogus"], 2, "botster: No such command 'bogus' (see 'botster --help')"),
        (["stop", "--bad"], 2, "botster: No such option '--bad' (see 'botster stop --help')"),
        (["attach", "--repo", ".", "--socket", "/nope"], 2, "botster: give --repo or --socket"),
        (["sessions", "--end"], 2, "botster: Option '--end' requires an argument"),
        (["stop", "--repo", "{tmp}"], 1, "botster: {tmp} is not inside a git repository"),
        (["status", "--repo", "{tmp}"], 1, "botster: {tmp} is not inside a git repository"),
        (["attach", "--socket", "{tmp}/none.sock"], 1, "botster: the UI needs a terminal"),
        (["pair", "--list", "--revoke", "k"], 2, "botster: give --list or --revoke, not both"),
    ],
)
async def test_every_error_reads_botster_colon(
    isolated_env, tmp_path: Path, args: list[str], code: int, message: str
):
    plain = tmp_path / "plain"
    plain.mkdir()
    args = [a.format(tmp=plain) for a in args]
    got, out, err = await botster(*args, cwd=plain)
    assert got == code, (out, err)
    assert err.startswith(message.format(tmp=plain)), err
    assert "Error:" not in err and "Usage:" not in err and not out, (out, err)


async def test_help_and_version_still_exit_zero(isolated_env):
    code, out, err = await botster("--help")
    assert code == 0 and out.startswith("Usage: botster") and not err
    code, out, _ = await botster("--version")
    assert code == 0 and "version" in out
    code, out, _ = await botster()  # no command: the help, as click gives it
    assert code == 2 and "Commands:" in out


async def test_status_shows_log_and_worktree_base(isolated_env, git_repo: Path, tmp_path: Path):
    code, _, err = await botster("status", cwd=git_repo)
    assert code == 1 and err.startswith("botster: no hub is running for"), err

    base = tmp_path / "my-worktrees"
    env = {"BOTSTER_WORKTREE_BASE": str(base)}
    os.environ.update(env)  # the hub `botster start` launches inherits it
    try:
        entry = await asyncio.to_thread(start_hub_blocking, git_repo)
        try:
            code, out, err = await botster("status", "--json", cwd=git_repo)
            assert code == 0, err
            info = json.loads(out)
            runtime = Path(isolated_env["BOTSTER_RUNTIME_DIR"])
            assert info["worktree_base"] == str(base)
            assert info["log"] == str(runtime / f"hub-{entry['id'][:16]}.log")
            assert Path(info["log"]).read_text().count("hub ready") >= 1
            assert info["repo"] == str(git_repo.resolve()) and info["hub_id"] == entry["id"]
            code, out, _ = await botster("status", "--repo", str(git_repo))
            assert code == 0
            lines = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
            assert lines["worktrees"] == str(base) and lines["log"] == info["log"], out
        finally:
            code, out, err = await botster("stop", "--repo", str(git_repo))
            assert code == 0, (out, err)
    finally:
        for key in env:
            os.environ.pop(key, None)
    assert find_hub_for(git_repo) is None
