"""Starting a hub in the background and waiting until it answers (`botster start`, `make run`)."""

from __future__ import annotations

import sys
from pathlib import Path

from botster.base.errors import HubError

__all__ = ["HUB_START_TIMEOUT_S", "hub_ready_blocking", "start_hub_blocking"]

HUB_START_TIMEOUT_S = 30.0
# The supervisors started here outlive this process on purpose; holding their Popen objects
# keeps them from being collected (and warning that their process still runs).
_detached: list[object] = []


def hub_ready_blocking(socket_path: str, timeout: float = 1.0) -> bool:
    """Whether a hub answers a ping on `socket_path` (its Lua side is up)."""
    import asyncio

    from botster.transports.client import HubConnection

    async def ping() -> bool:
        try:
            async with asyncio.timeout(timeout):
                conn = await HubConnection.connect(socket_path, "botster-cli")
                try:
                    await conn.request("ping")
                finally:
                    await conn.close()
        except Exception:
            return False
        return True

    return asyncio.run(ping())


def start_hub_blocking(repo: Path) -> dict[str, object]:
    """Starts `botster hub --supervised` for `repo`, detached, and waits until it answers.

    What stays behind is the supervisor (``botster.hub.supervisor``), which restarts the hub
    if it dies or wedges. It gets its own session (closing the terminal does not stop it) and
    writes its log, and the hub's, to ``$BOTSTER_RUNTIME_DIR/hub-<id16>.log``.

    Raises:
        HubError: the hub exited or did not come up in time.
    """
    import subprocess
    import time

    from botster.base.identity import hub_id_for
    from botster.base.paths import ensure_private_dir, hub_log_file, runtime_dir
    from botster.base.registry import find_hub_for

    runtime = ensure_private_dir(runtime_dir())
    log_path = hub_log_file(hub_id_for(repo), runtime)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "botster.cli", "hub", "--supervised", "--repo", str(repo)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            cwd=repo,
            start_new_session=True,
        )
    _detached.append(proc)
    deadline = time.monotonic() + HUB_START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise HubError(
                f"the hub exited with code {code} while starting; its log ({log_path}):\n"
                + "\n".join(tail)
            )
        entry = find_hub_for(repo)
        # The entry names the supervisor's child, not `proc`: any hub that answers is ours
        # (the repo lock lets only one run).
        if entry and hub_ready_blocking(str(entry["socket"])):
            return entry
        time.sleep(0.1)  # the CLI's own thread: waiting for another process
    raise HubError(f"the hub did not answer within {HUB_START_TIMEOUT_S:.0f} s; see {log_path}")
