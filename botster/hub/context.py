"""The running hub, for primitives: ``current_hub()``.

One hub runs per process, and primitives are module-level functions (so ``fs.read`` greps to
``def read``); they reach the hub's loop, Lua host and owners through this accessor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botster.hub.daemon import Hub

__all__ = ["current_hub", "set_current_hub"]

_hub: Hub | None = None


def set_current_hub(hub: Hub | None) -> None:
    global _hub
    _hub = hub


def current_hub() -> Hub:
    """The hub running in this process."""
    if _hub is None:
        raise RuntimeError("no hub is running in this process")
    return _hub
