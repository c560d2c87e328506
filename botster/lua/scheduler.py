"""The Python half of the task scheduler (the Lua half is ``scheduler.lua``).

A Lua task that calls an ``async def`` primitive yields the awaitable; this class awaits it on
the event loop and resumes the task with the result. Nothing else waits, so a task that waits
on a slow server suspends only itself. Suspended tasks are tracked by owner so unloading a
plugin cancels what it was waiting for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from lupa import lua54

from botster.base.loop import loop_only

__all__ = ["Fence", "Scheduler"]

log = logging.getLogger("lua")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Fence:
    """Holds callbacks about objects a task is creating until the task has run on.

    A primitive that creates something and waits while doing so (``pty.spawn``) must not let
    its caller miss the object's events: ``spawn(a); spawn(b); events.on(...)`` sees `a`'s
    exit even when `a` exits while `b` starts. So the caller's task gets a fence, the object
    sends its signals through ``run``, and the fence holds them while the task waits in
    creating calls and until it next waits on anything else or ends, as if every creating
    call had returned at once. Then the held calls run, in order, on the loop.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: list[tuple[Callable[..., Any], tuple[Any, ...]]] | None = []

    @property
    def holding(self) -> bool:
        return self._held is not None

    def run(self, fn: Callable[..., Any], *args: Any) -> None:
        """Calls ``fn(*args)`` now, or when the fence releases if it still holds."""
        if self._held is None:
            fn(*args)
        else:
            self._held.append((fn, args))

    def release(self) -> None:
        held, self._held = self._held, None
        for fn, args in held or ():
            try:
                fn(*args)
            except Exception:
                log.exception("a held callback failed")


class Scheduler:
    """Drives Lua tasks: starts them, resumes them when what they wait for is done.

    Args:
        lua_sched: the table returned by ``scheduler.lua``.
        raise_marker: the Lua RAISE sentinel (an error result for a waiting task).
        plugin_log: where task errors and slow steps are reported.
        lift_cap: lifts the Lua memory cap (from Python: it cannot fail).
        collect: Lua's ``collectgarbage``.
    """

    def __init__(
        self,
        lua_sched: Any,
        raise_marker: Any,
        plugin_log: logging.Logger,
        lift_cap: Callable[[], Any],
        collect: Any,
    ) -> None:
        self._lua = lua_sched
        self._start = lua_sched[b"start_py"]
        self._step = lua_sched[b"step"]
        self._drop = lua_sched[b"drop"]
        self._fault_reset = lua_sched[b"fault_reset"]
        self._lift_cap = lift_cap
        self._collect = collect
        self._tokens = itertools.count(1)
        # task id -> called with the reason when that task is lost before it ends (on_lost)
        self._on_lost: dict[int, Callable[[str], None]] = {}
        self._fence_current = lua_sched[b"fence_current"]
        self._fences: dict[int, Fence] = {}  # task id -> its fence while it holds
        self._raise = raise_marker
        self._plog = plugin_log
        # task id -> (owner, asyncio task or handle driving its resumption)
        self._pending: dict[int, tuple[str, asyncio.Task[Any] | asyncio.Handle]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # The bridge scheduler.lua calls -------------------------------------------------------

    def _on_await(self, task_id: int, owner: bytes, awaitable: Any) -> None:
        owner_s = _text(owner)
        task = asyncio.ensure_future(self._resume_after(task_id, awaitable))
        self._pending[task_id] = (owner_s, task)
        self._idle.clear()

    def _on_yield(self, task_id: int, owner: bytes) -> None:
        handle = asyncio.get_running_loop().call_soon(self._resume_now, task_id)
        self._pending[task_id] = (_text(owner), handle)
        self._idle.clear()

    def _on_release(self, task_id: int) -> None:
        fence = self._fences.pop(task_id, None)
        if fence is not None:
            # Not from inside the settling step: the held calls may start Lua tasks.
            asyncio.get_running_loop().call_soon(fence.release)

    def _on_error(self, owner: bytes, label: bytes, message: bytes) -> None:
        owner_s = _text(owner)
        text = _text(message)
        self._plog.error("[%s] error in %s: %s", owner_s, _text(label), text)

    def _on_slow(self, owner: bytes, label: bytes, ms: float) -> None:
        self._plog.warning("[%s] slow Lua step: %s took %.0f ms", _text(owner), _text(label), ms)

    # Resumption ---------------------------------------------------------------------------

    async def _resume_after(self, task_id: int, awaitable: Any) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("a primitive failed while task %s waited", task_id)
            result = (self._raise, f"internal error: {e!r}".encode())
        self._pending.pop(task_id, None)
        self._step_safely(task_id, result if isinstance(result, tuple) else (result,))

    def _resume_now(self, task_id: int) -> None:
        self._pending.pop(task_id, None)
        self._step_safely(task_id, ())

    def _recover(self, task_id: int | None = None) -> tuple[int | None, bool]:
        """After a Lua fault escaped to Python (e.g. LuaMemoryError at the cap): lifts the cap,
        resets scheduler.lua's view of it and runs a full collection, so the next call into
        Lua does not fail for what a plugin left behind. Returns the last start token that
        reached Lua and whether `task_id` is still suspended there."""
        self._lift_cap()
        token, suspended = self._fault_reset(task_id)
        self._collect(b"collect")
        return token, bool(suspended)

    def _step_safely(self, task_id: int, values: tuple[Any, ...]) -> None:
        try:
            try:
                status = self._step(task_id, *values)
            except lua54.LuaMemoryError:
                # A fault at the entry (the task not resumed): collect and retry once.
                _, suspended = self._recover(task_id)
                if not suspended:
                    raise
                log.warning(
                    "Lua memory was full when resuming task %s; collected, retrying", task_id
                )
                status = self._step(task_id, *values)
        except Exception as e:
            # Only a fault outside any coroutine lands here; the task cannot be resumed
            # consistently, so it is dropped (and whoever depends on it is told).
            log.exception("resuming Lua task %s failed; task dropped", task_id)
            self._recover()
            self._drop(task_id)
            self._lost(task_id, f"resuming it failed ({e!r})")
        else:
            status = _text(status)
            if status in ("error", "gone"):
                self._lost(task_id, "it ended with an error (see above)")
            elif status == "done":
                self._on_lost.pop(task_id, None)
        if not self._pending:
            self._idle.set()

    def _lost(self, task_id: int, why: str) -> None:
        callback = self._on_lost.pop(task_id, None)
        if callback is not None:
            callback(why)

    def _start_task(
        self, owner: str, label: str, fn: Any, args: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        token = next(self._tokens)
        try:
            return self._start(token, owner.encode(), label.encode(), fn, *args)
        except lua54.LuaMemoryError:
            # A fault at the entry, before the task started: collect and retry once. One
            # after it started is the task's own (the plugin's code may already have run).
            started, _ = self._recover()
            if started == token:
                raise
            log.warning(
                "[%s] Lua memory was full when starting %s; collected, retrying", owner, label
            )
            return self._start(next(self._tokens), owner.encode(), label.encode(), fn, *args)

    # Public -------------------------------------------------------------------------------

    @loop_only
    def start(
        self,
        owner: str,
        label: str,
        fn: Any,
        *args: Any,
        on_lost: Callable[[str], None] | None = None,
    ) -> str:
        """Runs Lua function `fn(*args)` as a new task of `owner` until it waits or ends.

        Returns the task's status: "done", "await", "yield" or "error". `on_lost(reason)` is
        called if the task ends in an error or is dropped before it ends (the hub's boot
        task: the hub cannot run without it).
        """
        try:
            status, task_id = self._start_task(owner, label, fn, args)
        except Exception as e:
            log.exception("[%s] could not start %s", owner, label)
            self._recover()
            if on_lost is not None:
                on_lost(f"it could not start ({e!r})")
            return "error"
        status = _text(status)
        if on_lost is not None:
            if status == "error":
                on_lost("it ended with an error (see above)")
            elif status in ("await", "yield"):
                self._on_lost[task_id] = on_lost
        return status

    @loop_only
    def start_tracked(self, owner: str, label: str, fn: Any, *args: Any) -> int | None:
        """Like ``start`` but returns the task id while the task is still suspended."""
        try:
            _, task_id = self._start_task(owner, label, fn, args)
        except Exception:
            log.exception("[%s] could not start %s", owner, label)
            self._recover()
            return None
        return task_id if task_id in self._pending else None

    @loop_only
    def fence(self) -> Fence | None:
        """The running task's creation fence, marking its coming wait as a creating one
        (call it from the Lua call, not from an async body); None outside any task."""
        task_id = self._fence_current()
        if task_id is None:
            return None
        fence = self._fences.get(task_id)
        if fence is None:
            fence = self._fences[task_id] = Fence()
        return fence

    def is_pending(self, task_id: int | None) -> bool:
        """Whether the task is suspended (waiting on something or yielded)."""
        return task_id is not None and task_id in self._pending

    async def wait_idle(self) -> None:
        """Waits until no task is suspended (bound it with ``asyncio.timeout``)."""
        await self._idle.wait()

    def pending_count(self, owner: str | None = None) -> int:
        """How many tasks are suspended, for everyone or for one owner."""
        if owner is None:
            return len(self._pending)
        return sum(1 for o, _ in self._pending.values() if o == owner)

    @loop_only
    def cancel_owner(self, owner: str) -> int:
        """Cancels every suspended task of `owner`; they are never resumed."""
        ids = [tid for tid, (o, _) in self._pending.items() if o == owner]
        for tid in ids:
            _, waiter = self._pending.pop(tid)
            self._on_lost.pop(tid, None)
            waiter.cancel()
            self._drop(tid)
        if not self._pending:
            self._idle.set()
        return len(ids)

    @loop_only
    def cancel_all(self) -> None:
        """Cancels every suspended task (hub shutdown)."""
        for owner in {o for o, _ in self._pending.values()}:
            self.cancel_owner(owner)
