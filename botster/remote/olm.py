"""The hub's Olm account, its inbound sessions, and who may open one (pairing admission).

Owns:

* the account (``vodozemac``): created once, pickled and stored AES-256-GCM encrypted in
  ``$BOTSTER_HOME/remote/<hub_id>/account.enc`` as ``{"nonce", "ciphertext", "version": 1}``
  (mode 0600); the 32-byte key is kept in the OS keyring (service ``botster``, user
  ``olm:<hub_id>``) when one is usable, else in ``olm.key`` beside it (0600). The same encrypted
  file holds the paired-browser allow-list and the one-time keys of codes this hub displayed, so
  a local process that can write the directory but not read the key cannot add a browser;
* the inbound sessions, in memory only, keyed by the browser's curve25519 key (base64);
* admission: a browser key is paired when its first PreKey message uses a one-time key from a
  code this hub displayed (``connection.generate``); afterwards that key may open new sessions
  with any of the hub's one-time keys (bundle requests, ratchet restarts). A PreKey from any
  other key is refused before it touches the account;
* the signalling envelopes of REMOTE-WIRE.md (``decrypt_envelope`` / ``encrypt_envelope``).

Not here: bundles and URLs (``bundle.py``), peers and the data channel (``peer.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import vodozemac
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from botster.base.errors import BotsterError
from botster.base.paths import ensure_private_dir
from botster.remote import bundle as _bundle
from botster.remote.bundle import b64u, unb64

__all__ = [
    "NotPaired",
    "OlmError",
    "OlmState",
    "decrypt_envelope",
    "encrypt_envelope",
    "identity_key_of",
]

log = logging.getLogger("remote")

FORMAT_VERSION = 1
MAX_DISPLAYED = 16  # codes whose one-time key still pairs (older ones are forgotten)
PREKEY, NORMAL = 0, 1


class OlmError(BotsterError):
    """A message that cannot be decrypted or a key store that cannot be used."""


class NotPaired(OlmError):
    """The sender is not a paired browser and did not use a displayed pairing code."""


def identity_key_of(browser_identity: str) -> str:
    """The browser's curve25519 key (base64) from ``<key>:<tab uuid>``."""
    return browser_identity.split(":", 1)[0]


def _prekey_one_time_key(body: bytes) -> bytes | None:
    """The one-time key a PreKey message consumes (protobuf field 1 after the version byte)."""
    pos = 1
    while pos < len(body):
        tag = body[pos]
        pos += 1
        length, shift = 0, 0
        while pos < len(body):
            b = body[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag == 0x0A:
            return body[pos : pos + length] if length == 32 else None
        pos += length
    return None


# The at-rest key -------------------------------------------------------------------------------


def _keyring_blocking() -> Any | None:
    """The keyring module when a real backend is usable (not in tests, not without D-Bus)."""
    if os.environ.get("BOTSTER_KEYRING", "1") == "0":
        return None
    try:
        import keyring
        from keyring.backends import fail, null

        backend = keyring.get_keyring()
        if isinstance(backend, (fail.Keyring, null.Keyring)):
            return None
        chainer = getattr(backend, "backends", None)
        if chainer is not None and not chainer:
            return None
        return keyring
    except Exception as e:  # any backend failure means: use the file
        log.debug("keyring unusable: %s", e)
        return None


def _read_key_file_blocking(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise OlmError(f"{path}: key file must be yours and mode 0600; refusing to use it")
        data = f.read(33)
    if len(data) != 32:
        raise OlmError(f"{path}: key file is corrupt ({len(data)} bytes, expected 32)")
    return data


def _load_key_blocking(directory: Path, hub_id: str, create: bool) -> bytes | None:
    kr = _keyring_blocking()
    if kr is not None:
        try:
            stored = kr.get_password("botster", f"olm:{hub_id}")
            if stored:
                return base64.b64decode(stored)
            if create:
                key = os.urandom(32)
                kr.set_password("botster", f"olm:{hub_id}", base64.b64encode(key).decode())
                return key
        except Exception as e:
            log.warning("keyring failed (%s); using the key file instead", e)
    path = directory / "olm.key"
    key = _read_key_file_blocking(path)
    if key is None and create:
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
    return key


def _write_atomic_blocking(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The state ---------------------------------------------------------------------------------


class OlmState:
    """One hub's account, sessions and allow-list. Loop-only after ``load_blocking``.

    Args:
        directory: ``$BOTSTER_HOME/remote/<hub_id>``.
        hub_id: names the keyring entry.
    """

    def __init__(self, directory: Path, hub_id: str) -> None:
        self.directory = directory
        self.hub_id = hub_id
        self.account: vodozemac.Account | None = None
        self.sessions: dict[str, vodozemac.Session] = {}
        self.paired: dict[str, dict[str, Any]] = {}  # key b64 -> {paired_at}
        self.displayed: list[str] = []  # one-time keys (b64) of codes this hub displayed
        self.on_paired: Callable[[str], None] | None = None
        self.created = 0  # inbound sessions created (each consumed a one-time key)
        self._key: bytes | None = None

    @property
    def path(self) -> Path:
        return self.directory / "account.enc"

    # persistence (blocking: call through hub.run_blocking) ---------------------------------

    def load_blocking(self) -> None:
        """Loads the account, or creates and stores a new one.

        Raises:
            OlmError: the stored account cannot be decrypted or the key store is unsafe.
        """
        ensure_private_dir(self.directory)
        exists = self.path.exists()
        self._key = _load_key_blocking(self.directory, self.hub_id, create=True)
        if not exists:
            self.account = vodozemac.Account()
            self.save_blocking(self.snapshot())
            log.info("created the hub's Olm account")
            return
        try:
            envelope = json.loads(self.path.read_bytes())
            plain = AESGCM(self._key).decrypt(
                base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ciphertext"]), None
            )
            data = json.loads(plain)
            self.account = vodozemac.Account.from_pickle(data["account"], self._key)
        except (InvalidTag, KeyError, ValueError, vodozemac.PickleException) as e:
            raise OlmError(f"{self.path}: cannot decrypt the hub's Olm account: {e}") from None
        self.paired = dict(data.get("paired", {}))
        self.displayed = list(data.get("displayed", []))

    def snapshot(self) -> bytes:
        """The plaintext to persist (taken on the loop, written off it)."""
        assert self.account is not None and self._key is not None
        data = {
            "account": self.account.pickle(self._key),
            "paired": self.paired,
            "displayed": self.displayed,
        }
        return json.dumps(data).encode()

    def save_blocking(self, plain: bytes) -> None:
        """Encrypts and writes a snapshot atomically (0600)."""
        assert self._key is not None
        nonce = os.urandom(12)
        envelope = {
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(AESGCM(self._key).encrypt(nonce, plain, None)).decode(),
            "version": FORMAT_VERSION,
        }
        _write_atomic_blocking(self.path, json.dumps(envelope, indent=2).encode())

    # keys and bundles ------------------------------------------------------------------------

    def _acct(self) -> vodozemac.Account:
        if self.account is None:
            raise OlmError("the hub's Olm account is not loaded yet")
        return self.account

    @property
    def identity_key(self) -> str:
        return self._acct().curve25519_key.to_base64()

    def mint_bundle(self, *, displayed: bool) -> bytes:
        """A bundle with a fresh one-time key; `displayed` marks it as a pairing code's key.

        The caller persists the account afterwards (``snapshot`` + ``save_blocking``).
        """
        acct = self._acct()
        acct.generate_one_time_keys(1)
        fresh = list(acct.one_time_keys.values())
        acct.mark_keys_as_published()
        otk = fresh[-1].to_bytes()
        if displayed:
            self.displayed.append(b64u(otk))
            del self.displayed[:-MAX_DISPLAYED]
        return _bundle.build(
            acct.curve25519_key.to_bytes(),
            unb64(acct.ed25519_key.to_base64()),
            otk,
            lambda head: unb64(acct.sign(head).to_base64()),
        )

    # sessions ------------------------------------------------------------------------------

    def is_paired(self, key: str) -> bool:
        return key in self.paired

    def decrypt(self, sender: str, msg_type: int, body: bytes) -> bytes:
        """Decrypts one Olm message from `sender` (curve25519 b64).

        A PreKey message from a new sender creates an inbound session only if the sender is
        paired or uses a displayed code's one-time key (then the sender becomes paired).

        Raises:
            NotPaired: an unknown sender without a displayed code.
            OlmError: the message does not decrypt.
        """
        acct = self._acct()
        try:
            if msg_type == PREKEY:
                message = vodozemac.AnyOlmMessage.from_parts(PREKEY, body)
                prekey = message.to_pre_key()
                existing = self.sessions.get(sender)
                if existing is not None and existing.session_matches(prekey):
                    return existing.decrypt(message)
                newly_paired = False
                if sender not in self.paired:
                    otk = _prekey_one_time_key(body)
                    if otk is None or b64u(otk) not in self.displayed:
                        raise NotPaired(f"browser {sender[:12]}… is not paired with this hub")
                    newly_paired = True
                session, plain = acct.create_inbound_session(
                    vodozemac.Curve25519PublicKey.from_base64(sender), prekey
                )
                self.sessions[sender] = session
                self.created += 1
                if newly_paired:
                    otk_b64 = b64u(otk)  # type: ignore[arg-type]
                    self.displayed = [k for k in self.displayed if k != otk_b64]
                    self.paired[sender] = {"paired_at": int(time.time())}
                    log.info("paired browser %s", sender)
                    if self.on_paired is not None:
                        self.on_paired(sender)
                return plain
            if msg_type != NORMAL:
                raise OlmError(f"unknown Olm message type {msg_type}")
            if sender not in self.paired:
                raise NotPaired(f"browser {sender[:12]}… is not paired with this hub")
            session = self.sessions.get(sender)
            if session is None:
                raise OlmError(f"no Olm session with {sender[:12]}… (a ratchet restart is due)")
            return session.decrypt(vodozemac.AnyOlmMessage.from_parts(NORMAL, body))
        except OlmError:
            raise
        except Exception as e:  # vodozemac raises several unrelated exception types
            raise OlmError(f"cannot decrypt a message from {sender[:12]}…: {e}") from None

    def encrypt(self, peer: str, plaintext: bytes) -> tuple[int, bytes]:
        """Encrypts for a peer with a session; returns (Olm type, bytes).

        Raises:
            OlmError: no session with that peer.
        """
        session = self.sessions.get(peer)
        if session is None:
            raise OlmError(f"no Olm session with {peer[:12]}…")
        t, body = session.encrypt(plaintext).to_parts()
        return t, body

    def drop_session(self, peer: str) -> None:
        self.sessions.pop(peer, None)

    def revoke(self, peer: str) -> bool:
        """Forgets a paired browser and its session; the caller persists."""
        self.sessions.pop(peer, None)
        return self.paired.pop(peer, None) is not None


# Envelopes (REMOTE-WIRE.md) -----------------------------------------------------------------


def _state(hub: Any) -> OlmState:
    from botster.remote.state import remote_for

    return remote_for(hub).olm_now()


def decrypt_envelope(hub: Any, browser_identity: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """Decrypts a signalling envelope ``{t: 0|1, b, k?}`` into its JSON payload.

    Raises:
        OlmError: malformed, undecryptable, or from a browser that is not paired.
    """
    key = identity_key_of(browser_identity)
    t = envelope.get("t")
    if t not in (PREKEY, NORMAL) or not isinstance(envelope.get("b"), str):
        raise OlmError("envelope: expected {t = 0|1, b = <base64>}")
    if t == PREKEY and envelope.get("k") not in (None, key):
        raise OlmError("envelope: sender key k differs from the browser identity")
    try:
        body = unb64(envelope["b"])
    except ValueError:
        raise OlmError("envelope: b is not base64") from None
    state = _state(hub)
    plain = state.decrypt(key, t, body)
    try:
        value = json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        raise OlmError("envelope: plaintext is not JSON") from None
    if not isinstance(value, dict):
        raise OlmError("envelope: plaintext is not a JSON object")
    from botster.remote.state import remote_for

    remote_for(hub).after_decrypt(key)
    return value


def encrypt_envelope(hub: Any, browser_identity: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Encrypts a JSON payload for a browser with a session: ``{t, b}`` (t is 1 in practice:
    the hub only has inbound sessions).

    Raises:
        OlmError: no session with that browser.
    """
    t, body = _state(hub).encrypt(
        identity_key_of(browser_identity), json.dumps(payload, separators=(",", ":")).encode()
    )
    return {"t": t, "b": b64u(body)}
