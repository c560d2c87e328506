"""Fixtures: an isolated environment, a real git repo, and real `botster hub` processes.

    isolated_env -> git_repo -> hub (factory) -> HubProcess

Nothing is mocked. The hub runs as a child process; tests talk to it through plugins (files in
the repo layer) and read its log. `HubProcess.wait_for` waits for a log line, never a sleep.
The sandbox, the hub process and `wait_until` come from `harness/`, shared with `bench/`.
At teardown every hub is stopped with SIGTERM and must exit 0, leave no registry entry, and
its log must hold no error, slow step or traceback the test did not declare with `expect_log`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import settings

from harness import HubProcess, init_git_repo, kill_sessions, sandbox_env, write_plugin
from harness.sandbox import PROXY_VARS

__all__ = ["write_plugin"]

# Example counts stay as each test sets them; only the per-example deadline goes, because a
# 2-core CI machine running hub processes beside hypothesis makes wall-clock deadlines flaky.
settings.register_profile("botster", deadline=None)
settings.load_profile("botster")


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME, BOTSTER_HOME, BOTSTER_RUNTIME_DIR and XDG dirs under tmp; no proxies."""
    home = tmp_path / "home"
    home.mkdir()
    # Short runtime dir: Unix socket paths must stay under 108 bytes.
    runtime = Path(f"/tmp/bt-{os.getpid()}-{abs(hash(tmp_path)) % 10**8}")
    runtime.mkdir(mode=0o700)
    env = sandbox_env(home, runtime, debug=True)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (*PROXY_VARS, "BOTSTER_LOG"):
        monkeypatch.delenv(key, raising=False)
    yield env
    kill_sessions(runtime)
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def git_repo(tmp_path: Path, isolated_env: dict[str, str]) -> Path:
    """A real git repository with one commit."""
    return init_git_repo(tmp_path / "repo")


@pytest.fixture
async def hub(git_repo: Path, isolated_env: dict[str, str]) -> AsyncIterator[Callable[..., object]]:
    """Factory: ``await hub(plugins={"name": "lua source"})``. Waits until the hub is ready."""
    started: list[HubProcess] = []

    async def start(
        plugins: dict[str, str] | None = None,
        *,
        repo: Path | None = None,
        config: dict[str, object] | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
    ) -> HubProcess:
        target = repo or git_repo
        for name, source in (plugins or {}).items():
            write_plugin(target, name, source)
        # Slow-step lines are checked at teardown; on a loaded 2-core machine a 50 ms step
        # can happen by chance, so tests default to 500 ms and the slow-step tests say 50.
        home = Path(isolated_env["BOTSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        config_file = home / "config.json"
        if config is not None or not config_file.exists():
            settings = {"lua_slow_step_ms": 500, **(config or {})}
            config_file.write_text(json.dumps(settings))
        proc = HubProcess(target, {**isolated_env, **(env or {})})
        await proc.start()
        started.append(proc)
        if wait_ready:
            await proc.wait_ready()
        return proc

    yield start
    for proc in started:
        await proc.stop_and_verify()


@pytest.fixture
def netns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Runs the test again inside a network namespace that has only loopback (WebRTC and
    browser tests: no packet may leave the machine). The outer run returns True once the
    inner run passed (the test body then stops); the inner run returns False."""
    monkeypatch.setenv("BOTSTER_WEBRTC_LOOPBACK", "1")
    if os.environ.get("BOTSTER_IN_NETNS") == "1":
        return False
    script = 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider "$1"'
    proc = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", script, sys.executable, request.node.nodeid],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "BOTSTER_IN_NETNS": "1"},
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout, proc.stdout[-3000:]
    return True
