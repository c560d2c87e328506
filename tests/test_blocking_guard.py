"""The blocking-call guard (botster/hub/blocking.py): known blocking calls on the loop thread
raise with the caller's file and line; other threads, descriptors and imports pass."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from botster.errors import BlockingCallError
from botster.hub import blocking


@pytest.fixture
def guarded(tmp_path):
    # Armed last, disarmed first: pytest's own machinery runs on this thread too.
    blocking.guard()
    yield
    blocking.unguard()


async def test_blocking_calls_on_the_loop_raise_with_the_callers_line(tmp_path, guarded):
    line = 0
    with pytest.raises(BlockingCallError) as sleep_error:
        line = _line_of_next()
        time.sleep(0)
    assert f"{__file__}:{line + 1}" in str(sleep_error.value)
    assert "time.sleep()" in str(sleep_error.value)
    with pytest.raises(BlockingCallError, match=r"open\(\)"):
        (tmp_path / "x").write_text("x")
    with pytest.raises(BlockingCallError, match=r"os\.listdir\(\)"):
        os.listdir(tmp_path)
    proc = await asyncio.create_subprocess_exec("true")
    await proc.wait()  # asyncio's own wait is fine


async def test_other_threads_descriptors_and_imports_pass(tmp_path, guarded):
    # The I/O pool is where blocking work belongs.
    await asyncio.to_thread(time.sleep, 0)
    await asyncio.to_thread((tmp_path / "y").write_text, "y")
    # Wrapping a descriptor that is already open waits for nothing.
    r, w = os.pipe()
    os.fdopen(w, "wb", 0).close()
    os.close(r)
    # Importing a module reads files inside the interpreter's import machinery.
    import importlib

    importlib.import_module("json.tool")


def test_unguard_restores_every_function(tmp_path):
    originals = (time.sleep, open, os.listdir, os.scandir)
    blocking.guard()
    assert time.sleep is not originals[0]
    blocking.unguard()
    assert (time.sleep, open, os.listdir, os.scandir) == originals
    threading.Thread(target=time.sleep, args=(0,)).start()


def _line_of_next() -> int:
    import sys

    return sys._getframe(1).f_lineno
