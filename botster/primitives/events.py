"""The ``events`` primitive: the hub's event bus, shared by Lua and Python.

The bus itself is Lua (``events.lua`` beside this file) so an ``events.emit`` with no listener
never leaves Lua. Python emits into the same bus with ``Hub.emit``. Each listener runs as its
own task, in registration order, so one failing or waiting listener never stops the others.
"""

from __future__ import annotations

__all__ = ["LUA"]

LUA: dict[str, object] = {}
WRONG_DOOR = {
    "subscribe": "use events.on(event, fn)",
    "unsubscribe": "use events.off(id)",
    "fire": "use events.emit(event, data)",
    "trigger": "use events.emit(event, data)",
}
