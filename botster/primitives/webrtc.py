"""The ``webrtc`` primitive: Lua's side of the browsers connected over WebRTC.

The third carrier of the client protocol (after the Unix socket and the terminal UI that rides
it): a peer is a browser with an open, Olm-encrypted data channel (``botster.transports.
webrtc``) that said ``hello``. Peer ids look like ``webrtc:1a2b3c``; ``lib/client.lua`` serves
them exactly like socket clients, so a browser subscribes to ``hub``, ``terminal`` and ``mcp``
and runs the same commands. As with ``socket``, each ``on_*`` call adds a listener owned by the
calling plugin.

Not here: pairing codes (``connection``), signalling (``hub.handle_webrtc_offer`` and friends)
and the crypto (``botster.remote``). Nothing here imports aiortc: a hub without peers never
loads it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, TypedDict

from botster.hub.context import current_hub
from botster.lua.api import LuaFunction, lua_api
from botster.sessions.forwarder import PtyForwarder
from botster.transports.framing import split_session

if TYPE_CHECKING:
    from botster.remote.state import Remote
    from botster.transports.webrtc import Peer

__all__ = ["LUA", "lua_extras"]


class _State:
    """The primitive's per-hub state: listeners and forwarders."""

    def __init__(self) -> None:
        self.listeners: dict[str, dict[str, tuple[str, Any]]] = {
            "connected": {},
            "disconnected": {},
            "message": {},
        }
        self.ids = itertools.count(1)
        # peer id -> session id -> forwarder
        self.forwarders: dict[str, dict[str, PtyForwarder]] = {}


def _remote() -> Remote:
    from botster.remote.state import remote_for

    return remote_for(current_hub())


def _state() -> _State:
    hub = current_hub()
    st = getattr(hub, "_webrtc_primitive", None)
    if st is None:
        st = _State()
        hub._webrtc_primitive = st  # type: ignore[attr-defined]
    return st


def _add(kind: str, fn: Any) -> str:
    hub = current_hub()
    st = _state()
    owner = hub.host.current_owner()
    key = f"webrtc_{kind}_{next(st.ids)}"
    st.listeners[kind][key] = (owner, fn)
    hub.owners.add(owner, key, lambda: st.listeners[kind].pop(key, None))
    return key


def _dispatch(kind: str, label: str, *args: Any) -> None:
    hub = current_hub()
    lua_args = [hub.host.convert.to_lua(a) for a in args]
    for owner, fn in list(_state().listeners[kind].values()):
        hub.host.sched.start(owner, label, fn, *lua_args)


class _Hooks:
    """What the carrier calls (``transports.webrtc.PeerHooks``); loop-only."""

    def connected(self, peer: Peer) -> None:
        _dispatch("connected", "webrtc peer connected", peer.id)

    def disconnected(self, peer: Peer) -> None:
        for fwd in _state().forwarders.pop(peer.id, {}).values():
            fwd.stop()
        _dispatch("disconnected", "webrtc peer disconnected", peer.id)

    def message(self, peer: Peer, message: dict[str, Any]) -> None:
        _dispatch("message", "webrtc message", peer.id, message)

    def pty_input(self, peer: Peer, payload: bytes) -> None:
        sid, data = split_session(payload)
        fwd = _state().forwarders.get(peer.id, {}).get(sid)
        if fwd is None or not fwd.session.running:
            peer.send_json(
                {
                    "type": "error",
                    "code": "bad_message",
                    "message": f"pty input for {sid}: not attached to that session",
                }
            )
            return
        fwd.session.client.write(data)


def lua_extras(host: Any) -> dict[str, Any]:
    """Installs the carrier's hooks on this hub's remote state (nothing extra for Lua)."""
    _remote().hooks = _Hooks()
    return {}


def _peer(peer_id: str) -> Peer | None:
    peers = _remote().peers
    return peers.clients.get(peer_id) if peers is not None else None


@lua_api
def on_peer_connected(fn: LuaFunction) -> str:
    """webrtc.on_peer_connected(fn(peer_id)) -> listener id

    Calls fn with the peer's id once a browser's encrypted data channel is open and its hello
    answered. Example: ``webrtc.on_peer_connected(function(id) log.info("browser " .. id) end)``
    """
    return _add("connected", fn)


@lua_api
def on_peer_disconnected(fn: LuaFunction) -> str:
    """webrtc.on_peer_disconnected(fn(peer_id)) -> listener id

    Calls fn when a peer is gone: channel closed, connection failed, replaced by a newer offer
    from the same browser, revoked, or the hub stopping.
    """
    return _add("disconnected", fn)


@lua_api
def on_message(fn: LuaFunction) -> str:
    """webrtc.on_message(fn(peer_id, msg)) -> listener id

    Calls fn with every JSON message (a table) a peer sends after its hello (``dc_ping`` and
    ``dc_pong`` are answered by the carrier and not passed on).
    Example: ``webrtc.on_message(function(id, msg) log.info(id .. " sent " .. msg.type) end)``
    """
    return _add("message", fn)


@lua_api
def send(peer_id: str, msg: Any) -> bool | tuple[None, str]:
    """webrtc.send(peer_id, msg) -> true | nil, err

    Encrypts and queues a JSON message (a table) for one peer. Returns nil, err if the peer is
    gone. Example: ``webrtc.send(id, {type = "notice", text = "hi"})``
    """
    peer = _peer(peer_id)
    if peer is None:
        return None, f"webrtc.send: no peer {peer_id}"
    if not peer.send_json(msg):
        return None, f"webrtc.send: peer {peer_id} is disconnected ({peer.close_reason})"
    return True


@lua_api
def send_binary(peer_id: str, data: bytes) -> bool | tuple[None, str]:
    """webrtc.send_binary(peer_id, data) -> true | nil, err

    Encrypts and queues an opaque binary frame (type 0x06) for one peer.
    """
    from botster.transports.framing import BINARY

    peer = _peer(peer_id)
    if peer is None:
        return None, f"webrtc.send_binary: no peer {peer_id}"
    if not peer.send_inner(bytes([BINARY]) + data):
        return None, f"webrtc.send_binary: peer {peer_id} is disconnected"
    return True


class ForwarderOptions(TypedDict):
    peer_id: str
    session_id: str


@lua_api
def create_pty_forwarder(opts: ForwarderOptions) -> str | tuple[None, str]:
    """webrtc.create_pty_forwarder({peer_id, session_id}) -> forwarder id | nil, err

    Routes a session's terminal to a peer in Python, as ``socket.create_pty_forwarder`` does
    for socket clients: a SNAPSHOT frame, then live PTY_OUTPUT, then PROCESS_EXITED, each
    encrypted (and compressed when large). Output is held while the data channel's
    ``bufferedAmount`` is high and replaced by a fresh snapshot past 128 KiB held. The peer may
    then type into the session with PTY_INPUT frames. One forwarder per peer and session; it
    stops when the peer disconnects or with ``webrtc.stop_pty_forwarder(peer_id, session_id)``.
    """
    hub = current_hub()
    peer = _peer(opts["peer_id"])
    if peer is None:
        return None, f"webrtc.create_pty_forwarder: no peer {opts['peer_id']}"
    session = hub.sessions.get(opts["session_id"])
    if session is None:
        return None, f"webrtc.create_pty_forwarder: no session {opts['session_id']}"
    by_session = _state().forwarders.setdefault(peer.id, {})
    if session.id in by_session:
        by_session[session.id].stop()
    fwd = PtyForwarder(session, peer.send_frame, peer.queued, peer.drained)
    by_session[session.id] = fwd
    return fwd.id


@lua_api
def stop_pty_forwarder(peer_id: str, session_id: str) -> bool:
    """webrtc.stop_pty_forwarder(peer_id, session_id) -> bool: stops one forwarder."""
    fwd = _state().forwarders.get(peer_id, {}).pop(session_id, None)
    if fwd is None:
        return False
    fwd.stop()
    return True


@lua_api
def peers() -> list[dict[str, str]]:
    """webrtc.peers() -> {{id, name, browser_key}...}: the peers connected now."""
    manager = _remote().peers
    if manager is None:
        return []
    return [
        {"id": p.id, "name": p.name, "browser_key": p.key}
        for p in manager.clients.values()
        if p.registered and not p.closed
    ]


@lua_api
async def decrypt_envelope(identity: str, envelope: dict[str, Any]) -> Any:
    """webrtc.decrypt_envelope(identity, envelope) -> table | nil, err

    Decrypts a signalling envelope ``{t = 0|1, b, k?}`` from browser `identity`
    (``<curve25519 key>:<tab id>``) into its JSON payload, as ``action_cable.connect({crypto =
    true})`` does for the relay; for signalling that arrives another way (a hub command).
    Returns nil, err when it does not decrypt or the browser is not paired.
    """
    from botster.remote.olm import OlmError
    from botster.remote.olm import decrypt_envelope as _decrypt

    try:
        await _remote().ready()
        return _decrypt(current_hub(), identity, envelope)
    except (OlmError, OSError) as e:
        return None, f"webrtc.decrypt_envelope: {e}"


LUA = {
    "on_peer_connected": on_peer_connected,
    "on_peer_disconnected": on_peer_disconnected,
    "on_message": on_message,
    "send": send,
    "send_binary": send_binary,
    "create_pty_forwarder": create_pty_forwarder,
    "stop_pty_forwarder": stop_pty_forwarder,
    "peers": peers,
    "decrypt_envelope": decrypt_envelope,
}
WRONG_DOOR = {
    "on_connect": "use webrtc.on_peer_connected(fn)",
    "on_disconnect": "use webrtc.on_peer_disconnected(fn)",
    "clients": "use webrtc.peers()",
}
