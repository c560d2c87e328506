"""The ``config`` primitive: the device configuration, environment variables and places.

Owns the Lua face of ``$BOTSTER_HOME/config.json``: ``get`` and ``all`` read the hub's
in-memory copy (``hub.config.data``, loaded at start-up); ``set`` persists one top-level key
through ``Config.set_blocking`` (atomic, flocked) on the I/O pool. How the file is read,
locked and written lives in ``botster/hub/config.py``; where things are, in
``botster/hub/paths.py``.

Values are JSON data: strings, numbers (integers stay integers), booleans, arrays and
string-keyed tables. A hub setting (a key the hub itself reads, such as ``lua_step_budget``;
see ``HUB_SETTINGS`` in ``botster/hub/config.py``) is checked before it is written, so a bad
value can never stop the next hub from starting; the hub reads its settings at start-up, so a
change applies on restart.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
from typing import Any

from botster.errors import ArgumentError, HubError
from botster.hub.config import HUB_SETTINGS
from botster.hub.context import HubContext
from botster.lua.api import lua_api

__all__ = ["LUA"]


# One config.set at a time in this hub: writes land in call order and the in-memory copy
# always ends up as the file's newest content.
class _State:
    def __init__(self, hub: HubContext) -> None:
        self.write_lock = asyncio.Lock()


def _shown(value: Any) -> str:
    """A Python value as an error message shows it, in Lua words."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "string"
    if isinstance(value, (dict, list)):
        return "table"
    return "nil" if value is None else type(value).__name__


def _check_json(value: Any, where: str) -> None:
    """Raises ArgumentError unless `value` (already converted from Lua) is JSON data."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentError(
                f"{where}: expected JSON data (no NaN or infinity), got {_shown(value)}"
            )
        return
    if isinstance(value, list):
        for i, item in enumerate(value, 1):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ArgumentError(
                    f"{where}: table keys must be strings (or 1..n for an array), "
                    f"got key {_shown(k)}"
                )
            _check_json(item, f"{where}.{k}")
        return
    raise ArgumentError(f"{where}: expected JSON data, got {_shown(value)}")


@lua_api
def get(hub: HubContext, key: str) -> Any:
    """config.get(key) -> value | nil

    The value of top-level `key` in ``$BOTSTER_HOME/config.json``, or nil when it is not set.
    Tables come back as fresh copies (changing them changes nothing). Raises when `key` is not
    a string. Example: ``local port = config.get("my_plugin_port") or 8080``
    """
    return hub.config.data.get(key)


@lua_api
def all(hub: HubContext) -> dict[str, Any]:
    """config.all() -> table

    Every top-level key and value of the configuration, as a fresh table (``{}`` when the file
    is empty or missing). Example: ``for k, v in pairs(config.all()) do log.info(k) end``
    """
    return dict(hub.config.data)


@lua_api
async def set(hub: HubContext, key: str, val: Any = None) -> bool | tuple[None, str]:
    """config.set(key, val) -> true | nil, err

    Sets top-level `key` to `val` and writes ``$BOTSTER_HOME/config.json`` atomically (temp
    file, fsync, rename, under a file lock shared with other hubs). ``config.set(key, nil)``
    removes the key. `val` must be JSON data: no functions, no NaN or infinity, table keys all
    strings (or an array 1..n). Hub settings are range-checked; they apply at the next start.
    Returns true once the file is written, or nil, err if it cannot be (the file holds
    invalid JSON, the disk is read-only...); then nothing changes. Raises on a non-string or
    empty `key` or a `val` that is not JSON data.
    Example: ``assert(config.set("my_plugin", {enabled = true, names = {"a", "b"}}))``
    """
    if not key:
        raise ArgumentError("key: expected a non-empty string, got an empty string")
    _check_json(val, "val")
    if val is not None and key in HUB_SETTINGS:
        _, check, what = HUB_SETTINGS[key]
        if not check(val):
            raise ArgumentError(f"val: {key} must be {what}, got {_shown(val)}")
    path = hub.config.path
    async with hub.state(_State).write_lock:
        try:
            await hub.run_blocking(hub.config.set_blocking, key, val)
        except OSError as e:
            reason = e.strerror or str(e)
            reason = reason[:1].lower() + reason[1:]
            code = errno.errorcode.get(e.errno) if isinstance(e.errno, int) else None
            return None, f"config.set: {path}: {reason}" + (f" ({code})" if code else "")
        except HubError as e:  # the file on disk is not a JSON object: never overwrite it
            return None, f"config.set: {e}"
    return True


@lua_api
def env(name: str) -> str | None:
    """config.env(name) -> string | nil

    The hub process's environment variable `name`, or nil when it is not set.
    Example: ``local token = config.env("GITHUB_TOKEN")``
    """
    return os.environ.get(name)


@lua_api
def lua_path(hub: HubContext) -> str:
    """config.lua_path() -> string

    The device-layer Lua directory, ``$BOTSTER_HOME/lua``: ``require`` looks there after the
    repo's ``.botster/lua``, and the user entry point is ``user/init.lua`` inside it.
    Example: ``fs.listdir(config.lua_path())``
    """
    return str(hub.paths.lua_dir)


@lua_api
def data_dir(hub: HubContext) -> str:
    """config.data_dir() -> string

    The device layer, ``$BOTSTER_HOME`` (default ``~/.botster``): config.json, plugins, lua
    overrides, secrets. A plugin that keeps files should use a subdirectory named after itself.
    Example: ``local dir = config.data_dir() .. "/my_plugin"``
    """
    return str(hub.paths.home)


LUA = {
    "get": get,
    "all": all,
    "set": set,
    "env": env,
    "lua_path": lua_path,
    "data_dir": data_dir,
}
WRONG_DOOR = {
    "delete": "use config.set(key, nil)",
    "unset": "use config.set(key, nil)",
    "remove": "use config.set(key, nil)",
    "getenv": "use config.env(name)",
    "get_all": "use config.all()",
    "list": "use config.all()",
    "config_dir": "use config.data_dir()",
    "home": "use config.data_dir()",
}
