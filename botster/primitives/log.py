"""The ``log`` primitive: plugin logging, tagged with the plugin that logged.

Lines go to the hub's log (stderr) as ``LEVEL plugin [owner] message``; the last 200 lines of
each plugin are kept for ``recent`` (the hub panel and debugging tools read them).
"""

from __future__ import annotations

import logging
import math
from collections import deque

from botster.hub.context import HubContext
from botster.lua.api import lua_api

__all__ = ["LUA", "recent"]

_log = logging.getLogger("plugin")
RING_SIZE = 200


class _State:
    """One hub's recent lines per owner."""

    def __init__(self, hub: HubContext) -> None:
        self.rings: dict[str, deque[tuple[str, str]]] = {}


def _number_text(n: float) -> str:
    """A number as Lua's ``tostring`` shows it (``1.5``, ``1e+15``, ``3.0``, ``inf``)."""
    if isinstance(n, int):
        return str(n)
    if math.isnan(n):
        return "nan"
    if math.isinf(n):
        return "inf" if n > 0 else "-inf"
    text = f"{n:.14g}"
    return text if any(c in text for c in ".en") else text + ".0"


def _emit(hub: HubContext, level: int, msg: str | float) -> None:
    owner = hub.host.current_owner()
    text = msg if isinstance(msg, str) else _number_text(msg)
    hub.state(_State).rings.setdefault(owner, deque(maxlen=RING_SIZE)).append(
        (logging.getLevelName(level), text)
    )
    _log.log(level, "[%s] %s", owner, text)


@lua_api
def recent(hub: HubContext, owner: str) -> list[dict[str, str]]:
    """log.recent(owner) -> {{level, message}...}

    The last lines (at most 200) one plugin logged, oldest first; `level` is "INFO",
    "WARNING", "ERROR" or "DEBUG". An owner that never logged gives an empty table. The hub
    panel of the terminal UI reads them through the `plugins.log` command.
    Example: ``for _, l in ipairs(log.recent("my_plugin")) do print(l.level, l.message) end``
    """
    return [
        {"level": level, "message": text} for level, text in hub.state(_State).rings.get(owner, ())
    ]


@lua_api
def info(hub: HubContext, msg: str | float) -> None:
    """log.info(msg): logs at info level. `msg` is a string (numbers are accepted)."""
    _emit(hub, logging.INFO, msg)


@lua_api
def warn(hub: HubContext, msg: str | float) -> None:
    """log.warn(msg): logs at warning level."""
    _emit(hub, logging.WARNING, msg)


@lua_api
def error(hub: HubContext, msg: str | float) -> None:
    """log.error(msg): logs at error level (it does not raise)."""
    _emit(hub, logging.ERROR, msg)


@lua_api
def debug(hub: HubContext, msg: str | float) -> None:
    """log.debug(msg): logs at debug level (shown with BOTSTER_LOG=debug)."""
    _emit(hub, logging.DEBUG, msg)


LUA = {"info": info, "warn": warn, "error": error, "debug": debug, "recent": recent}
WRONG_DOOR = {"warning": "use log.warn(msg)", "print": "use log.info(msg)"}
