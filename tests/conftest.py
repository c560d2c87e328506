"""Fixtures: an isolated environment, a real git repo, and real `botster hub` processes.

    isolated_env -> git_repo -> hub (factory) -> HubProcess

Nothing is mocked. The hub runs as a child process; tests talk to it through plugins (files in
the repo layer) and read its log. `HubProcess.wait_for` waits for a log line, never a sleep.
At teardown every hub is stopped with SIGTERM and must exit 0, leave no registry entry, and
its log must hold no error, slow step or traceback the test did not declare with `expect_log`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import settings

from tests.hubproc import HubProcess

# Example counts stay as each test sets them; only the per-example deadline goes, because a
# 2-core CI machine running hub processes beside hypothesis makes wall-clock deadlines flaky.
settings.register_profile("botster", deadline=None)
settings.load_profile("botster")

PLUGIN_FIXTURES = Path(__file__).parent / "plugins"


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """HOME, BOTSTER_HOME, BOTSTER_RUNTIME_DIR and XDG dirs under tmp; no proxies."""
    home = tmp_path / "home"
    home.mkdir()
    # Short runtime dir: Unix socket paths must stay under 108 bytes.
    runtime = Path(f"/tmp/bt-{os.getpid()}-{abs(hash(tmp_path)) % 10**8}")
    runtime.mkdir(mode=0o700)
    env = {
        "HOME": str(home),
        "BOTSTER_HOME": str(home / ".botster"),
        "BOTSTER_RUNTIME_DIR": str(runtime),
        "XDG_RUNTIME_DIR": str(runtime / "xdg"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "BOTSTER_DEBUG": "1",
        "PYTHONFAULTHANDLER": "1",
        "GIT_AUTHOR_NAME": "Botster Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Botster Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "BOTSTER_LOG",
    ):
        monkeypatch.delenv(key, raising=False)
    yield env
    _kill_sessions(runtime)
    shutil.rmtree(runtime, ignore_errors=True)


def _kill_sessions(runtime: Path) -> None:
    """Sessions outlive hubs by design; a test's leftovers are ended here."""
    import signal

    for record in (runtime / "sessions").glob("*.json"):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        for pid, group in ((info.get("child_pid"), True), (info.get("pid"), False)):
            if not isinstance(pid, int) or pid <= 0:
                continue
            try:
                if group:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def git_repo(tmp_path: Path, isolated_env: dict[str, str]) -> Path:
    """A real git repository with one commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README.md").write_text("test repo\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo


def write_plugin(repo: Path, name: str, source: str, *, layer: Path | None = None) -> Path:
    """Writes `<layer>/plugins/<name>/init.lua` (default layer: the repo's .botster)."""
    root = (layer or repo / ".botster") / "plugins" / name
    root.mkdir(parents=True, exist_ok=True)
    init = root / "init.lua"
    init.write_text(source)
    return init


@pytest.fixture
async def hub(git_repo: Path, isolated_env: dict[str, str]) -> AsyncIterator[Callable[..., object]]:
    """Factory: ``await hub(plugins={"name": "lua source"}, fixtures=["echo"])``.

    `fixtures` copies plugins from tests/plugins/<name>. Waits until the hub is ready.
    """
    started: list[HubProcess] = []

    async def start(
        plugins: dict[str, str] | None = None,
        fixtures: list[str] | None = None,
        *,
        repo: Path | None = None,
        config: dict[str, object] | None = None,
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
    ) -> HubProcess:
        target = repo or git_repo
        for name, source in (plugins or {}).items():
            write_plugin(target, name, source)
        for name in fixtures or []:
            shutil.copytree(
                PLUGIN_FIXTURES / name, target / ".botster" / "plugins" / name, dirs_exist_ok=True
            )
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
