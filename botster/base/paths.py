"""Where Botster keeps things on disk, and nothing else.

* device layer (plugins, lua overrides, config.json, secrets): ``$BOTSTER_HOME`` or
  ``~/.botster``
* sockets, lock files, hub registry: ``$BOTSTER_RUNTIME_DIR``, else
  ``$XDG_RUNTIME_DIR/botster``, else ``/tmp/botster-<uid>`` (0700)
* repo layer (wins on name collisions): ``<repo>/.botster``
* agents' worktrees: ``$BOTSTER_WORKTREE_BASE`` or ``~/botster-sessions``, one directory per
  repository name
* the log of a hub ``botster start`` launched: ``<runtime dir>/hub-<first 16 of its id>.log``
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from botster.base.errors import HubError

__all__ = [
    "ForeignDirError",
    "Paths",
    "botster_home",
    "ensure_private_dir",
    "hub_log_file",
    "runtime_dir",
    "worktree_base",
]

DEFAULT_WORKTREE_DIR = "botster-sessions"


def botster_home() -> Path:
    """The device layer: ``$BOTSTER_HOME`` or ``~/.botster``."""
    env = os.environ.get("BOTSTER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".botster"


def runtime_dir() -> Path:
    """Where sockets, locks and the hub registry live (not created here)."""
    env = os.environ.get("BOTSTER_RUNTIME_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "botster"
    return Path(f"/tmp/botster-{os.getuid()}")


def worktree_base() -> str:
    """Where agents' worktrees go: ``$BOTSTER_WORKTREE_BASE`` or ``~/botster-sessions``."""
    env = os.environ.get("BOTSTER_WORKTREE_BASE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), DEFAULT_WORKTREE_DIR)


def hub_log_file(hub_id: str, runtime: Path | None = None) -> Path:
    """Where a hub that ``botster start`` launched writes its log."""
    return (runtime or runtime_dir()) / f"hub-{hub_id[:16]}.log"


class ForeignDirError(HubError, PermissionError):
    """A directory Botster must own belongs to another user."""


def ensure_private_dir(path: Path) -> Path:
    """Creates `path` (and parents) and makes it 0700; refuses one owned by someone else.

    Raises:
        ForeignDirError: `path` belongs to another user (a HubError: the CLI prints it).
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ForeignDirError(
            f"{path} belongs to another user (uid {st.st_uid}, you are {os.getuid()}); "
            "point BOTSTER_RUNTIME_DIR (or BOTSTER_HOME) at a directory of your own"
        )
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


@dataclass(frozen=True)
class Paths:
    """Every path one hub uses, derived from its repo and the environment."""

    repo: Path
    home: Path
    runtime: Path

    @classmethod
    def for_repo(cls, repo: Path) -> Paths:
        return cls(repo=repo, home=botster_home(), runtime=runtime_dir())

    @property
    def repo_layer(self) -> Path:
        return self.repo / ".botster"

    @property
    def config_file(self) -> Path:
        return self.home / "config.json"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def lua_dir(self) -> Path:
        """Device-layer Lua overrides and the user entry point ``user/init.lua``."""
        return self.home / "lua"

    @property
    def registry_dir(self) -> Path:
        """One JSON entry per running hub (see ``hub_discovery``)."""
        return self.runtime / "hubs"

    def plugin_dirs(self) -> list[tuple[str, Path]]:
        """Plugin layers, lowest priority first: ("device", ...), ("repo", ...)."""
        return [("device", self.home / "plugins"), ("repo", self.repo_layer / "plugins")]

    def override_dirs(self) -> list[Path]:
        """``require`` override directories, highest priority first."""
        return [self.repo_layer / "lua", self.lua_dir]
