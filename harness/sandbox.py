"""An isolated environment for a hub: its own HOME, Botster dirs, git identity, no proxies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from botster.base.pids import pid_alive as process_alive

__all__ = [
    "PROXY_VARS",
    "hub_socket",
    "init_git_repo",
    "kill_sessions",
    "process_alive",
    "sandbox_env",
    "session_records",
    "write_plugin",
]

PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


def sandbox_env(home: Path, runtime: Path, *, debug: bool, who: str = "Test") -> dict[str, str]:
    """The variables that put a hub in the sandbox `home` + `runtime` (runtime must be short:
    Unix socket paths stay under 108 bytes). `debug` sets BOTSTER_DEBUG (thread and
    blocking-call checks); benchmarks leave it off to run the hub as users do."""
    env = {
        "HOME": str(home),
        "BOTSTER_HOME": str(home / ".botster"),
        "BOTSTER_RUNTIME_DIR": str(runtime),
        "XDG_RUNTIME_DIR": str(runtime / "xdg"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "GIT_AUTHOR_NAME": f"Botster {who}",
        "GIT_AUTHOR_EMAIL": f"{who.lower()}@example.invalid",
        "GIT_COMMITTER_NAME": f"Botster {who}",
        "GIT_COMMITTER_EMAIL": f"{who.lower()}@example.invalid",
    }
    if debug:
        env["BOTSTER_DEBUG"] = "1"
        env["PYTHONFAULTHANDLER"] = "1"
    return env


def init_git_repo(path: Path, env: dict[str, str] | None = None) -> Path:
    """A real git repository at `path` with one commit (README.md)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("test repo\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(argv, cwd=path, env=env, check=True)
    return path


def write_plugin(repo: Path, name: str, source: str, *, layer: Path | None = None) -> Path:
    """Writes `<layer>/plugins/<name>/init.lua` (default layer: the repo's .botster).

    Atomically (temp file + rename, as editors save): a watcher never sees a truncated file, so a
    running hub reloads the new source once instead of an empty plugin first.
    """
    root = (layer or repo / ".botster") / "plugins" / name
    root.mkdir(parents=True, exist_ok=True)
    init = root / "init.lua"
    tmp = root / "init.lua.tmp"
    tmp.write_text(source)
    os.replace(tmp, init)
    return init


def hub_socket(runtime: Path) -> Path:
    """The socket of the live hub registered under `runtime`."""
    for entry in sorted((runtime / "hubs").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(entry.read_text())
            if process_alive(int(data["pid"])):
                return Path(data["socket"])
    raise RuntimeError(f"no live hub registered under {runtime / 'hubs'}")


def session_records(runtime: Path) -> list[dict[str, Any]]:
    """The discovery records of the sessions started under `runtime` (live or not)."""
    out = []
    for path in sorted((runtime / "sessions").glob("*.json")):
        if path.name.endswith(".spawn.json"):
            continue
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


def kill_sessions(runtime: Path, grace: float = 0.0) -> int:
    """Ends every session process under `runtime` and its program; returns how many.

    Sessions outlive hubs by design, so a test's or benchmark's leftovers end here. With a
    `grace`, SIGTERM first (a session then hangs up its program and removes its files).
    """
    records = session_records(runtime)
    pids = [int(r["pid"]) for r in records if process_alive(int(r.get("pid", 0)))]
    if grace > 0:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for r in records:
        child = int(r.get("child_pid", 0))
        # The program leads its own process group (start_new_session); only signal a group
        # that still has that leader, so a reused pid is never hit.
        with contextlib.suppress(OSError):
            if child > 0 and os.getpgid(child) == child:
                os.killpg(child, signal.SIGKILL)
    return len(pids)
