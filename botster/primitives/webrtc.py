"""The ``webrtc`` primitive: Lua's side of the browsers connected over WebRTC.

The third carrier of the client protocol (after the Unix socket and the terminal UI that rides
it): a peer is a browser with an open, Olm-encrypted data channel (``botster.remote.webrtc``)
that said ``hello``. The carrier hands each peer to the hub's client channel
(``botster.transports.channel``) like the socket server hands its clients, so everything a
client is (the registry, terminal forwarders and their hold-and-resync, PTY input, the client
protocol of ``lib/client.lua``) is the channel's, once for every transport. This module is only
the Lua face of the clients the WebRTC carrier brings: an observer of the channel that picks
them (``transport == "webrtc"``), as ``socket`` picks the socket's. Peer ids look like
``webrtc:1a2b3c``; each ``on_*`` call adds a listener owned by the calling plugin; forwarders
are owned by the plugin that made them.

Not here: pairing codes (``connection``), signalling (``hub.handle_webrtc_offer`` and friends)
and the crypto (``botster.remote``). Nothing here imports aiortc: a hub without peers never
loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from botster.base.errors import ArgumentError
from botster.lua.api import LuaFunction, lua_api
from botster.lua.listeners import ClientFace
from botster.primitives.context import HubContext
from botster.transports.channel import ChannelClient

if TYPE_CHECKING:
    from botster.remote.state import Remote

__all__ = ["LUA", "TRANSPORT", "lua_extras"]

TRANSPORT = "webrtc"  # the peers of the WebRTC carrier (botster.remote.webrtc)


class _State(ClientFace):
    """One hub's WebRTC listeners: an observer of the channel that picks the carrier's peers.
    The client protocol (``lib/client.lua``) answers a message it refuses, so this face does
    not."""

    def __init__(self, hub: HubContext) -> None:
        super().__init__(hub, "webrtc", _is_peer, answer=False)


def _is_peer(client: ChannelClient) -> bool:
    return client.transport == TRANSPORT


def _remote(hub: HubContext) -> Remote:
    from botster.remote.state import remote_for

    return remote_for(hub)


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Starts observing the hub's WebRTC peers (nothing extra for Lua)."""
    hub.clients.add_observer(hub.state(_State))
    return {}


def _peer(hub: HubContext, peer_id: str) -> ChannelClient | None:
    client = hub.clients.get(peer_id)
    return client if client is not None and _is_peer(client) else None


@lua_api
def on_peer_connected(hub: HubContext, fn: LuaFunction) -> str:
    """webrtc.on_peer_connected(fn(peer_id)) -> listener id

    Calls fn with the peer's id once a browser's encrypted data channel is open and its hello
    answered. Example: ``webrtc.on_peer_connected(function(id) log.info("browser " .. id) end)``
    """
    return hub.state(_State).on_connected.add(fn)


@lua_api
def on_peer_disconnected(hub: HubContext, fn: LuaFunction) -> str:
    """webrtc.on_peer_disconnected(fn(peer_id)) -> listener id

    Calls fn when a peer is gone: channel closed, connection failed, replaced by a newer offer
    from the same browser, revoked, or the hub stopping.
    """
    return hub.state(_State).on_disconnected.add(fn)


@lua_api
def on_message(hub: HubContext, fn: LuaFunction) -> str:
    """webrtc.on_message(fn(peer_id, msg)) -> listener id

    Calls fn with every JSON message (a table) a peer sends after its hello (``dc_ping`` and
    ``dc_pong`` are answered by the carrier and not passed on).
    Example: ``webrtc.on_message(function(id, msg) log.info(id .. " sent " .. msg.type) end)``
    """
    return hub.state(_State).on_message.add(fn)


@lua_api
def send(hub: HubContext, peer_id: str, msg: Any) -> bool | tuple[None, str]:
    """webrtc.send(peer_id, msg) -> true | nil, err

    Encrypts and queues a JSON message (a table) for one peer. Returns nil, err if the peer is
    gone. Example: ``webrtc.send(id, {type = "notice", text = "hi"})``
    """
    peer = _peer(hub, peer_id)
    if peer is None:
        return None, f"webrtc.send: no peer {peer_id}"
    if not peer.send_json(msg):
        return None, f"webrtc.send: peer {peer_id} is disconnected ({peer.close_reason})"
    return True


@lua_api
def send_binary(hub: HubContext, peer_id: str, data: bytes) -> bool | tuple[None, str]:
    """webrtc.send_binary(peer_id, data) -> true | nil, err

    Encrypts and queues an opaque binary frame (type 0x06) holding the string `data` for one
    peer. Returns nil, err if the peer is gone.
    Example: ``webrtc.send_binary(id, string.char(1, 2, 3))``
    """
    peer = _peer(hub, peer_id)
    if peer is None:
        return None, f"webrtc.send_binary: no peer {peer_id}"
    if not peer.send_binary(data):
        return None, f"webrtc.send_binary: peer {peer_id} is disconnected ({peer.close_reason})"
    return True


class ForwarderOptions(TypedDict):
    peer_id: str
    session_id: NotRequired[str]
    agent_index: NotRequired[int]
    pty_index: NotRequired[int]


@lua_api
def create_pty_forwarder(hub: HubContext, opts: ForwarderOptions) -> str | tuple[None, str]:
    """webrtc.create_pty_forwarder({peer_id, session_id} | {peer_id, agent_index, pty_index?})
    -> forwarder id | nil, err

    Routes a session's terminal to a peer in Python, as ``socket.create_pty_forwarder`` does
    for socket clients (the same forwarder of the hub's client channel): a SNAPSHOT frame,
    then live PTY_OUTPUT, then PROCESS_EXITED, each encrypted (and compressed when large).
    Output is held while the data channel's ``bufferedAmount`` is high and replaced by a
    fresh snapshot once the peer has caught up. The peer may then type into the session
    with PTY_INPUT frames. The session is `session_id`, or the original's way: `agent_index`
    (0-based, in the order of the ``agents.list`` command) and `pty_index` (0-based among the
    agent's PTYs, ``hub.register_agent``'s handles then its accessories; default 0). One
    forwarder per peer and session (a new one replaces the old); it stops when the peer
    disconnects, with ``webrtc.stop_pty_forwarder(peer_id, session_id)``, or when the plugin
    unloads. Returns nil, err when there is no such peer, agent or session; raises when opts
    has neither `session_id` nor `agent_index`, or a negative index.
    Example: ``webrtc.create_pty_forwarder({peer_id = id, agent_index = 0})``
    """
    sid = opts.get("session_id")
    for field in ("agent_index", "pty_index"):
        if opts.get(field, 0) < 0:
            raise ArgumentError(f"opts.{field}: expected an integer >= 0, got {opts[field]}")
    if sid is None and "agent_index" not in opts:
        raise ArgumentError("opts: expected session_id or agent_index, got neither")
    peer = _peer(hub, opts["peer_id"])
    if peer is None:
        return None, f"webrtc.create_pty_forwarder: no peer {opts['peer_id']}"
    if sid is None:
        # Agents are the Lua lifecycle's (lib/agents.lua): the companion webrtc.lua resolves
        # agent_index to a session_id before calling this, so only a replaced lib gets here.
        return None, "webrtc.create_pty_forwarder: agent_index: the agent lifecycle is not loaded"
    session = hub.sessions.get(sid)
    if session is None:
        return None, f"webrtc.create_pty_forwarder: no session {sid}"
    fwd = hub.clients.attach(peer, session, on_stop=lambda: hub.owners.discard(owner, fwd.id))
    owner = hub.own(fwd.id, lambda: hub.clients.detach(peer.id, session.id, fwd))
    return fwd.id


@lua_api
def stop_pty_forwarder(hub: HubContext, peer_id: str, session_id: str) -> bool:
    """webrtc.stop_pty_forwarder(peer_id, session_id) -> bool

    Stops the peer's forwarder of that session; false if there was none.
    Example: ``webrtc.stop_pty_forwarder(id, sid)``
    """
    peer = _peer(hub, peer_id)
    return peer is not None and hub.clients.detach(peer.id, session_id)


@lua_api
def peers(hub: HubContext) -> list[dict[str, str]]:
    """webrtc.peers() -> {{id, name, browser_key}...}

    The peers connected now (their hello answered), oldest first.
    Example: ``for _, p in ipairs(webrtc.peers()) do log.info(p.id) end``
    """
    return [
        {"id": p.id, "name": p.name, "browser_key": str(getattr(p, "key", ""))}
        for p in hub.clients.of_transport(TRANSPORT)
    ]


@lua_api
async def decrypt_envelope(hub: HubContext, identity: str, envelope: dict[str, Any]) -> Any:
    """webrtc.decrypt_envelope(identity, envelope) -> table | nil, err

    Decrypts a signalling envelope ``{t = 0|1, b, k?}`` from browser `identity`
    (``<curve25519 key>:<tab id>``) into its JSON payload, as ``action_cable.connect({crypto =
    true})`` does for the relay; for signalling that arrives another way (a hub command).
    Returns nil, err when it does not decrypt or the browser is not paired.
    """
    from botster.remote.olm import OlmError
    from botster.remote.olm import decrypt_envelope as _decrypt

    try:
        await _remote(hub).ready()
        return _decrypt(hub, identity, envelope)
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
