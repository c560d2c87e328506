"""Where a hub may run and what it leaves on disk (issue 10, item 5 loose ends): one hub per
repository from any of its worktrees, a private $BOTSTER_HOME, a clear refusal of a runtime
directory that belongs to someone else.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from botster.base.identity import find_repo_root


def test_issue10_a_linked_worktree_belongs_to_its_main_repository(git_repo: Path, tmp_path):
    linked = tmp_path / "linked"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "side", str(linked)], cwd=git_repo)
    (linked / "sub").mkdir()
    assert find_repo_root(linked) == git_repo.resolve()
    assert find_repo_root(linked / "sub") == git_repo.resolve()
    # a submodule-style .git file without a commondir stays its own repository
    other = tmp_path / "other"
    (other / "gitdir").mkdir(parents=True)
    (other / ".git").write_text(f"gitdir: {other / 'gitdir'}\n")
    assert find_repo_root(other) == other.resolve()


async def test_issue10_a_second_hub_from_a_linked_worktree_is_refused(hub, git_repo, tmp_path):
    await hub()
    linked = tmp_path / "linked"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "side", str(linked)], cwd=git_repo)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "botster.cli",
        "hub",
        cwd=linked,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"a hub is already running for " + str(git_repo.resolve()).encode() in err


async def test_issue10_botster_home_is_private(hub, isolated_env):
    home = Path(isolated_env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    proc = await hub(
        plugins={
            "keeper": """
        local dir = config.data_dir() .. "/keeper/nested"
        assert(fs.mkdir(dir))
        assert(fs.write(dir .. "/state.json", "{}"))
        log.info("RESULT written true")
    """
        }
    )
    await proc.result("written")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "keeper").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "keeper" / "nested").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "keeper" / "nested" / "state.json").stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a directory to another user")
def test_issue10_a_runtime_dir_of_another_user_is_refused_in_words(git_repo, isolated_env):
    runtime = Path(isolated_env["BOTSTER_RUNTIME_DIR"])
    os.chown(runtime, 65534, 65534)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "botster.cli", "hub"],
            cwd=git_repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.chown(runtime, 0, 0)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"botster: {runtime} belongs to another user (uid 65534" in r.stderr
    assert "BOTSTER_RUNTIME_DIR" in r.stderr
