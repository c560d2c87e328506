"""``_botster``: what the embedded Lua (hub/init.lua, hub/loader.lua) needs from Python.

Not a primitive and not for plugins: plugin discovery, file reads off the loop, paths,
settings, releasing an owner's resources, the ready signal, the client protocol's view of the
hub's client channel (``lib/client.lua`` serves every client the same way, whatever transport
carries it) and its fast reply path (``send_encoded``). Documented in ``docs/architecture.md``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from botster.base.errors import ArgumentError
from botster.base.framing import JSON, encode_frame
from botster.lua.api import LuaFunction, lua_api
from botster.lua.listeners import ClientFace
from botster.primitives.context import HubContext
from botster.transports.channel import ChannelClient

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
def info(hub: HubContext) -> dict[str, Any]:
    """{pid, repo, worktree_base, log = path or nil} for ``hub.info``: where this hub's
    agents' worktrees go and the file its log goes to (nil when it logs to a terminal)."""
    from botster.base.paths import hub_log_file, worktree_base

    out: dict[str, Any] = {
        "pid": os.getpid(),
        "repo": str(hub.paths.repo),
        "worktree_base": worktree_base(),
    }
    log_file = hub_log_file(hub.hub_id, hub.paths.runtime)
    try:  # the log file `botster start` gave this hub as its stderr (a stat: not blocking)
        if os.path.samestat(os.fstat(2), log_file.stat()):
            out["log"] = str(log_file)
    except OSError:
        pass
    return out


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
        "hub ready: %d plugin%s loaded, %d failed, in %.0f ms (%.0f ms CPU; hub id %s, repo %s)",
        loaded,
        "" if loaded == 1 else "s",
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


# The client protocol's view of the channel ---------------------------------------------------


def client_info(client: ChannelClient) -> dict[str, str]:
    """How the hub lists a client: ``{id, name, transport}`` (the same for every transport)."""
    return {"id": client.id, "name": client.name, "transport": client.transport}


class _Clients(ClientFace):
    """``lib/client.lua``'s listeners: every client of the channel, whatever carries it. This
    face answers a message it refuses (the transports' own faces do not)."""

    def __init__(self, hub: HubContext) -> None:
        super().__init__(hub, "client", lambda _client: True, answer=True, info=client_info)
        hub.clients.add_observer(self)


@lua_api
def on_client_connected(hub: HubContext, fn: LuaFunction) -> str:
    """fn(client_id, {id, name, transport}) after any client's handshake."""
    return hub.state(_Clients).on_connected.add(fn)


@lua_api
def on_client_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """fn(client_id, {id, name, transport}) when any client is gone."""
    return hub.state(_Clients).on_disconnected.add(fn)


@lua_api
def on_client_message(hub: HubContext, fn: LuaFunction) -> str:
    """fn(client_id, msg) for every JSON message of any client (checked against the limits)."""
    return hub.state(_Clients).on_message.add(fn)


@lua_api
def client_send(hub: HubContext, client_id: str, msg: Any) -> bool | tuple[None, str]:
    """Queues a JSON message for any client; nil, err when it is gone."""
    client = hub.clients.get(client_id)
    if client is None:
        return None, f"no client {client_id}"
    if not client.send_json(msg):
        return None, f"client {client_id} is disconnected ({client.close_reason})"
    return True


@lua_api
def client_attach(hub: HubContext, client_id: str, session_id: str) -> str | tuple[None, str]:
    """Routes a session's terminal to any client (``hub.clients.attach``), owned by the caller;
    the forwarder id, or nil, err."""
    client = hub.clients.get(client_id)
    if client is None:
        return None, f"no client {client_id}"
    session = hub.sessions.get(session_id)
    if session is None:
        return None, f"no session {session_id}"
    fwd = hub.clients.attach(client, session, on_stop=lambda: hub.owners.discard(owner, fwd.id))
    owner = hub.own(fwd.id, lambda: hub.clients.detach(client.id, session.id, fwd))
    return fwd.id


@lua_api
def client_detach(hub: HubContext, client_id: str, session_id: str) -> bool:
    """Stops a client's forwarder of a session; false if there was none."""
    return hub.clients.detach(client_id, session_id)


@lua_api
def clients(hub: HubContext) -> list[dict[str, str]]:
    """Every connected client, oldest first: ``{id, name, transport}``."""
    return [client_info(c) for c in hub.clients.clients.values()]


@lua_api
def remote_status(hub: HubContext) -> dict[str, Any]:
    """Whether remote access is on: ``{configured, why?, relay_url?, embedded, server_id?}``
    (the ``connection.status`` command; ``why`` in ``action_cable.connect``'s words)."""
    from botster.remote.state import relay_url

    why = hub.relay.unavailable()
    return {
        "configured": why is None,
        "why": why,
        "relay_url": relay_url(hub) if why is None else None,
        "embedded": hub.relay.embedded is not None,
        "server_id": hub.relay.server_id,
    }


@lua_api
def send_encoded(hub: HubContext, client_id: str, text: bytes) -> bool:
    """_botster.send_encoded(client_id, json_text) -> bool: queues a message lib/client.lua
    encoded itself (``json.encode``) for a client of the hub socket: the protocol's replies
    skip the Lua -> Python table conversion and Python's JSON encoder. False if the client is
    gone (the caller then uses ``socket.send``, which says why)."""
    client = hub.clients.get(client_id)
    if client is None or client.transport != "socket":
        return False
    return client.send_frame(encode_frame(JSON, text))


LUA = {
    "remote_status": remote_status,
    "on_client_connected": on_client_connected,
    "on_client_disconnected": on_client_disconnected,
    "on_client_message": on_client_message,
    "client_send": client_send,
    "client_attach": client_attach,
    "client_detach": client_detach,
    "clients": clients,
    "send_encoded": send_encoded,
    "check_tool_arguments": check_tool_arguments,
    "tool_registered": tool_registered,
    "fatal": fatal,
    "discover_definitions": discover_definitions,
    "repo_path": repo_path,
    "discover_plugins": discover_plugins,
    "read_file": read_file,
    "is_dir": is_dir,
    "paths": paths,
    "info": info,
    "setting": setting,
    "release_owner": release_owner,
    "ready": ready,
    "quarantined": quarantined,
    "lift_quarantine": lift_quarantine,
}
