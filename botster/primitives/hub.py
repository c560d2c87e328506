"""The ``hub`` primitive: the hub's identity and control.

``hub.state``, ``hub.hooks`` and ``hub.loader`` are embedded Lua modules attached to this
table by ``hub/init.lua``. Worktrees and the repository's remote are read with the git
plumbing of ``botster.primitives.worktree``. The three signalling functions
(``handle_webrtc_offer``, ``handle_ice_candidate``, ``request_ratchet_restart``) drive
``botster.remote``; ``lib/remote.lua`` calls them for messages from the relay.
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


def _remote() -> Any:
    from botster.remote.state import remote_for

    return remote_for(current_hub())


async def _paired_key(fn: str, identity: str) -> tuple[Any, str] | tuple[None, str]:
    """(remote, browser key) for a paired browser, else (None, error)."""
    from botster.remote.olm import OlmError, identity_key_of

    remote = _remote()
    key = identity_key_of(identity)
    not_paired = f"hub.{fn}: browser {key[:12]}… is not paired with this hub"
    if not remote.loaded and not await current_hub().run_blocking(remote.olm.path.exists):
        return None, not_paired  # no account yet: nobody is paired (and none is created)
    try:
        olm = await remote.ready()
    except (OlmError, OSError) as e:
        return None, f"hub.{fn}: {e}"
    if not olm.is_paired(key):
        return None, not_paired
    return remote, key


@lua_api
async def handle_webrtc_offer(identity: str, sdp: str) -> Any:
    """hub.handle_webrtc_offer(identity, sdp) -> envelope | nil, err

    Answers a paired browser's WebRTC offer: builds its peer (one per browser key; a new offer
    replaces the old peer) and returns the answer as an encrypted envelope ``{t = 1, b}`` to
    send back over the signalling path (``action_cable.perform(ch, "signal", {browser_identity
    = identity, envelope = env})``). `identity` is ``<browser curve25519 key>:<tab id>``.
    Returns nil, err for a browser that is not paired or has no Olm session yet, an offer
    superseded by a newer one from the same browser, or an SDP that does not parse.
    """
    from botster.remote.olm import OlmError, encrypt_envelope
    from botster.transports.webrtc import StaleOffer

    remote, key = await _paired_key("handle_webrtc_offer", identity)
    if remote is None:
        return None, key
    if key not in remote.olm.sessions:
        return None, "hub.handle_webrtc_offer: no Olm session with this browser (bundle first)"
    try:
        answer = await remote.peer_manager().handle_offer(identity, sdp)
        return encrypt_envelope(current_hub(), identity, {"type": "answer", "sdp": answer})
    except (StaleOffer, OlmError) as e:
        return None, f"hub.handle_webrtc_offer: {e}"
    except Exception as e:  # aiortc's SDP and ICE errors have no common base
        return None, f"hub.handle_webrtc_offer: {type(e).__name__}: {e}"


@lua_api
async def handle_ice_candidate(identity: str, candidate: dict[str, Any] | str) -> Any:
    """hub.handle_ice_candidate(identity, candidate) -> true | nil, err

    Adds a paired browser's trickled ICE candidate (``{candidate, sdpMid, sdpMLineIndex}`` or
    the bare ``candidate:...`` string) to its current peer; candidates that arrive while the
    offer is being answered wait for it (up to 128). Returns nil, err for a browser that is
    not paired or has no peer.
    """
    remote, key = await _paired_key("handle_ice_candidate", identity)
    if remote is None:
        return None, key
    cand = {"candidate": candidate} if isinstance(candidate, str) else candidate
    if remote.peers is None or not await remote.peers.handle_ice(identity, cand):
        return None, "hub.handle_ice_candidate: no peer for this browser (offer first)"
    return True


@lua_api
async def request_ratchet_restart(identity: str) -> Any:
    """hub.request_ratchet_restart(identity) -> envelope | nil, err

    Restarts the encrypted session with a paired browser: drops the hub's session, mints a
    bundle with a fresh one-time key, sends it on the browser's data channel (if open) and
    returns it as the plain, signed envelope ``{t = 2, b}`` for the signalling path. Also the
    answer to a browser's bundle request. Returns nil, err for a browser that is not paired
    (so a bundle request injected by the relay for an unknown key gets nothing).
    """
    remote, key = await _paired_key("request_ratchet_restart", identity)
    if remote is None:
        return None, key
    return remote.restart_ratchet(key, identity, emit=False)


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
