"""Blocking calls on the loop thread fail loudly, in tests and with the debug setting.

The hub's loop must never wait (docs/architecture.md, "The loop never stalls"), and a
blocking call is easy to write by accident: ``open`` in a primitive, ``time.sleep`` in a
retry, a subprocess ``wait``. Like Home Assistant's ``block_async_io``, ``guard()`` wraps the
well-known blocking functions so that, called on the loop thread, they raise
``BlockingCallError`` naming the caller's file and line. Other threads (``run_blocking``'s
pool) and imports (the interpreter reads module files itself) are let through.

It is switched on by ``BOTSTER_DEBUG`` (every test run sets it) or the ``debug_blocking_calls``
setting, and costs one thread-id comparison per wrapped call.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from botster.base.errors import BlockingCallError

__all__ = ["allowed", "guard", "unguard"]

_loop_thread: int | None = None
_originals: list[tuple[Any, str, Any]] = []
_guards = 0  # hubs in this process that asked for the guard (tests run several)
_allowed = 0  # depth of allowed() blocks
_HERE = __file__
_STDLIB = os.path.dirname(os.__file__)


def _caller() -> str:
    """file:line of the first frame outside this module and the standard library."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name != _HERE and not name.startswith(_STDLIB) and not name.startswith("<"):
            return f"{name}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


def _importing() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _wrap(owner: Any, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        # open(fd) wraps a descriptor that is already open: nothing to wait for.
        wraps_fd = label == "open()" and args and isinstance(args[0], int)
        on_loop = threading.get_ident() == _loop_thread and not _allowed
        if on_loop and not wraps_fd and not _importing():
            raise BlockingCallError(
                f"blocking call to {label} on the hub's event loop at {_caller()}: "
                "use hub.run_blocking (or an asyncio API) instead"
            )
        return original(*args, **kwargs)

    _originals.append((owner, attr, original))
    setattr(owner, attr, checked)


def _targets() -> tuple[tuple[Any, str, str], ...]:
    # Imported here: a hub that does not guard pays nothing for them at start.
    import http.client
    import socket
    import subprocess
    import time
    import urllib.request

    return (
        (time, "sleep", "time.sleep()"),
        (builtins, "open", "open()"),
        (io, "open", "open()"),
        (os, "listdir", "os.listdir()"),
        (os, "scandir", "os.scandir()"),
        (subprocess.Popen, "wait", "subprocess wait"),
        (subprocess.Popen, "communicate", "subprocess communicate"),
        (http.client.HTTPConnection, "connect", "a synchronous HTTP request"),
        (urllib.request, "urlopen", "urllib.request.urlopen()"),
        (socket, "create_connection", "socket.create_connection()"),
    )


def guard(loop_thread: int | None = None) -> None:
    """Makes the known blocking calls raise on `loop_thread` (default: the calling thread).

    Counted: each hub that calls it calls ``unguard`` once when it stops.
    """
    global _loop_thread, _guards
    _loop_thread = threading.get_ident() if loop_thread is None else loop_thread
    _guards += 1
    if not _originals:
        for owner, attr, label in _targets():
            _wrap(owner, attr, label)


def unguard() -> None:
    """Undoes one ``guard``; the last one restores every wrapped function."""
    global _loop_thread, _guards
    _guards = max(0, _guards - 1)
    if _guards:
        return
    _loop_thread = None
    while _originals:
        owner, attr, original = _originals.pop()
        setattr(owner, attr, original)


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Lets blocking calls through on the loop thread: a hub's own start-up and final
    clean-up, which run before and after it serves anything (another hub of the same
    process may be serving meanwhile)."""
    global _allowed
    _allowed += 1
    try:
        yield
    finally:
        _allowed -= 1
