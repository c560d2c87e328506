"""The ``hub`` primitive: the hub's identity and control.

``hub.state``, ``hub.hooks`` and ``hub.loader`` are embedded Lua modules attached to this
table by ``hub/init.lua``. Worktrees and the repository's remote are read with the git
plumbing of ``botster.primitives.worktree``. Remote access (WebRTC) is not built yet: its
three entry points exist and answer ``nil, err`` until it is.
"""

from __future__ import annotations

import re
from typing import Any

from botster.hub.context import current_hub
from botster.hub.git import git, repo_reason, worktree_entries
from botster.lua.api import lua_api

__all__ = ["LUA", "owner_name_from_url"]


@lua_api
def hub_id() -> str:
    """hub.hub_id() -> string: hex SHA-256 of this hub's repo path (same as hub_discovery)."""
    return current_hub().hub_id


@lua_api
def server_id() -> str | None:
    """hub.server_id() -> string | nil

    The id the relay assigned when this hub registered (``POST /hubs``), or nil: before
    registration finishes (it runs in the background once the hub is ready, and is retried
    while the relay cannot be reached), when no relay is configured, or when the relay refused
    the hub's token. The hub works the same either way. The `relay_registered` event
    (`{server_id, url}`) fires once the id is known.
    Example: ``local sid = hub.server_id() or hub.hub_id()``
    """
    return current_hub().relay.server_id


@lua_api
def quit() -> None:
    """hub.quit(): stops the hub cleanly once the current callback returns.

    Every listener of the `shutdown` event and hook runs first; agents' sessions are kept.
    """
    hub = current_hub()
    hub.loop.call_soon(hub.quit)


@lua_api
async def get_worktrees() -> Any:
    """hub.get_worktrees() -> {{path, branch, head, is_main, ...}, ...} | nil, err

    The worktrees of the hub's repository, exactly as ``worktree.list()`` returns them
    (read from git on every call). Returns nil, err when the repository is gone.
    Example: ``for _, wt in ipairs(hub.get_worktrees()) do log.info(wt.path) end``
    """
    entries = await worktree_entries(str(current_hub().paths.repo))
    if isinstance(entries, str):
        return None, f"hub.get_worktrees: {entries}"
    return entries


# scheme://[user[:password]@]host[:port]/path, and scp-like [user@]host:path
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]*/(?P<path>.*)$")
_SCP = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>.*)$")


def owner_name_from_url(url: str) -> str | None:
    """``owner/name`` from a git remote URL, or None for a local path or an unknown shape.

    Accepts ``https://host/owner/name(.git)``, ``ssh://[user@]host[:port]/owner/name(.git)``,
    ``git://...`` and scp-like ``[user@]host:owner/name(.git)``; deeper paths (GitLab
    subgroups) keep every component: ``group/sub/name``.
    """
    url = url.strip()
    if url.startswith("file:"):
        return None
    m = _URL.match(url) or (None if "://" in url else _SCP.match(url))
    if m is None:
        return None
    path = m.group("path").split("?", 1)[0].split("#", 1)[0].strip("/")
    path = path.removesuffix(".git").rstrip("/")
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)


@lua_api
async def detect_repo() -> str | None | tuple[None, str]:
    """hub.detect_repo() -> "owner/name" | nil, reason

    The hosted name of the hub's repository, read from its ``origin`` remote
    (``git remote get-url origin``, so ``url.*.insteadOf`` rewrites apply). Understands
    ``https://github.com/owner/name.git``, ``git@github.com:owner/name.git`` and
    ``ssh://git@host:22/owner/name``; a trailing ``.git`` is dropped, and deeper paths keep
    every component (``group/sub/name``). Returns nil and a reason outside a repository,
    without an ``origin`` remote, or when origin is a local path.
    Example: ``local repo = hub.detect_repo(); if repo then log.info("working on " .. repo) end``
    """
    repo = str(current_hub().paths.repo)
    res = await git(repo, "remote", "get-url", "origin")
    if not res.ok:
        return None, f"hub.detect_repo: {repo_reason(repo, res)}"
    url = res.out.strip()
    name = owner_name_from_url(url)
    if name is None:
        return None, f"hub.detect_repo: origin {url!r} is not a hosted repository URL"
    return name


def _not_enabled(fn: str) -> tuple[None, str]:
    return None, f"hub.{fn}: remote access is not enabled in this hub"


@lua_api
def handle_webrtc_offer(identity: str, sdp: str) -> tuple[None, str]:
    """hub.handle_webrtc_offer(identity, sdp) -> nil, err

    Will answer a browser's WebRTC offer once remote access exists; until then returns
    nil, "hub.handle_webrtc_offer: remote access is not enabled in this hub".
    Raises when `identity` or `sdp` is not a string.
    """
    return _not_enabled("handle_webrtc_offer")


@lua_api
def handle_ice_candidate(identity: str, candidate: dict[str, Any] | str) -> tuple[None, str]:
    """hub.handle_ice_candidate(identity, candidate) -> nil, err

    Will add a peer's ICE candidate (a table or a string) once remote access exists; until
    then returns nil, "hub.handle_ice_candidate: remote access is not enabled in this hub".
    Raises when `identity` is not a string or `candidate` neither a table nor a string.
    """
    return _not_enabled("handle_ice_candidate")


@lua_api
def request_ratchet_restart(identity: str) -> tuple[None, str]:
    """hub.request_ratchet_restart(identity) -> nil, err

    Will restart the encrypted session with a peer once remote access exists; until then
    returns nil, "hub.request_ratchet_restart: remote access is not enabled in this hub".
    Raises when `identity` is not a string.
    """
    return _not_enabled("request_ratchet_restart")


LUA = {
    "hub_id": hub_id,
    "server_id": server_id,
    "quit": quit,
    "get_worktrees": get_worktrees,
    "detect_repo": detect_repo,
    "handle_webrtc_offer": handle_webrtc_offer,
    "handle_ice_candidate": handle_ice_candidate,
    "request_ratchet_restart": request_ratchet_restart,
}
WRONG_DOOR = {"id": "use hub.hub_id()", "exit": "use hub.quit()", "stop": "use hub.quit()"}
