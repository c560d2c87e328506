"""Sessions and hubs from the outside: list every session on the machine, end some, stop a hub.

Sessions outlive their hub by design (the next hub adopts them), so a hub that is gone for
good leaves *orphans*: sessions whose ``hub_id`` label names no running hub. ``botster
sessions`` lists them all and ends the ones asked for; ``botster stop`` stops a hub and,
when asked, its sessions. Everything here works from the discovery records and the hub
registry under the runtime directory, with signals: no hub needs to be running.

Ending a session is SIGTERM to the session process, which hangs up its program (SIGHUP,
then SIGTERM to the program's group, as a closing terminal does) and removes its files; a
session that is still there after the grace gets SIGKILL, and so does its program's group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from botster.base.pids import pid_alive
from botster.base.registry import live_hubs_blocking
from botster.sessions.client import discover_sessions_blocking
from botster.sessions.files import SessionInfo

__all__ = ["end_sessions_blocking", "session_rows_blocking", "stop_hub_blocking"]

POLL_S = 0.05


def session_rows_blocking(
    runtime: Path | None = None, hub_id: str | None = None
) -> list[dict[str, Any]]:
    """Every live session (only `hub_id`'s when given), as rows for people and ``--json``.

    Each row: ``id``, ``pid`` (the session process), ``child_pid`` (its program), ``hub_id``,
    ``hub_running``, ``orphaned`` (its hub is not running), ``kind``, ``agent_key``, ``cmd``,
    ``cwd``, ``started_at``, ``labels``.
    """
    live = {h["id"] for h in live_hubs_blocking(runtime)}
    rows = []
    for info in discover_sessions_blocking(runtime):
        owner = info.labels.get("hub_id", "")
        if hub_id is not None and owner != hub_id:
            continue
        rows.append(
            {
                "id": info.id,
                "pid": info.pid,
                "child_pid": info.child_pid,
                "hub_id": owner,
                "hub_running": owner in live,
                "orphaned": owner not in live,
                "kind": info.labels.get("kind", ""),
                "agent_key": info.labels.get("agent_key", ""),
                "cmd": info.cmd,
                "cwd": info.cwd,
                "started_at": info.started_at,
                "labels": info.labels,
            }
        )
    return rows


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Waits until the processes are gone; returns those still alive after `timeout`."""
    left = [p for p in pids if pid_alive(p)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)  # another process exits; there is nothing to await
        left = [p for p in left if pid_alive(p)]
    return left


def end_sessions_blocking(
    sessions: Iterable[SessionInfo | dict[str, Any]], grace: float = 5.0
) -> int:
    """Ends sessions and their programs; returns how many were running."""
    targets = [
        (s.pid, s.child_pid) if isinstance(s, SessionInfo) else (int(s["pid"]), int(s["child_pid"]))
        for s in sessions
    ]
    targets = [(pid, child) for pid, child in targets if pid_alive(pid)]
    for pid, _ in targets:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    stubborn = set(_wait_gone([pid for pid, _ in targets], grace))
    for pid, child in targets:
        if pid in stubborn:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        # The program leads its own process group; signal it only while that leader lives,
        # so a reused pid is never hit.
        with contextlib.suppress(OSError):
            if child > 0 and os.getpgid(child) == child:
                os.killpg(child, signal.SIGKILL)
    return len(targets)


def stop_hub_blocking(entry: dict[str, Any], timeout: float = 20.0) -> bool:
    """Stops a running hub (SIGTERM: plugins stop, sessions keep running); whether it exited."""
    pid = int(entry["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return not _wait_gone([pid], timeout)
