"""The one wait: a condition checked on every loop turn until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    what: str,
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
) -> Any:
    """Returns the first truthy value of `predicate()` (sync or async).

    For state that announces no event (a process list, an SDK's buffer, the hub's API):
    anything that does announce one is awaited directly instead.

    Raises:
        AssertionError: naming `what` after `timeout` seconds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
