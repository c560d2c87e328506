"""Gives a session process's freed heap back to the kernel once its output has gone quiet.

A session keeps its heap during a flood (``files.SESSION_MALLOC_ENV``: returning it after
every burst made a flood spend its time in page faults), so after one it holds what the flood
freed: ~6 MB after a `yes` flood at 200 columns (USS 28 -> 22 MB with a trim). ``HeapTrimmer``
counts output and, once enough has passed and none has come for a while, calls glibc's
``malloc_trim(0)`` (which also releases free pages inside the heap). ``ctypes`` is imported on
the first trim only (~0.15 MB): a session that never floods never pays for it. Elsewhere than
glibc the trim does nothing.

Not here: when the session reads output (``process.py`` calls ``output`` per read).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

__all__ = ["HeapTrimmer", "trim_heap"]

QUIET_S = 5.0  # no output for this long counts as quiet
MIN_BYTES = 8 << 20  # output since the last trim that makes another one worth it

_malloc_trim: Any = None


def trim_heap() -> bool:
    """Returns freed heap to the kernel (glibc ``malloc_trim(0)``); False where there is none."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = False
        with contextlib.suppress(Exception):  # no ctypes, no glibc: nothing to trim
            import ctypes

            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes = [ctypes.c_size_t]
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


class HeapTrimmer:
    """Trims the heap once ``min_bytes`` of output were followed by ``quiet_s`` of none.

    Args:
        loop: the session's event loop.
        quiet_s: seconds without output before trimming.
        min_bytes: output since the last trim that arms the next one.
        trim: what trims (default ``trim_heap``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        quiet_s: float = QUIET_S,
        min_bytes: int = MIN_BYTES,
        trim: Callable[[], object] = trim_heap,
    ) -> None:
        self._loop = loop
        self._quiet_s = quiet_s
        self._min_bytes = min_bytes
        self._trim = trim
        self._bytes = 0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def output(self, n: int) -> None:
        """Called per read of ``n`` output bytes (cheap: a flood calls it thousands of times
        a second)."""
        self._bytes += n
        if self._bytes >= self._min_bytes:
            self._last = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_later(self._quiet_s, self._check)

    def close(self) -> None:
        """Cancels a pending trim."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        # One timer per quiet period, not one per read: it looks again if output came since.
        quiet = self._loop.time() - self._last
        if quiet < self._quiet_s:
            self._timer = self._loop.call_later(self._quiet_s - quiet, self._check)
            return
        self._timer = None
        self._bytes = 0
        self._trim()
