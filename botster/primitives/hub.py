"""The ``hub`` primitive: the hub's identity and control.

``hub.state``, ``hub.hooks`` and ``hub.loader`` are embedded Lua modules attached to this
table by ``hub/init.lua``.
"""

from __future__ import annotations

from botster.hub.context import current_hub
from botster.lua.api import lua_api

__all__ = ["LUA"]


@lua_api
def hub_id() -> str:
    """hub.hub_id() -> string: hex SHA-256 of this hub's repo path (same as hub_discovery)."""
    return current_hub().hub_id


@lua_api
def quit() -> None:
    """hub.quit(): stops the hub cleanly once the current callback returns.

    Every listener of the `shutdown` event and hook runs first; agents' sessions are kept.
    """
    hub = current_hub()
    hub.loop.call_soon(hub.quit)


LUA = {"hub_id": hub_id, "quit": quit}
WRONG_DOOR = {"id": "use hub.hub_id()", "exit": "use hub.quit()", "stop": "use hub.quit()"}
