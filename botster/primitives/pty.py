"""The ``pty`` primitive: programs in terminals that outlive the hub (D6).

``pty.spawn(config)`` starts a session process (``botster.sessions``) that owns the PTY, and
returns a handle (``pty.lua`` beside this file builds it) with ``write``, ``kill``,
``resize``, ``is_alive``, ``port``, ``pid``, ``id``, ``snapshot``, ``text`` and ``close``.
Sessions belong to the hub, not to the plugin that spawned them: reloading a plugin never
kills a program; ``handle:close()`` does. After a hub restart, ``pty.list()`` and
``pty.get(id)`` reach the sessions that kept running. Exit and terminal signals arrive as
events and hooks (see ``botster.sessions.manager``).
"""

from __future__ import annotations

from typing import Any, TypedDict

from botster.base.errors import ArgumentError, SessionError
from botster.lua.api import FENCE, lua_api
from botster.primitives.context import HubContext
from botster.sessions.manager import HubSession

__all__ = ["LUA"]


class SpawnOptions(TypedDict, total=False):
    cmd: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    rows: int
    cols: int
    port_forward: bool
    labels: dict[str, str]


def _session(hub: HubContext, fname: str, sid: str) -> HubSession | tuple[None, str]:
    s = hub.sessions.get(sid)
    if s is None:
        return None, f"pty.{fname}: no session {sid}"
    return s


@lua_api(creates=True)
async def _spawn(hub: HubContext, config: SpawnOptions) -> Any:
    """(pty.lua builds the handle around the id this returns.)"""
    if "cmd" not in config:
        raise ArgumentError("config.cmd: expected string, got nil")
    rows, cols = config.get("rows", 24), config.get("cols", 80)
    for name, value in (("rows", rows), ("cols", cols)):
        if not 1 <= value <= 1000:
            raise ArgumentError(f"config.{name}: expected an integer from 1 to 1000, got {value}")
    spawn = {
        "cmd": config["cmd"],
        "args": config.get("args", []),
        "env": config.get("env", {}),
        "rows": rows,
        "cols": cols,
    }
    if "cwd" in config:
        spawn["cwd"] = config["cwd"]
    labels = {**config.get("labels", {}), "owner": hub.host.current_owner()}
    try:
        s = await hub.sessions.spawn(
            spawn, labels, config.get("port_forward", False), fence=FENCE.get()
        )
    except SessionError as e:
        return None, f"pty.spawn: {e}"
    return s.info()


@lua_api
def _write(hub: HubContext, sid: str, data: bytes) -> Any:
    s = _session(hub, "write", sid)
    if isinstance(s, tuple):
        return s
    if not s.running:
        return None, f"pty.write: session {sid} has exited"
    s.client.write(data)
    return True


@lua_api
def _resize(hub: HubContext, sid: str, rows: int, cols: int) -> Any:
    s = _session(hub, "resize", sid)
    if isinstance(s, tuple):
        return s
    for name, value in (("rows", rows), ("cols", cols)):
        if not 1 <= value <= 1000:
            raise ArgumentError(f"{name}: expected an integer from 1 to 1000, got {value}")
    s.client.resize(rows, cols)
    return True


@lua_api
def _kill(hub: HubContext, sid: str) -> Any:
    s = _session(hub, "kill", sid)
    if isinstance(s, tuple):
        return s
    if s.running:
        s.client.kill()
    return True


@lua_api
async def _close(hub: HubContext, sid: str) -> Any:
    s = hub.sessions.get(sid)
    if s is None:
        return False
    await hub.sessions.close(s)
    return True


@lua_api
def _info(hub: HubContext, sid: str) -> Any:
    s = hub.sessions.get(sid)
    return s.info() if s is not None else None


@lua_api
async def _snapshot(hub: HubContext, sid: str) -> Any:
    s = _session(hub, "snapshot", sid)
    if isinstance(s, tuple):
        return s
    try:
        snap = await s.client.snapshot()
    except (SessionError, ConnectionError, TimeoutError) as e:
        return None, f"pty.snapshot: {sid}: {e}"
    return {
        "data": snap.data,
        "rows": snap.rows,
        "cols": snap.cols,
        "cursor_row": snap.cursor_row,
        "cursor_col": snap.cursor_col,
        "cursor_visible": snap.cursor_visible,
        "alt_screen": snap.alt_screen,
        "title": snap.title,
        "cwd": snap.cwd,
    }


@lua_api
async def _text(hub: HubContext, sid: str) -> Any:
    s = _session(hub, "text", sid)
    if isinstance(s, tuple):
        return s
    try:
        return await s.client.text()
    except (SessionError, ConnectionError, TimeoutError) as e:
        return None, f"pty.text: {sid}: {e}"


@lua_api
def list(hub: HubContext) -> Any:  # noqa: A001 - the spec's name
    """pty.list() -> {{id, pid, labels, running, exit_code, signal, port, title, cwd, ...}...}

    Every session of this hub, including those adopted after a restart. ``title`` and ``cwd``
    are the program's last (OSC 0/2, OSC 7; nil if never set). ``missed_attention`` is true
    for a session adopted after a restart whose program rang the bell or sent a notification
    while no hub was connected.
    """
    return [s.info() for s in hub.sessions.sessions.values()]


LUA = {
    "_spawn": _spawn,
    "_write": _write,
    "_resize": _resize,
    "_kill": _kill,
    "_close": _close,
    "_info": _info,
    "_snapshot": _snapshot,
    "_text": _text,
    "list": list,
}
WRONG_DOOR = {
    "write": "call handle:write(data) on the handle pty.spawn returned",
    "kill": "call handle:kill() on the handle pty.spawn returned",
    "resize": "call handle:resize(rows, cols) on the handle pty.spawn returned",
    "open": "use pty.spawn(config)",
}
