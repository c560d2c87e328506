"""Sessions: each PTY lives in its own small process that outlives the hub.

    process.py   the session process (``python -m botster.sessions``) and its protocol
    client.py    the hub side: SessionClient, spawn_session, discover_sessions
    terminal.py  the screen model (pyavt, pyte fallback) and the OSC/BEL scanner
    ring.py      the bounded output buffer, addressed by offset
    heap.py      gives the heap a flood freed back to the kernel once output is quiet
    protocol.py  frame payloads and the spawn config
    files.py     where sessions live on disk

Names load on first use, so the session process does not import the hub-side client.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Output",
    "SessionClient",
    "SessionEvent",
    "SessionInfo",
    "Snapshot",
    "SpawnConfig",
    "Terminal",
    "discover_sessions",
    "discover_sessions_blocking",
    "make_terminal",
    "spawn_session",
]

_HOMES = {
    "Output": "client",
    "SessionClient": "client",
    "SessionEvent": "client",
    "Snapshot": "client",
    "discover_sessions": "client",
    "discover_sessions_blocking": "client",
    "spawn_session": "client",
    "SessionInfo": "files",
    "SpawnConfig": "protocol",
    "Terminal": "terminal",
    "make_terminal": "terminal",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'botster.sessions' has no attribute {name!r}")
    return getattr(importlib.import_module(f"botster.sessions.{home}"), name)
