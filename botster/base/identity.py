"""Which repo a hub serves, its id (D10), and the one-hub-per-repo lock.

The hub id is the hex SHA-256 of the canonical repo path, so every tool on the machine derives
the same id for the same repo. The lock is an ``flock`` on a file in the runtime dir: the kernel
drops it when the process dies, so even a ``kill -9`` leaves nothing that blocks the next start.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from botster.base.errors import HubError
from botster.base.paths import Paths, ensure_private_dir

__all__ = ["HubLock", "find_repo_root", "hub_id_for", "socket_path_for"]


def find_repo_root(start: Path) -> Path:
    """The top of the git repository containing `start` (canonical path).

    Raises:
        HubError: `start` does not exist or is not inside a git repository.
    """
    if not start.exists():
        raise HubError(f"{start} does not exist")
    path = start.resolve()
    for candidate in (path, *path.parents):
        dot_git = candidate / ".git"
        if dot_git.is_file():
            return _main_worktree(candidate, dot_git)
        if dot_git.exists():
            return candidate
    raise HubError(
        f"{path} is not inside a git repository; run the hub in a repo or pass --repo PATH"
    )


def _main_worktree(candidate: Path, dot_git: Path) -> Path:
    """A linked worktree's main repository (one hub per repository, whichever worktree it
    starts in); a submodule, whose git dir has no ``commondir``, is its own repository."""
    try:
        text = dot_git.read_text().strip()
    except OSError:
        return candidate
    if not text.startswith("gitdir:"):
        return candidate
    gitdir = (candidate / text[len("gitdir:") :].strip()).resolve()
    try:
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    except OSError:
        return candidate
    return common.parent if common.name == ".git" else candidate


def hub_id_for(repo: Path) -> str:
    """Hex SHA-256 of the canonical repo path."""
    return hashlib.sha256(str(repo.resolve()).encode()).hexdigest()


def socket_path_for(paths: Paths, hub_id: str) -> Path:
    """The hub's Unix socket; short enough for the 108-byte sun_path limit."""
    return paths.runtime / f"{hub_id[:16]}.sock"


class HubLock:
    """Holds the one-hub-per-repo lock and the hub's registry entry while the hub runs."""

    def __init__(self, paths: Paths, hub_id: str) -> None:
        self.paths = paths
        self.hub_id = hub_id
        self.lock_file = paths.runtime / f"{hub_id[:16]}.lock"
        self.entry_file = paths.registry_dir / f"{hub_id}.json"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock and writes the registry entry.

        Raises:
            HubError: another hub holds the lock for this repo.
        """
        ensure_private_dir(self.paths.runtime)
        ensure_private_dir(self.paths.registry_dir)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise HubError(
                f"a hub is already running for {self.paths.repo} (pid {other}); "
                "attach to it with `botster attach` or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        entry = {
            "id": self.hub_id,
            "socket": str(socket_path_for(self.paths, self.hub_id)),
            "repo_path": str(self.paths.repo),
            "pid": os.getpid(),
        }
        tmp = self.entry_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
        os.replace(tmp, self.entry_file)

    def release(self) -> None:
        """Removes the registry entry (if still ours) and drops the lock."""
        try:
            entry = json.loads(self.entry_file.read_text())
            if entry.get("pid") == os.getpid():
                self.entry_file.unlink()
        except (OSError, ValueError):
            pass
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
