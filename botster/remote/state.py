"""One hub's remote-access state, in one object: ``remote_for(hub)``.

Holds the Olm state (loaded lazily, off the loop), the current pairing code, and the peer
manager (created when a code is shown, a bundle asked for or an offer arrives; it starts the
WebRTC process, the only one that imports aiortc). Also the two
small look-ups that depend on the relay link: ``relay_url`` and ``server_id``.

The ``connection`` and ``webrtc`` primitives, the ``hub`` primitive's signalling functions
and the ``action_cable`` crypto hook all reach the same object through ``remote_for``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from botster.remote import bundle as _bundle
from botster.remote.olm import OlmState

if TYPE_CHECKING:
    from botster.remote.webrtc import PeerManager

__all__ = ["Remote", "relay_url", "remote_for", "server_id"]

log = logging.getLogger("remote")

DEFAULT_RELAY_URL = "http://127.0.0.1:8420"


def relay_url(hub: Any) -> str:
    """The relay's public URL: the relay link's when it has one, else ``BOTSTER_SERVER_URL``
    or config ``server_url``, else the default local relay."""
    link = getattr(hub, "relay", None)
    configured = getattr(link, "configured_url", None)
    if callable(configured) and configured():
        return str(configured())
    embedded = getattr(link, "embedded", None)
    if embedded is not None and isinstance(getattr(embedded, "url", None), str):
        return str(embedded.url)
    url = os.environ.get("BOTSTER_SERVER_URL") or hub.config.data.get("server_url")
    return str(url) if url else DEFAULT_RELAY_URL


def server_id(hub: Any) -> str:
    """The id the relay gave this hub; before registration (or with no relay) the hub id, so
    a code still names this hub and pairing works on loopback."""
    link = getattr(hub, "relay", None)
    sid = getattr(link, "server_id", None)
    return str(sid) if sid else hub.hub_id


class Remote:
    """The remote-access state of one hub."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.olm = OlmState(hub.paths.home / "remote" / hub.hub_id, hub.hub_id)
        self.olm.on_paired = self._paired
        self.code: dict[str, Any] | None = None
        self.peers: PeerManager | None = None
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._save_pending = False
        self._save_task: asyncio.Task[None] | None = None
        self._announce: list[str] = []
        self._created_seen = 0

    # Loading and saving ----------------------------------------------------------------------

    async def ready(self) -> OlmState:
        """The Olm state, loaded (or created) off the loop on first use."""
        if not self._loaded:
            async with self._load_lock:
                if not self._loaded:
                    await self.hub.run_blocking(self.olm.load_blocking)
                    self._loaded = True
        return self.olm

    def olm_now(self) -> OlmState:
        """The Olm state for synchronous callers (the action_cable hook); loads it on the loop
        in the rare case a signal arrives before anything else loaded it (one small file)."""
        if not self._loaded:
            self.olm.load_blocking()
            self._loaded = True
        return self.olm

    def persist(self, *, announce: str | None = None) -> None:
        """Saves the account soon (coalesced; written off the loop); `announce` is logged once
        the write is done (pairings and revocations, which tests and users wait for)."""
        self._save_pending = True
        if announce is not None:
            self._announce.append(announce)
        if self._save_task is None or self._save_task.done():
            self._save_task = self.hub.spawn(self._save(), name="save olm account", owner="hub")

    async def _save(self) -> None:
        while self._save_pending:
            self._save_pending = False
            announce, self._announce = self._announce, []
            await self.hub.run_blocking(self.olm.save_blocking, self.olm.snapshot())
            for what in announce:
                log.info("stored the Olm account: %s", what)

    def after_decrypt(self, key: str) -> None:
        """Persists the account after an inbound session consumed a one-time key."""
        if self.olm.created != self._created_seen:
            self._created_seen = self.olm.created
            self.persist()

    # Pairing codes -------------------------------------------------------------------------

    async def generate(self, *, fresh: bool) -> dict[str, Any]:
        """The current pairing code (`fresh`: always a new one-time key); emits
        ``connection_code_ready`` with ``{url, qr_ascii, hub_id}`` when a new code is made."""
        olm = await self.ready()
        if self.code is not None and not fresh and self.code["otk"] in olm.displayed:
            return self.public_code()
        raw = olm.mint_bundle(displayed=True)
        self.persist()
        url = _bundle.pairing_url(relay_url(self.hub), server_id(self.hub), raw)
        self.code = {
            "url": url,
            "qr_ascii": _bundle.qr_ascii(url),
            "hub_id": self.hub.hub_id,
            "otk": _bundle.b64u(raw[65:97]),
        }
        self.hub.emit("connection_code_ready", self.public_code())
        self.peer_manager().warm()  # a browser may scan it: have aiortc imported by then
        return self.public_code()

    def public_code(self) -> dict[str, Any]:
        assert self.code is not None
        return {k: v for k, v in self.code.items() if k != "otk"}

    def _paired(self, key: str) -> None:
        # The code just used is spent: show a fresh one, and tell plugins who paired.
        self.persist(announce=f"paired {key}")
        self.hub.emit("browser_paired", {"browser_key": key})
        if self.code is not None:
            self.hub.spawn(self.generate(fresh=True), name="regenerate code", owner="hub")

    async def revoke(self, key: str) -> bool:
        """Forgets a paired browser, its session and its peer."""
        olm = await self.ready()
        removed = olm.revoke(key)
        if self.peers is not None:
            await self.peers.close_key(key, "revoked")
        if removed:
            self.persist(announce=f"revoked {key}")
            log.info("revoked browser %s", key)
        return removed

    def restart_ratchet(self, key: str, identity: str, *, emit: bool) -> dict[str, Any]:
        """Drops the session with `key`, mints a bundle with a fresh one-time key, sends it on
        the browser's data channel (if open) and returns the ``{t = 2, b}`` envelope. With
        `emit`, the ``webrtc_ratchet_restart`` event carries ``{browser_identity, envelope}``
        so the relay handler (``lib/remote.lua``) sends it over signalling too."""
        self.olm.drop_session(key)
        self.peer_manager().warm()  # an offer follows a bundle
        raw = self.olm.mint_bundle(displayed=False)
        self.persist()
        peer = self.peers.peers.get(key) if self.peers is not None else None
        if peer is not None:
            peer.send_bundle(raw)
        envelope = {"t": 2, "b": _bundle.b64u(raw)}
        log.info("ratchet restart for %s…", key[:12])
        if emit:
            self.hub.emit(
                "webrtc_ratchet_restart", {"browser_identity": identity, "envelope": envelope}
            )
        return envelope

    @property
    def loaded(self) -> bool:
        return self._loaded

    def peer_manager(self) -> PeerManager:
        if self.peers is None:
            from botster.remote.webrtc import PeerManager

            self.peers = PeerManager(self)
            self.hub.on_close(self.peers.close_all)
        return self.peers


def remote_for(hub: Any) -> Remote:
    """This hub's remote-access state (created on first use)."""
    remote = getattr(hub, "_remote", None)
    if remote is None:
        remote = Remote(hub)
        hub._remote = remote
    return remote
