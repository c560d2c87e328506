"""The ``watch`` primitive: ``watch.directory`` and ``watch.unwatch``.

Native OS events (inotify) by default, or mtime polling with ``poll = true`` (D3), both through
watchdog, which also reports renames as one event (watchfiles reports a delete and a create).
Watchdog delivers on its own threads; events reach the loop only through
``call_soon_threadsafe`` and run the callback as a task of the plugin that owns the watch.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, TypedDict

from botster.errors import ArgumentError
from botster.hub.context import current_hub
from botster.lua.api import describe, lua_api, options

__all__ = ["LUA", "active_count"]

log = logging.getLogger("hub")


class WatchOptions(TypedDict, total=False):
    recursive: bool
    pattern: str
    poll: bool
    poll_interval: float


_check_options = options(WatchOptions)


@dataclass(eq=False)
class _Watch:
    id: str
    owner: str
    root: str
    fn: Any
    pattern: str | None
    observer: Any
    handle: Any = None
    handler: Any = None


_watches: dict[str, _Watch] = {}
_observers: dict[float | None, Any] = {}  # poll interval (None = native) -> observer
_ids = itertools.count(1)
# Watchdog shares one ObservedWatch between handlers on the same path; unscheduling it would
# stop every watch on that path, so handlers are counted and removed one by one.
_handlers_per_handle: dict[Any, int] = {}  # ObservedWatch (hashed by path) -> count


def active_count() -> int:
    """How many watches are live (for leak checks)."""
    return len(_watches)


def _observer(poll_interval: float | None) -> Any:
    obs = _observers.get(poll_interval)
    if obs is None:
        # watchdog 7.1 logs "queue_events() called when the thread is inactive" at ERROR when
        # a watch is removed while its emitter thread is mid-read: a benign race on its side.
        logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
        if poll_interval is None:
            from watchdog.observers import Observer

            obs = Observer()
        else:
            from watchdog.observers.polling import PollingObserver

            obs = PollingObserver(timeout=poll_interval)
        obs.daemon = True
        obs.start()
        _observers[poll_interval] = obs
        if len(_observers) == 1:
            current_hub().on_close(_stop_observers)
    return obs


async def _stop_observers() -> None:
    hub = current_hub()
    observers = list(_observers.values())
    _observers.clear()
    for obs in observers:
        obs.stop()
    for obs in observers:
        await hub.run_blocking(obs.join, 2.0)


def _kind(event: Any) -> str | None:
    kind = event.event_type
    if kind == "created":
        return "create"
    if kind == "modified":
        # A directory "modified" only means an entry in it changed: that entry reports itself.
        return None if event.is_directory else "modify"
    if kind == "moved":
        return "rename"
    if kind == "deleted":
        return "delete"
    return None  # opened / closed / closed_no_write: not changes


def _matches(w: _Watch, path: str) -> bool:
    if w.pattern is None:
        return True
    rel = os.path.relpath(path, w.root)
    return fnmatch.fnmatch(os.path.basename(path), w.pattern) or fnmatch.fnmatch(rel, w.pattern)


class _Handler:
    """Watchdog handler for one watch; runs on a watchdog thread."""

    def __init__(self, watch_id: str, loop: Any) -> None:
        self.watch_id = watch_id
        self.loop = loop

    def dispatch(self, event: Any) -> None:
        kind = _kind(event)
        if kind is None:
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if kind == "rename" else None
        self.loop.call_soon_threadsafe(_deliver, self.watch_id, kind, src, dest, event.is_directory)


def _deliver(watch_id: str, kind: str, src: str, dest: str | None, is_dir: bool) -> None:
    w = _watches.get(watch_id)
    if w is None:
        return  # unwatched while the event was in flight
    path = dest if dest is not None else src
    if not (_matches(w, path) or (dest is not None and _matches(w, src))):
        return
    event: dict[str, Any] = {"path": path, "kind": kind, "watch_id": w.id, "is_dir": is_dir}
    if dest is not None:
        event["old_path"] = src
    hub = current_hub()
    hub.host.sched.start(w.owner, f"watch {w.id}", w.fn, hub.host.convert.to_lua(event))


def _stop(w: _Watch) -> None:
    _watches.pop(w.id, None)
    key = w.handle
    remaining = _handlers_per_handle.get(key, 1) - 1
    try:
        if remaining > 0:
            _handlers_per_handle[key] = remaining
            w.observer.remove_handler_for_watch(w.handler, w.handle)
        else:
            _handlers_per_handle.pop(key, None)
            w.observer.unschedule(w.handle)
    except (KeyError, ValueError):
        pass  # the observer already dropped it (its directory was deleted)


@lua_api
async def directory(path: str, opts: object = None, callback: object = None) -> Any:
    """watch.directory(path, opts?, callback) -> id | nil, err

    Calls callback(event) for each change under `path`; event = {path, kind, watch_id, is_dir,
    old_path (renames only)}, kind one of "create", "modify", "rename", "delete".
    opts: recursive (default true), pattern (glob on the file name, or on the path relative
    to `path` when it has a "/"), poll (default false: native events), poll_interval
    (seconds, default 2.0). A missing directory returns nil, err; bad arguments raise.
    Example: ``watch.directory("/tmp/x", {pattern = "*.lua"}, function(e) log.info(e.path) end)``
    """
    hub = current_hub()
    if callback is None and opts is not None and _is_function(opts):
        opts, callback = None, opts
    if not _is_function(callback):
        raise ArgumentError(f"callback: expected function, got {describe(callback)}")
    o = _check_options(opts, "opts", hub.host.convert) if opts is not None else {}
    interval = o.get("poll_interval", 2.0)
    if not interval > 0:
        raise ArgumentError(f"opts.poll_interval: expected a positive number, got {interval!r}")
    root = os.path.abspath(path)  # noqa: ASYNC240 -- getcwd only, no disk wait
    owner = hub.host.current_owner()
    observer = _observer(float(interval) if o.get("poll", False) else None)
    w = _Watch(f"watch_{next(_ids)}", owner, root, callback, o.get("pattern"), observer)
    w.handler = _Handler(w.id, hub.loop)
    # Scheduling walks the whole tree (inotify adds a watch per directory): off the loop.
    scheduled = asyncio.ensure_future(
        hub.run_blocking(_schedule, observer, w.handler, root, o.get("recursive", True))
    )
    try:
        w.handle = await asyncio.shield(scheduled)
    except asyncio.CancelledError:
        # The caller went away (its plugin unloaded) while the walk ran: undo it when done.
        scheduled.add_done_callback(lambda f: f.exception() or observer.unschedule(f.result()))
        raise
    except OSError as e:
        return None, f"watch.directory: {root}: {e.strerror or e}"
    _handlers_per_handle[w.handle] = _handlers_per_handle.get(w.handle, 0) + 1
    _watches[w.id] = w
    hub.owners.add(owner, w.id, lambda: _stop(w))
    return w.id


def _schedule(observer: Any, handler: _Handler, root: str, recursive: bool) -> Any:
    """Runs on the I/O pool: checks the directory and schedules the watch."""
    if not os.path.isdir(root):
        reason = "not a directory" if os.path.exists(root) else "no such directory"
        raise OSError(0, reason)
    return observer.schedule(handler, root, recursive=recursive)


def _is_function(value: Any) -> bool:
    from lupa import lua54

    return lua54.lua_type(value) == "function"


@lua_api
def unwatch(id: str) -> bool:
    """watch.unwatch(id) -> bool: stops a watch; false if unknown or already stopped."""
    w = _watches.get(id)
    if w is None:
        return False
    _stop(w)
    current_hub().owners.discard(w.owner, w.id)
    return True


LUA = {"directory": directory, "unwatch": unwatch}
WRONG_DOOR = {
    "file": "use watch.directory(dir, {pattern = 'name'}, fn)",
    "watch": "use watch.directory(path, opts, fn)",
    "stop": "use watch.unwatch(id)",
    "cancel": "use watch.unwatch(id)",
}
