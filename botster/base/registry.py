"""The registry of running hubs on this machine: ``$BOTSTER_RUNTIME_DIR/hubs/<id>.json``.

Each running hub writes its entry ``{id, socket, repo_path, pid}`` at start and removes it at
exit (``identity.HubLock``). A hub killed with ``kill -9`` cannot remove it, so readers check
that the pid is alive and clean up entries (and sockets) of dead hubs as they go. Used by the
``hub_discovery`` primitive, ``botster list`` and ``botster mcp-serve``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from botster.base.identity import find_repo_root, hub_id_for
from botster.base.paths import runtime_dir
from botster.base.pids import pid_alive

__all__ = ["find_hub_for", "live_hubs_blocking", "pid_alive"]


def _read(entry: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    return data


def live_hubs_blocking(runtime: Path | None = None) -> list[dict[str, Any]]:
    """Every live hub's entry ``{id, socket, repo_path, pid}``, sorted by repo path.

    Entries of dead hubs are removed, with their socket files.
    """
    hubs_dir = (runtime or runtime_dir()) / "hubs"
    out = []
    try:
        entries = sorted(hubs_dir.glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        data = _read(entry)
        if data is not None and pid_alive(data["pid"]):
            out.append({k: data.get(k) for k in ("id", "socket", "repo_path", "pid")})
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
        if data is not None and isinstance(data.get("socket"), str):
            with contextlib.suppress(OSError):
                Path(data["socket"]).unlink()
    return sorted(out, key=lambda h: str(h["repo_path"]))


def find_hub_for(start: Path, runtime: Path | None = None) -> dict[str, Any] | None:
    """The live hub serving the repository containing `start`, if any."""
    try:
        wanted = hub_id_for(find_repo_root(start))
    except Exception:
        return None
    for entry in live_hubs_blocking(runtime):
        if entry["id"] == wanted:
            return entry
    return None
