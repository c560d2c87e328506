"""Where session processes live on disk, and how they are found again.

Layout, in ``<runtime_dir>/sessions/`` (0700):

* ``<session_id>.sock``: the session's Unix socket (0600).
* ``<session_id>.json``: the discovery record ``{id, pid, child_pid, socket, started_at, cmd,
  cwd}``, written atomically once the session is ready and removed when it exits. ``pid`` is
  the session process, ``child_pid`` the program in the PTY (``started_at`` is ISO-8601 UTC).
* ``<session_id>.spawn.json``: a spawn config on its way from the hub (0600, short-lived; the
  hub removes it once the session answered).

Everything here blocks on the file system; the hub calls it through its blocking doorway.
Not here: the socket protocol (``protocol.py``) and the processes themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botster.base.errors import SessionError
from botster.base.paths import ensure_private_dir

__all__ = [
    "SESSION_MALLOC_ENV",
    "SessionInfo",
    "info_path",
    "read_info",
    "remove_quietly",
    "sessions_dir",
    "socket_path",
    "write_json_atomic",
]

_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL


@dataclass(frozen=True)
class SessionInfo:
    """One live session as its discovery record describes it."""

    id: str
    pid: int
    child_pid: int
    socket: Path
    started_at: str
    cmd: list[str]
    cwd: str
    labels: dict[str, str]


def sessions_dir(runtime_dir: Path | str, *, create: bool = False) -> Path:
    """``<runtime_dir>/sessions``; with ``create``, made (0700) if missing."""
    path = Path(runtime_dir) / "sessions"
    if create:
        ensure_private_dir(path)
    return path


def socket_path(runtime_dir: Path | str, session_id: str) -> Path:
    """The session's socket path.

    Raises:
        SessionError: the path does not fit in a Unix socket address.
    """
    path = sessions_dir(runtime_dir) / f"{session_id}.sock"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise SessionError(
            f"socket path {path} is longer than {_MAX_SOCKET_PATH} bytes; "
            "set BOTSTER_RUNTIME_DIR to a shorter directory"
        )
    return path


def info_path(runtime_dir: Path | str, session_id: str) -> Path:
    """The session's discovery record."""
    return sessions_dir(runtime_dir) / f"{session_id}.json"


def write_json_atomic(path: Path, value: Any) -> None:
    """Writes JSON to a 0600 temp file next to ``path``, then renames it over ``path``."""
    # Not tempfile.mkstemp: tempfile imports shutil, random, bz2 and lzma, ~0.8 MB of every
    # session process's memory for one file name.
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_quietly(path: Path) -> None:
    """Unlinks ``path``; a missing file is fine."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_info(path: Path) -> SessionInfo | None:
    """Parses a discovery record; None when it is unreadable or malformed."""
    try:
        raw = json.loads(path.read_text())
        return SessionInfo(
            id=str(raw["id"]),
            pid=int(raw["pid"]),
            child_pid=int(raw["child_pid"]),
            socket=Path(raw["socket"]),
            started_at=str(raw["started_at"]),
            cmd=[str(c) for c in raw["cmd"]],
            cwd=str(raw["cwd"]),
            labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


# glibc maps blocks over 128 KiB with mmap and hands freed heap back to the kernel past 128 KiB.
# On a flood the terminal model (avt) allocates and frees a 1-2 MiB block as it scrolls (at
# 200 columns), and 64 KiB reads make the top of the heap come and go: the session spent most of
# its time in page faults (profiled on `yes`: 68% kernel time, 2.4 M faults per 100 MB; with
# these, 27 k). No top pad: it costs an idle session ~0.15 MB and saves no faults. The session
# process keeps its heap; its child does not inherit these.
# (Here, not in process.py, so the hub that spawns sessions does not import their insides.)
SESSION_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(4 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(8 << 20),
}
