"""The ``timer`` primitive: ``after``, ``every``, ``cancel``.

Callbacks run as tasks of the plugin that created the timer. A repeating timer keeps its
schedule (ticks are due at start + n*interval) and never piles up: a tick that finds the
previous callback still running (waiting on HTTP, say), or that is already late by a whole
interval, is skipped rather than queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from botster.base.errors import ArgumentError
from botster.lua.api import LuaFunction, describe, lua_api
from botster.primitives.context import HubContext

__all__ = ["LUA", "active_count"]

MIN_INTERVAL = 0.001


@dataclass(eq=False)
class _Timer:
    id: str
    owner: str
    fn: Any
    interval: float | None  # None for one-shot
    due: float
    handle: Any = None
    running: int | None = None  # task id of a callback still suspended
    ticks: int = field(default=0)


class _State:
    """One hub's timers."""

    def __init__(self, hub: HubContext) -> None:
        self.timers: dict[str, _Timer] = {}
        self.next_id = 0


def active_count(hub: HubContext, owner: str | None = None) -> int:
    """How many timers `hub` has scheduled, for everyone or one owner (for leak checks)."""
    return sum(1 for t in hub.state(_State).timers.values() if owner is None or t.owner == owner)


def _check_seconds(seconds: float, positive: bool) -> float:
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ArgumentError(f"seconds: expected {kind} number, got {describe(seconds)}")
    return max(float(seconds), MIN_INTERVAL) if positive else float(seconds)


def _create(hub: HubContext, seconds: float, fn: Any, interval: float | None) -> str:
    state = hub.state(_State)
    state.next_id += 1
    owner = hub.host.current_owner()
    t = _Timer(f"timer_{state.next_id}", owner, fn, interval, hub.loop.time() + seconds)
    t.handle = hub.loop.call_at(t.due, _fire, hub, t)
    state.timers[t.id] = t
    hub.owners.add(owner, t.id, lambda: _stop(hub, t))
    return t.id


def _stop(hub: HubContext, t: _Timer) -> None:
    if t.handle is not None:
        t.handle.cancel()
    hub.state(_State).timers.pop(t.id, None)
    # The handle holds t and t held the handle: without this the callback (and all the Lua
    # memory it reaches) waited for Python's cycle collector.
    t.handle = t.fn = None


def _fire(hub: HubContext, t: _Timer) -> None:
    sched = hub.host.sched
    if t.interval is None:
        hub.state(_State).timers.pop(t.id, None)
        hub.owners.discard(t.owner, t.id)
        fn, t.fn, t.handle = t.fn, None, None  # a fired one-shot keeps nothing alive
        sched.start(t.owner, f"timer {t.id}", fn)
        return
    # Schedule the next tick first so the callback may cancel it.
    now = hub.loop.time()
    t.due += t.interval
    if t.due <= now:
        t.due += math.ceil((now - t.due) / t.interval) * t.interval
        if t.due <= now:
            t.due += t.interval
    t.handle = hub.loop.call_at(t.due, _fire, hub, t)
    if sched.is_pending(t.running):
        return  # the previous tick is still waiting on something: skip, don't pile up
    t.ticks += 1
    t.running = sched.start_tracked(t.owner, f"timer {t.id}", t.fn)


@lua_api
def after(hub: HubContext, seconds: float, fn: LuaFunction) -> str:
    """timer.after(seconds, fn) -> id

    Calls fn() once, `seconds` from now (0 = on the next loop turn). Raises on a negative or
    non-finite delay. Example: ``timer.after(0.5, function() log.info("later") end)``
    """
    return _create(hub, _check_seconds(seconds, positive=False), fn, None)


@lua_api
def every(hub: HubContext, seconds: float, fn: LuaFunction) -> str:
    """timer.every(seconds, fn) -> id

    Calls fn() every `seconds` (first call after one interval) until cancelled. Ticks that
    would overlap a still-running callback are skipped. Example:
    ``local id = timer.every(1, function() log.info("tick") end)``
    """
    interval = _check_seconds(seconds, positive=True)
    return _create(hub, interval, fn, interval)


@lua_api
def cancel(hub: HubContext, id: str) -> bool:
    """timer.cancel(id) -> bool

    Stops a timer; true if it was scheduled, false if unknown, fired (one-shot) or cancelled.
    Safe to call from inside the timer's own callback.
    """
    t = hub.state(_State).timers.get(id)
    if t is None:
        return False
    _stop(hub, t)
    hub.owners.discard(t.owner, t.id)
    return True


LUA = {"after": after, "every": every, "cancel": cancel}
WRONG_DOOR = {
    "set_timeout": "use timer.after(seconds, fn)",
    "set_interval": "use timer.every(seconds, fn)",
    "stop": "use timer.cancel(id)",
    "clear": "use timer.cancel(id)",
}
