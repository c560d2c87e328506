"""The ``hub_discovery`` primitive: the hubs running on this machine (D5).

Reads the registry in ``$BOTSTER_RUNTIME_DIR/hubs`` (``botster.hub.registry``) off the loop;
entries of hubs that died without cleaning up are removed as they are found.
"""

from __future__ import annotations

from typing import Any

from botster.hub.context import HubContext
from botster.hub.identity import socket_path_for
from botster.hub.registry import live_hubs_blocking
from botster.lua.api import lua_api

__all__ = ["LUA"]


@lua_api
async def list(hub: HubContext) -> Any:  # noqa: A001 - the spec's name
    """hub_discovery.list() -> {{id, socket, repo_path, pid}...}

    Every live hub on this machine (this one included), sorted by repo path.
    Example: ``for _, h in ipairs(hub_discovery.list()) do log.info(h.repo_path) end``
    """
    return await hub.run_blocking(live_hubs_blocking, hub.paths.runtime)


@lua_api
async def is_running(hub: HubContext, hub_id: str) -> bool:
    """hub_discovery.is_running(hub_id) -> bool: whether that hub is alive."""
    hubs = await hub.run_blocking(live_hubs_blocking, hub.paths.runtime)
    return any(h["id"] == hub_id for h in hubs)


@lua_api
def socket_path(hub: HubContext, hub_id: str) -> str:
    """hub_discovery.socket_path(hub_id) -> string

    Where that hub's socket is (or would be); it may not exist if the hub is not running.
    """
    return str(socket_path_for(hub.paths, hub_id))


LUA = {"list": list, "is_running": is_running, "socket_path": socket_path}
WRONG_DOOR = {"find": "use hub_discovery.list() and match repo_path"}
