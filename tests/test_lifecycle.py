"""The hub process: start, identity, one hub per repo, clean exits, bad start-up input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from botster.base.cpu import HUB_SLICE_NS
from harness import HubProcess, wait_until


async def test_ready_line_names_hub_id_and_registry_entry(hub, git_repo: Path, isolated_env):
    proc = await hub()
    hub_id = hashlib.sha256(str(git_repo.resolve()).encode()).hexdigest()
    await proc.wait_for(rf"hub ready: 0 plugins loaded, 0 failed, .*hub id {hub_id}")
    entry = Path(isolated_env["BOTSTER_RUNTIME_DIR"]) / "hubs" / f"{hub_id}.json"
    data = json.loads(entry.read_text())
    assert data["id"] == hub_id
    assert data["repo_path"] == str(git_repo.resolve())
    assert data["pid"] == proc.proc.pid
    assert Path(isolated_env["BOTSTER_RUNTIME_DIR"]).stat().st_mode & 0o777 == 0o700


async def test_second_hub_for_same_repo_refuses(hub, git_repo: Path, isolated_env):
    first = await hub()
    second = HubProcess(git_repo, isolated_env)
    await second.start()
    rc = await second.wait_exit()
    assert rc == 1
    assert f"a hub is already running for {git_repo.resolve()} (pid {first.proc.pid})" in second.log
    # The first hub is unaffected and still owns its entry.
    assert first.proc.returncode is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_signal_delivers_shutdown_and_exits_zero(hub, sig):
    proc = await hub(
        plugins={
            "bye": """
            events.on("shutdown", function() log.info("RESULT event true") end)
            hub.hooks.on("shutdown", "bye", function() log.info("RESULT hook true") end)
        """,
        }
    )
    proc.signal(sig)
    assert await proc.result("event") is True
    assert await proc.result("hook") is True
    assert await proc.wait_exit() == 0


async def test_shutdown_waits_for_a_handler_that_suspends(hub):
    proc = await hub(
        plugins={
            "slowbye": """
            events.on("shutdown", function()
              for i = 1, 3 do coroutine.yield() end
              log.info("RESULT finished true")
            end)
        """,
        }
    )
    proc.signal(signal.SIGTERM)
    assert await proc.result("finished") is True
    assert await proc.wait_exit() == 0


async def test_restart_after_kill_9_leaves_nothing_blocking(hub, git_repo: Path, isolated_env):
    first = await hub()
    first.signal(signal.SIGKILL)
    assert await first.wait_exit() == -signal.SIGKILL
    first.allow_nonzero_exit = True
    first.allow_registry_left = True  # a killed hub cannot clean up; the next one replaces it
    second = await hub()
    await second.wait_for("hub ready")
    await second.stop_and_verify()


def test_not_a_git_repo_is_a_clear_error(tmp_path: Path, isolated_env):
    plain = tmp_path / "plain"
    plain.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "botster.cli", "hub", "--repo", str(plain)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert "is not inside a git repository" in r.stderr


def test_missing_repo_path_is_a_clear_error(tmp_path: Path, isolated_env):
    r = subprocess.run(
        [sys.executable, "-m", "botster.cli", "hub", "--repo", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0
    assert "nope" in r.stderr and "does not exist" in r.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"lua_step_budget": -1}', "lua_step_budget must be"),
    ],
)
def test_broken_config_refuses_to_start(git_repo: Path, isolated_env, content, message):
    home = Path(isolated_env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(content)
    r = subprocess.run(
        [sys.executable, "-m", "botster.cli", "hub", "--repo", str(git_repo)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert message in r.stderr
    assert (home / "config.json").read_text() == content  # never overwritten


async def test_hub_started_from_a_subdirectory_serves_the_repo(git_repo: Path, isolated_env):
    sub = git_repo / "src" / "deep"
    sub.mkdir(parents=True)
    proc = HubProcess(sub, isolated_env)
    await proc.start()
    await proc.wait_ready()
    hub_id = hashlib.sha256(str(git_repo.resolve()).encode()).hexdigest()
    assert hub_id in "\n".join(proc.lines)
    await proc.stop_and_verify()


def test_help_is_fast_to_import():
    # `botster --help` must not import the Lua runtime or the HTTP stack.
    code = (
        "import sys, botster.cli; "
        "print(','.join(m for m in ('lupa', 'aiohttp', 'watchdog') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env={**os.environ}
    )
    assert r.stdout.strip() == ""


async def test_botster_list_shows_running_hubs(hub, git_repo: Path, isolated_env):
    proc = await hub()
    out = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botster.cli", "list", "--json", stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await out.communicate()
    hubs = json.loads(stdout)
    assert [(h["repo_path"], h["pid"]) for h in hubs] == [(str(git_repo.resolve()), proc.proc.pid)]
    table = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botster.cli", "list", stdout=asyncio.subprocess.PIPE
    )
    text, _ = await table.communicate()
    assert str(git_repo.resolve()) in text.decode() and "HUB ID" in text.decode()


def test_botster_list_cleans_entries_of_dead_hubs(isolated_env):
    registry = Path(isolated_env["BOTSTER_RUNTIME_DIR"]) / "hubs"
    registry.mkdir(parents=True)
    stale = registry / ("0" * 64 + ".json")
    stale.write_text(
        json.dumps(
            {
                "id": "0" * 64,
                "socket": "/nonexistent.sock",
                "repo_path": "/gone",
                "pid": 2**22 + 12345,
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "botster.cli", "list"], capture_output=True, text=True, timeout=30
    )
    assert r.stdout.strip() == "no hubs running"
    assert not stale.exists()


def _slice_ns(pid: int) -> int | None:
    """The scheduler slice of a process's main thread, from /proc (None: not shown)."""
    for line in Path(f"/proc/{pid}/task/{pid}/sched").read_text().splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return None


def _kernel_takes_custom_slices() -> bool:
    # EEVDF custom slices (sched_attr.sched_runtime under SCHED_OTHER): Linux 6.12 and later.
    release = tuple(int(p) for p in os.uname().release.split("-")[0].split(".")[:2])
    return sys.platform == "linux" and release >= (6, 12) and _slice_ns(os.getpid()) is not None


async def test_the_hub_loop_takes_a_short_slice_and_its_sessions_do_not_issue_11(hub, isolated_env):
    # The hub wakes often and does little each time; agents run long. Its loop thread asks
    # for the shortest slice so that it runs as soon as it wakes; what it starts does not
    # inherit that.
    if not _kernel_takes_custom_slices():
        pytest.skip("this kernel has no custom scheduler slices (Linux 6.12+)")
    proc = await hub({"spawner": 'pty.spawn{cmd="sleep", args={"100"}}'})
    assert _slice_ns(proc.proc.pid) == HUB_SLICE_NS
    sessions = Path(isolated_env["BOTSTER_RUNTIME_DIR"]) / "sessions"

    def session_pids() -> list[int]:
        found = []
        for record in sessions.glob("*.json"):
            info = json.loads(record.read_text())
            found += [info["pid"], info["child_pid"]]
        return found

    pids = await wait_until(session_pids, "the plugin's session process and its program")
    for pid in pids:
        assert (_slice_ns(pid) or 0) > HUB_SLICE_NS, f"pid {pid} inherited the hub's slice"


def test_a_thread_under_another_policy_keeps_it_and_is_told_why():
    # A user who started the hub under `chrt --batch` (or idle) chose that policy: asking
    # for a slice would put the thread back under SCHED_OTHER, so the request declines.
    if shutil.which("chrt") is None or sys.platform != "linux":
        pytest.skip("needs Linux and chrt")
    probe = (
        "import os; from botster.base.cpu import request_short_slice as r; "
        "print(r()); print(os.sched_getscheduler(0) == os.SCHED_BATCH)"
    )
    out = subprocess.run(
        ["chrt", "--batch", "0", sys.executable, "-c", probe],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert out == ["the thread is not under SCHED_OTHER", "True"]
