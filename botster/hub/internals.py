"""``_botster``: what the embedded Lua (hub/init.lua, hub/loader.lua) needs from Python.

Not a primitive and not for plugins: plugin discovery, file reads off the loop, paths,
settings, releasing an owner's resources, and the ready signal. Documented in
``docs/architecture.md``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from botster.base.errors import ArgumentError
from botster.lua.api import lua_api
from botster.primitives.context import HubContext

__all__ = ["LUA"]

log = logging.getLogger("hub")


# Owner names the hub uses itself; a plugin directory with one of these names is skipped.
RESERVED_NAMES = frozenset({"hub", "user"})


def _discover_blocking(layers: list[tuple[str, Path]]) -> list[dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for source, root in layers:  # later layers win by name
        try:
            names = sorted(os.listdir(root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            init = root / name / "init.lua"
            if name.startswith(".") or not init.is_file():
                continue
            if name in RESERVED_NAMES:
                log.warning("plugin directory %s is skipped: '%s' is reserved", root / name, name)
                continue
            found[name] = {
                "name": name,
                "dir": str(root / name),
                "init": str(init),
                "source": source,
            }
    return [found[n] for n in sorted(found)]


def _discover_defs_blocking(layers: list[tuple[str, Path]], kind: str) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for source, layer in layers:  # later layers (repo) win by name
        root = layer / kind
        try:
            names = sorted(os.listdir(root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            script = root / name / "initialization"
            if name.startswith(".") or not script.is_file():
                continue
            found[name] = {
                "name": name,
                "dir": str(root / name),
                "initialization": str(script),
                "source": source,
                "port_forward": (root / name / "port_forward").exists(),
            }
    return [found[n] for n in sorted(found)]


@lua_api
async def discover_definitions(hub: HubContext, kind: str) -> list[dict[str, Any]]:
    """Agent or accessory definitions ("agents" / "accessories") in both layers, by name:
    ``<layer>/<kind>/<name>/initialization`` (+ a ``port_forward`` file for a $PORT)."""
    if kind not in ("agents", "accessories"):
        raise ArgumentError(f"kind: expected 'agents' or 'accessories', got {kind!r}")
    layers = [("device", hub.paths.home), ("repo", hub.paths.repo_layer)]
    return await hub.run_blocking(_discover_defs_blocking, layers, kind)


@lua_api
def repo_path(hub: HubContext) -> str:
    """The repository this hub serves."""
    return str(hub.paths.repo)


@lua_api
async def discover_plugins(hub: HubContext) -> list[dict[str, str]]:
    """Every plugin in both layers, the repo layer winning by name, sorted by name."""
    return await hub.run_blocking(_discover_blocking, hub.paths.plugin_dirs())


def _read_blocking(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


@lua_api
async def read_file(hub: HubContext, path: str) -> bytes | tuple[None, str]:
    """The bytes of a file, or nil, err. Missing file: nil, "missing"."""
    try:
        data = await hub.run_blocking(_read_blocking, path)
    except OSError as e:
        return None, f"{path}: {e.strerror}"
    return (None, "missing") if data is None else data


@lua_api
async def is_dir(hub: HubContext, path: str) -> bool:
    """Whether `path` is a directory."""
    return await hub.run_blocking(os.path.isdir, path)


@lua_api
def paths(hub: HubContext) -> dict[str, Any]:
    """{plugin_dirs = {{source, dir}...}, override_dirs = {...}, user_init = path}."""
    p = hub.paths
    return {
        "plugin_dirs": [{"source": s, "dir": str(d)} for s, d in p.plugin_dirs()],
        "override_dirs": [str(d) for d in p.override_dirs()],
        "user_init": str(p.lua_dir / "user" / "init.lua"),
    }


@lua_api
def setting(hub: HubContext, key: str) -> Any:
    """A hub setting from config.json, or its default."""
    return hub.config.setting(key)


@lua_api
def release_owner(hub: HubContext, owner: str) -> None:
    """Releases what `owner` holds on the Python side (timers, watches, requests, waits)."""
    hub.release_owner(owner)


@lua_api
def ready(hub: HubContext, loaded: int, failed: int) -> None:
    """Logs that start-up finished: every plugin was loaded or failed."""
    hub.sessions.release_signals()
    ms = (time.monotonic() - hub.started_at) * 1000
    log.info(
        "hub ready: %d plugins loaded, %d failed, in %.0f ms (%.0f ms CPU; hub id %s, repo %s)",
        loaded,
        failed,
        ms,
        time.process_time() * 1000,  # the process's work so far: benchmarks read it under load
        hub.hub_id,
        hub.paths.repo,
    )
    hub.emit("hub_ready", {"plugins_loaded": loaded, "plugins_failed": failed})
    hub.relay.start()  # after start-up, so registering or serving a relay never delays it


def _quarantine(hub: HubContext) -> Any:
    from botster.hub.supervisor import Quarantine

    return Quarantine.for_hub(hub.paths.home, hub.hub_id)


@lua_api
async def quarantined(hub: HubContext, name: str, plugin_dir: str) -> str | None:
    """Why plugin `name` must not load (it took a hub down), or nil (never, or edited since)."""
    return await hub.run_blocking(_quarantine(hub).check_blocking, name, Path(plugin_dir))


@lua_api
async def lift_quarantine(hub: HubContext, name: str) -> bool:
    """Lets plugin `name` load again; false if it was not quarantined."""
    return await hub.run_blocking(_quarantine(hub).remove_blocking, name)


@lua_api
def fatal(hub: HubContext, message: str) -> None:
    """Stops the hub with exit code 1 (the core Lua could not start)."""
    hub.fail(message)


@lua_api
def check_tool_arguments(schema: Any, arguments: Any) -> str | None:
    """What is wrong with an MCP tool's arguments for its ``input_schema``, or nil."""
    from botster.mcp.schema import check_arguments

    return check_arguments(schema, arguments)


@lua_api
def tool_registered(hub: HubContext) -> None:
    """A tool exists: load the schema validator off the loop before its first call."""
    from botster.mcp.schema import warm

    warm(hub)


LUA = {
    "check_tool_arguments": check_tool_arguments,
    "tool_registered": tool_registered,
    "fatal": fatal,
    "discover_definitions": discover_definitions,
    "repo_path": repo_path,
    "discover_plugins": discover_plugins,
    "read_file": read_file,
    "is_dir": is_dir,
    "paths": paths,
    "setting": setting,
    "release_owner": release_owner,
    "ready": ready,
    "quarantined": quarantined,
    "lift_quarantine": lift_quarantine,
}
