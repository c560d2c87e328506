"""Starting a hub from the command line: resolve the repo, lock it, run the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from botster.hub.config import Config
from botster.hub.daemon import Hub
from botster.hub.identity import find_repo_root, hub_id_for
from botster.hub.paths import Paths, ensure_private_dir

__all__ = ["run_hub"]


def run_hub(start: Path) -> int:
    """Runs a hub for the repo containing `start` until it quits. Returns the exit code.

    Raises:
        HubError: no repo, a broken config.json, or a hub already running for this repo.
    """
    repo = find_repo_root(start)
    paths = Paths.for_repo(repo)
    ensure_private_dir(paths.home)  # 0700: what the hub keeps there is the user's alone
    ensure_private_dir(paths.runtime)
    config = Config.load_blocking(paths.config_file)
    hub = Hub(paths, config, hub_id_for(repo))
    hub.lock.acquire()
    try:
        import uvloop  # optional speed-up
    except ImportError:
        return asyncio.run(hub.run())
    return uvloop.run(hub.run())
