"""Ownership: what each plugin holds, so unloading it releases everything.

Every resource a primitive creates for Lua (a timer, a watch, an HTTP request in flight, a
websocket...) is recorded against the owner that created it, with the function that releases
it. ``release(owner)`` runs those newest first. Lua-side registrations (events, hooks, MCP
tools) are released by the Lua loader through the same call (see ``hub/loader.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from botster.base.loop import loop_only

__all__ = ["Owners"]

log = logging.getLogger("lua")

Release = Callable[[], object]


class Owners:
    """Per-owner registry of release functions."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, Release]] = {}

    @loop_only
    def add(self, owner: str, key: str, release: Release) -> None:
        """Records that `owner` holds resource `key`, freed by calling `release`."""
        self._held.setdefault(owner, {})[key] = release

    @loop_only
    def discard(self, owner: str, key: str) -> bool:
        """Forgets resource `key` (it was stopped on purpose). True if it was held."""
        held = self._held.get(owner)
        if held is None or key not in held:
            return False
        del held[key]
        if not held:
            del self._held[owner]
        return True

    def owners(self) -> list[str]:
        """Every owner holding something."""
        return list(self._held)

    @loop_only
    def release(self, owner: str) -> int:
        """Releases everything `owner` holds, newest first. Returns how many were released."""
        held = self._held.pop(owner, {})
        for key, release in reversed(list(held.items())):
            try:
                release()
            except Exception:
                log.exception("[%s] releasing %s failed", owner, key)
        return len(held)
