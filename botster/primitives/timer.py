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

from botster.errors import ArgumentError
from botster.hub.context import current_hub
from botster.lua.api import LuaFunction, describe, lua_api

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


_timers: dict[str, _Timer] = {}
_next_id = 0


def active_count() -> int:
    """How many timers are scheduled (for leak checks)."""
    return len(_timers)


def _check_seconds(seconds: float, positive: bool) -> float:
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ArgumentError(f"seconds: expected {kind} number, got {describe(seconds)}")
    return max(float(seconds), MIN_INTERVAL) if positive else float(seconds)


def _create(seconds: float, fn: Any, interval: float | None) -> str:
    global _next_id
    hub = current_hub()
    _next_id += 1
    owner = hub.host.current_owner()
    t = _Timer(f"timer_{_next_id}", owner, fn, interval, hub.loop.time() + seconds)
    t.handle = hub.loop.call_at(t.due, _fire, t)
    _timers[t.id] = t
    hub.owners.add(owner, t.id, lambda: _stop(t))
    return t.id


def _stop(t: _Timer) -> None:
    if t.handle is not None:
        t.handle.cancel()
    _timers.pop(t.id, None)
    # The handle holds t and t held the handle: without this the callback (and all the Lua
    # memory it reaches) waited for Python's cycle collector.
    t.handle = t.fn = None


def _fire(t: _Timer) -> None:
    hub = current_hub()
    sched = hub.host.sched
    if t.interval is None:
        _timers.pop(t.id, None)
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
    t.handle = hub.loop.call_at(t.due, _fire, t)
    if sched.is_pending(t.running):
        return  # the previous tick is still waiting on something: skip, don't pile up
    t.ticks += 1
    t.running = sched.start_tracked(t.owner, f"timer {t.id}", t.fn)


@lua_api
def after(seconds: float, fn: LuaFunction) -> str:
    """timer.after(seconds, fn) -> id

    Calls fn() once, `seconds` from now (0 = on the next loop turn). Raises on a negative or
    non-finite delay. Example: ``timer.after(0.5, function() log.info("later") end)``
    """
    return _create(_check_seconds(seconds, positive=False), fn, None)


@lua_api
def every(seconds: float, fn: LuaFunction) -> str:
    """timer.every(seconds, fn) -> id

    Calls fn() every `seconds` (first call after one interval) until cancelled. Ticks that
    would overlap a still-running callback are skipped. Example:
    ``local id = timer.every(1, function() log.info("tick") end)``
    """
    interval = _check_seconds(seconds, positive=True)
    return _create(interval, fn, interval)


@lua_api
def cancel(id: str) -> bool:
    """timer.cancel(id) -> bool

    Stops a timer; true if it was scheduled, false if unknown, fired (one-shot) or cancelled.
    Safe to call from inside the timer's own callback.
    """
    t = _timers.get(id)
    if t is None:
        return False
    _stop(t)
    current_hub().owners.discard(t.owner, t.id)
    return True


LUA = {"after": after, "every": every, "cancel": cancel}
WRONG_DOOR = {
    "set_timeout": "use timer.after(seconds, fn)",
    "set_interval": "use timer.every(seconds, fn)",
    "stop": "use timer.cancel(id)",
    "clear": "use timer.cancel(id)",
}
