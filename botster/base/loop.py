"""Thread rules for the hub's event loop, spelled as decorators and helpers.

``@loop_only`` marks a function that must run on the loop thread. When ``BOTSTER_DEBUG`` is set
(every test run sets it) the decorator also checks the calling thread and fails with the
function's name. Other threads reach the loop only through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["loop_only", "set_loop_thread"]

F = TypeVar("F", bound=Callable[..., Any])

_loop_thread: int | None = None
_checking = bool(os.environ.get("BOTSTER_DEBUG"))


def set_loop_thread() -> None:
    """Records the calling thread as the hub's loop thread."""
    global _loop_thread
    _loop_thread = threading.get_ident()


def loop_only(fn: F) -> F:
    """Marks `fn` as loop-thread only; checked at call time in debug runs."""
    if not _checking:
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if _loop_thread is not None and threading.get_ident() != _loop_thread:
            raise RuntimeError(f"{fn.__qualname__} must run on the hub's loop thread")
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]
