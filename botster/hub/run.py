"""Starting a hub from the command line: resolve the repo, lock it, run the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botster.base.config import Config
from botster.base.identity import find_repo_root, hub_id_for
from botster.base.paths import Paths
from botster.hub.daemon import Hub

__all__ = ["run_hub"]


def run_hub(start: Path) -> int:
    """Runs a hub for the repo containing `start` until it quits. Returns the exit code.

    Raises:
        HubError: no repo, a broken config.json, or a hub already running for this repo.
    """
    repo = find_repo_root(start)
    paths = Paths.for_repo(repo)
    config = Config.load_blocking(paths.config_file)
    hub = Hub(paths, config, hub_id_for(repo))
    hub.lock.acquire()
    try:
        import uvloop  # optional speed-up
    except ImportError:
        return asyncio.run(hub.run())
    return uvloop.run(hub.run())
