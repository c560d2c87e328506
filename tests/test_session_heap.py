"""The session's heap trimmer (``botster/sessions/heap.py``): a real event loop, real glibc."""

from __future__ import annotations

import asyncio
import platform

import pytest

from botster.sessions.heap import HeapTrimmer, trim_heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_calls_glibc():
    assert trim_heap() is True
    assert trim_heap() is True  # the second call reuses the function it found


async def test_a_trim_follows_enough_output_and_then_quiet():
    loop = asyncio.get_running_loop()
    trims: list[float] = []
    trimmed = asyncio.Event()

    def trim() -> None:
        trims.append(loop.time())
        trimmed.set()

    heap = HeapTrimmer(loop, quiet_s=0.05, min_bytes=1000, trim=trim)
    heap.output(600)  # not enough output yet: nothing is armed
    assert heap._timer is None
    heap.output(600)
    await asyncio.sleep(0.03)  # more output within the quiet time postpones the trim
    heap.output(10)
    last = loop.time()
    await asyncio.wait_for(trimmed.wait(), 5)
    assert len(trims) == 1 and trims[0] >= last + 0.05
    # The count starts again: a little output after the trim arms nothing.
    heap.output(999)
    assert heap._timer is None
    heap.output(1)
    assert heap._timer is not None
    heap.close()
    assert heap._timer is None
