"""The ``watch`` primitive: ``watch.directory`` and ``watch.unwatch``.

Native OS events (inotify) by default, or mtime polling with ``poll = true`` (D3), both through
watchdog, which also reports renames as one event (watchfiles reports a delete and a create).
Watchdog delivers on its own threads; events reach the loop only through
``call_soon_threadsafe`` and run the callback as a task of the plugin that owns the watch.

Saves by rename are reported where the file lands (``_Handler.translate``): ``fs.write`` and
editors write a temp file and rename it over the target, so a rename onto a path that held a
file is a ``modify`` there, a rename out of a temp file (``fs.write``'s own, or an editor's
``*~``, ``*.tmp``, ``*.swp``, ``*.part``) a ``create``, and ``fs.write``'s temp file is never
reported. Polling sees a replaced file as deleted and created again: that is a ``modify``
too. To tell a replace from a new file the handler keeps the set of paths under the watch.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, TypedDict

from botster.base.errors import ArgumentError
from botster.lua.api import describe, lua_api, options
from botster.primitives.context import HubContext
from botster.primitives.fs import TEMP_NAME

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


_ids = itertools.count(1)


class _State:
    """One hub's watches and watchdog observers."""

    def __init__(self, hub: HubContext) -> None:
        self.watches: dict[str, _Watch] = {}
        self.observers: dict[float | None, Any] = {}  # poll interval (None = native) -> observer
        # Watchdog shares one ObservedWatch between handlers on the same path; unscheduling it
        # would stop every watch on that path, so handlers are counted and removed one by one.
        self.handlers_per_handle: dict[Any, int] = {}  # ObservedWatch (hashed by path) -> count


def active_count(hub: HubContext, owner: str | None = None) -> int:
    """How many watches `hub` has live, for everyone or one owner (for leak checks)."""
    return sum(1 for w in hub.state(_State).watches.values() if owner is None or w.owner == owner)


def _observer(hub: HubContext, poll_interval: float | None) -> Any:
    observers = hub.state(_State).observers
    obs = observers.get(poll_interval)
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
        observers[poll_interval] = obs
        if len(observers) == 1:
            hub.on_close(functools.partial(_stop_observers, hub))
    return obs


async def _stop_observers(hub: HubContext) -> None:
    state = hub.state(_State)
    observers = list(state.observers.values())
    state.observers.clear()
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


_EDITOR_TEMP = (".tmp", ".swp", ".swx", ".part", "~")


def _is_temp(path: str) -> bool:
    name = os.path.basename(path)
    return bool(TEMP_NAME.match(name)) or name.endswith(_EDITOR_TEMP)


class _Handler:
    """Watchdog handler for one watch; runs on a watchdog thread (one per observer)."""

    def __init__(self, watch_id: str, hub: HubContext) -> None:
        self.watch_id = watch_id
        self.hub = hub
        # Every path under the watch (from the walk at scheduling, then kept by the events):
        # whether a rename replaced a file. Touched only on the observer's thread.
        self.known: set[str] = set()

    def translate(self, event: Any) -> tuple[str, str, str | None] | None:
        """(kind, path, old_path) as the callback sees it, or None to stay silent."""
        kind = _kind(event)
        if kind is None:
            return None
        src = os.fsdecode(event.src_path)
        known = self.known
        if kind == "rename":
            dest = os.fsdecode(event.dest_path)
            known.discard(src)
            replaced = dest in known
            known.add(dest)
            if replaced:
                return "modify", dest, None if TEMP_NAME.match(os.path.basename(src)) else src
            if _is_temp(src):
                return "create", dest, None if TEMP_NAME.match(os.path.basename(src)) else src
            return "rename", dest, src
        if TEMP_NAME.match(os.path.basename(src)):
            return None
        if kind == "delete":
            if os.path.lexists(src):
                # Already back (polling's view of a rename over it): the create that follows
                # is reported as the modify it is.
                return None
            known.discard(src)
        elif kind == "create":
            if src in known:
                kind = "modify"
            known.add(src)
        return kind, src, None

    def dispatch(self, event: Any) -> None:
        translated = self.translate(event)
        if translated is None:
            return
        kind, path, old = translated
        self.hub.loop.call_soon_threadsafe(
            _deliver, self.hub, self.watch_id, kind, path, old, event.is_directory
        )


def _deliver(
    hub: HubContext, watch_id: str, kind: str, path: str, old: str | None, is_dir: bool
) -> None:
    w = hub.state(_State).watches.get(watch_id)
    if w is None:
        return  # unwatched while the event was in flight
    if not (_matches(w, path) or (old is not None and _matches(w, old))):
        return
    event: dict[str, Any] = {"path": path, "kind": kind, "watch_id": w.id, "is_dir": is_dir}
    if old is not None:
        event["old_path"] = old
    hub.host.sched.start(w.owner, f"watch {w.id}", w.fn, hub.host.convert.to_lua(event))


def _stop(hub: HubContext, w: _Watch) -> None:
    state = hub.state(_State)
    state.watches.pop(w.id, None)
    key = w.handle
    remaining = state.handlers_per_handle.get(key, 1) - 1
    try:
        if remaining > 0:
            state.handlers_per_handle[key] = remaining
            w.observer.remove_handler_for_watch(w.handler, w.handle)
        else:
            state.handlers_per_handle.pop(key, None)
            w.observer.unschedule(w.handle)
    except (KeyError, ValueError):
        pass  # the observer already dropped it (its directory was deleted)


@lua_api
async def directory(
    hub: HubContext, path: str, opts: object = None, callback: object = None
) -> Any:
    """watch.directory(path, opts?, callback) -> id | nil, err

    Calls callback(event) for each change under `path`; event = {path, kind, watch_id, is_dir,
    old_path (renames only)}, kind one of "create", "modify", "rename", "delete".
    A file saved by rename (fs.write, editors: a temp file renamed over the target) is a
    "modify" at its path if it replaced one, else a "create"; fs.write's temp file is never
    reported. Native and polling watches report the same kinds.
    opts: recursive (default true), pattern (glob on the file name, or on the path relative
    to `path` when it has a "/"), poll (default false: native events), poll_interval
    (seconds, default 2.0). A missing directory returns nil, err; bad arguments raise.
    Example: ``watch.directory("/tmp/x", {pattern = "*.lua"}, function(e) log.info(e.path) end)``
    """
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
    observer = _observer(hub, float(interval) if o.get("poll", False) else None)
    w = _Watch(f"watch_{next(_ids)}", owner, root, callback, o.get("pattern"), observer)
    w.handler = _Handler(w.id, hub)
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
    state = hub.state(_State)
    state.handlers_per_handle[w.handle] = state.handlers_per_handle.get(w.handle, 0) + 1
    state.watches[w.id] = w
    hub.owners.add(owner, w.id, lambda: _stop(hub, w))
    return w.id


def _schedule(observer: Any, handler: _Handler, root: str, recursive: bool) -> Any:
    """Runs on the I/O pool: checks the directory, lists what is there, schedules the watch."""
    if not os.path.isdir(root):
        reason = "not a directory" if os.path.exists(root) else "no such directory"
        raise OSError(0, reason)
    known = handler.known
    for top, dirs, files in os.walk(root):
        known.update(os.path.join(top, n) for n in files)
        known.update(os.path.join(top, n) for n in dirs)
        if not recursive:
            break
    return observer.schedule(handler, root, recursive=recursive)


def _is_function(value: Any) -> bool:
    from lupa import lua54

    return lua54.lua_type(value) == "function"


@lua_api
def unwatch(hub: HubContext, id: str) -> bool:
    """watch.unwatch(id) -> bool: stops a watch; false if unknown or already stopped."""
    w = hub.state(_State).watches.get(id)
    if w is None:
        return False
    _stop(hub, w)
    hub.owners.discard(w.owner, w.id)
    return True


LUA = {"directory": directory, "unwatch": unwatch}
WRONG_DOOR = {
    "file": "use watch.directory(dir, {pattern = 'name'}, fn)",
    "watch": "use watch.directory(path, opts, fn)",
    "stop": "use watch.unwatch(id)",
    "cancel": "use watch.unwatch(id)",
}
