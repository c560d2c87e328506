"""Starting a hub from the command line: resolve the repo, lock it, run the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from botster.base.config import Config
from botster.base.cpu import request_short_slice
from botster.base.identity import find_repo_root, hub_id_for
from botster.base.paths import Paths, ensure_private_dir
from botster.hub.daemon import Hub

__all__ = ["run_hub"]


def _raise_fd_limit() -> None:
    """Lifts the soft limit on open files to the hard one: every client and session costs a
    descriptor, and ``socket_max_clients`` should be what refuses clients, not EMFILE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run_hub(start: Path) -> int:
    """Runs a hub for the repo containing `start` until it quits. Returns the exit code.

    Raises:
        HubError: no repo, a broken config.json, or a hub already running for this repo.
    """
    _raise_fd_limit()
    repo = find_repo_root(start)
    paths = Paths.for_repo(repo)
    ensure_private_dir(paths.home)  # 0700: what the hub keeps there is the user's alone
    ensure_private_dir(paths.runtime)
    config = Config.load_blocking(paths.config_file)
    hub = Hub(paths, config, hub_id_for(repo))
    hub.lock.acquire()
    why = request_short_slice()  # this thread runs the loop (see botster/base/cpu.py)
    if why is not None:
        logging.getLogger("hub").debug("the hub keeps the default scheduler slice: %s", why)
    try:
        import uvloop  # optional speed-up
    except ImportError:
        return asyncio.run(hub.run())
    return uvloop.run(hub.run())
