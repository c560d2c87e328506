"""``ListenerSet``: the Lua callbacks behind a primitive's ``on_*`` functions.

Every ``on_*`` of a client-facing primitive (``socket.on_message``, ``tui.on_connected``...)
adds a listener; each is owned by the plugin that added it (released when it unloads), and a
dispatch starts every listener as its own task of its owner, so one that fails or waits
touches no other.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["ListenerSet"]

_ids = itertools.count(1)


class _Hub(Protocol):
    """What listeners need of their hub (``HubContext`` has it): ownership and the Lua host."""

    host: Any

    def own(self, key: str, release: Callable[[], object]) -> str: ...


class ListenerSet:
    """The listeners of one ``on_*`` function of one hub.

    Args:
        hub: the hub the listeners live in.
        prefix: listener ids read ``<prefix>_<n>`` (e.g. ``socket_message``).
    """

    def __init__(self, hub: _Hub, prefix: str) -> None:
        self._hub = hub
        self._prefix = prefix
        self._fns: dict[str, tuple[str, Any]] = {}  # id -> (owner, Lua function)

    def add(self, fn: Any) -> str:
        """Adds a listener for the calling plugin, released with it. Returns its id."""
        key = f"{self._prefix}_{next(_ids)}"
        owner = self._hub.own(key, lambda: self._fns.pop(key, None))
        self._fns[key] = (owner, fn)
        return key

    def dispatch(self, label: str, *args: Any) -> None:
        """Starts every listener with `args` (converted to Lua) as a task of its owner."""
        if not self._fns:
            return
        convert = self._hub.host.convert
        self.dispatch_lua(label, *[convert.to_lua(a) for a in args])

    def dispatch_lua(self, label: str, *lua_args: Any) -> None:
        """Like ``dispatch`` with arguments already converted (a large message, say)."""
        sched = self._hub.host.sched
        for owner, fn in list(self._fns.values()):
            sched.start(owner, label, fn, *lua_args)

    def __len__(self) -> int:
        return len(self._fns)
