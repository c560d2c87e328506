"""The ``secrets`` primitive: small encrypted values, scoped to the plugin that stores them.

Owns ``secrets.get``, ``secrets.set`` and ``secrets.delete`` (D1) and their storage:

* scope: the calling plugin, taken from the Lua task (user init code is ``user``); a plugin
  cannot name another scope, so one plugin can never read another's secrets;
* master key: ``$BOTSTER_HOME/secrets.key``, 32 random bytes, created 0600 on the first
  ``set``; a key file that is not 0600, not ours or not 32 bytes is refused, never repaired;
* per-scope key: HKDF-SHA256 of the master key with info ``botster secrets v1:<owner>``;
* one file per secret: ``$BOTSTER_HOME/secrets/<owner>/<key>.enc`` (0600, directories 0700;
  an owner name that is not a plain file name is %XX-escaped, one-to-one),
  holding ``MAGIC || nonce (12) || AES-256-GCM ciphertext+tag``; the associated data binds
  owner and key name, so a file copied to another name or another plugin fails to decrypt.
  Plaintext never touches the disk; writes are atomic (temp file, fsync, rename).

All disk work runs on the hub's I/O pool. Leaves the hub's own credentials (device identity,
transport keys) to the modules that own them.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from botster.errors import ArgumentError
from botster.hub.context import HubContext
from botster.hub.paths import ensure_private_dir
from botster.lua.api import lua_api

__all__ = ["LUA"]

MAX_VALUE = 64 * 1024
MASTER_KEY_BYTES = 32
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_MAGIC = b"BTSEC\x01"  # format version 1
_NONCE = 12
_TAG = 16
_SAFE_DIR_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_AUTH_FAILED = "stored value failed authentication (tampered, or written with another key)"

Fail = tuple[None, str]


class _SecretError(Exception):
    """A secret or the key file cannot be used; the message follows ``secrets.<op>: ``."""


# Storage --------------------------------------------------------------------------------------


def _owner_dir_name(owner: str) -> str:
    """A directory name for `owner`: itself when plain, else %XX-escaped (one-to-one)."""
    raw = owner.encode("utf-8", "surrogateescape")
    name = "".join(
        chr(b) if b in _SAFE_DIR_CHARS and not (i == 0 and b == ord(".")) else f"%{b:02X}"
        for i, b in enumerate(raw)
    )
    return name or "%"


@dataclass(frozen=True)
class _Place:
    """Where one secret of one owner lives."""

    owner: str
    key: str
    key_file: Path
    root: Path

    @property
    def owner_dir(self) -> Path:
        return self.root / _owner_dir_name(self.owner)

    @property
    def file(self) -> Path:
        return self.owner_dir / f"{self.key}.enc"

    @property
    def aad(self) -> bytes:
        # Length-unambiguous: owner and key name can never be re-split differently.
        return b"botster secrets v1\n" + json.dumps([self.owner, self.key]).encode()


def _place(hub: HubContext, key: str) -> _Place:
    return _Place(
        hub.host.current_owner(), key, hub.paths.home / "secrets.key", hub.paths.secrets_dir
    )


def _read_master_blocking(path: Path) -> bytes | None:
    """The master key, or None if there is no key file. Raises _SecretError on a bad one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: the key file is a symlink
        raise _SecretError(f"{path}: cannot open the key file: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _SecretError(f"{path}: the key file is not a regular file")
        if st.st_uid != os.getuid():
            raise _SecretError(f"{path}: the key file belongs to uid {st.st_uid}, not to you")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise _SecretError(
                f"{path}: the key file has mode {mode:04o}, which lets others read it; "
                f"refusing to use it (if no one else has read it: chmod 600 {path})"
            )
        data = f.read(MASTER_KEY_BYTES + 1)
    if len(data) != MASTER_KEY_BYTES:
        raise _SecretError(
            f"{path}: the key file is corrupt ({len(data)} bytes, expected {MASTER_KEY_BYTES})"
        )
    return data


def _create_master_blocking(path: Path) -> bytes:
    """Creates the key file (0600) unless another hub just did; returns the key in use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".secrets.key.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(MASTER_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() never replaces: of two hubs creating the key at once, one wins and both
            # use its key; nobody ever sees a half-written key file.
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    key = _read_master_blocking(path)
    assert key is not None
    return key


def _cipher(master: bytes, owner: str) -> AESGCM:
    info = b"botster secrets v1:" + owner.encode("utf-8", "surrogateescape")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return AESGCM(hkdf.derive(master))


def _get_blocking(place: _Place) -> bytes | None:
    try:
        fd = os.open(place.file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        blob = f.read(len(_MAGIC) + _NONCE + MAX_VALUE + _TAG + 1)
    master = _read_master_blocking(place.key_file)
    if master is None:
        raise _SecretError(
            f"{place.key}: the key file {place.key_file} is missing; "
            "stored secrets cannot be decrypted"
        )
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE + _TAG:
        raise _SecretError(f"{place.key}: {_AUTH_FAILED}")
    nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE]
    try:
        return _cipher(master, place.owner).decrypt(nonce, blob[len(_MAGIC) + _NONCE :], place.aad)
    except InvalidTag:
        raise _SecretError(f"{place.key}: {_AUTH_FAILED}") from None


def _set_blocking(place: _Place, value: bytes) -> bool:
    master = _read_master_blocking(place.key_file) or _create_master_blocking(place.key_file)
    ensure_private_dir(place.root)
    ensure_private_dir(place.owner_dir)
    nonce = os.urandom(_NONCE)
    blob = _MAGIC + nonce + _cipher(master, place.owner).encrypt(nonce, value, place.aad)
    tmp = place.owner_dir / f".{place.key}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, place.file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _delete_blocking(place: _Place) -> bool:
    try:
        place.file.unlink()
    except FileNotFoundError:
        return False
    try:
        place.owner_dir.rmdir()  # tidy up the scope's directory once it is empty
    except OSError:
        pass
    return True


def _check_key(key: str) -> None:
    if not _KEY_NAME.match(key):
        got = f"{len(key)} characters" if len(key) > 128 else repr(key)
        raise ArgumentError(f"key: expected 1-128 characters of A-Z a-z 0-9 _ . -, got {got}")


async def _run(hub: HubContext, op: str, key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs fn(*args) on the I/O pool; failures become ``nil, "secrets.<op>: ..."``."""
    try:
        return await hub.run_blocking(fn, *args)
    except _SecretError as e:
        return None, f"secrets.{op}: {e}"
    except OSError as e:
        reason = e.strerror or str(e)
        where = e.filename if e.filename is not None else key
        return None, f"secrets.{op}: {where}: {reason[:1].lower()}{reason[1:]}"


# The Lua-facing functions ---------------------------------------------------------------------


@lua_api
async def get(hub: HubContext, key: str) -> bytes | None | Fail:
    """secrets.get(key) -> string | nil | nil, err

    The value this plugin stored under `key` (binary-safe), or nil when there is none.
    Returns nil, err when the stored value cannot be trusted or read, e.g.
    ``secrets.get: token: stored value failed authentication (tampered, or written with
    another key)``, or when the key file is missing or unsafe. Raises on a bad key name
    (1-128 characters of A-Z a-z 0-9 _ . -). Only the calling plugin's own secrets are
    visible. Example: ``local token = secrets.get("api_token")``
    """
    _check_key(key)
    return await _run(hub, "get", key, _get_blocking, _place(hub, key))


@lua_api
async def set(hub: HubContext, key: str, val: bytes) -> bool | Fail:
    """secrets.set(key, val) -> true | nil, err

    Stores `val` (a string of at most 64 KiB, binary-safe) under `key` for the calling plugin,
    encrypted (AES-256-GCM) in ``$BOTSTER_HOME/secrets/<plugin>/<key>.enc``, replacing any
    previous value atomically. The first call creates the key file
    ``$BOTSTER_HOME/secrets.key`` (0600). Returns nil, err when the key file is unsafe (not
    0600, not yours) or the disk fails. Raises on a bad key name, a non-string or oversized
    value. Example: ``assert(secrets.set("api_token", token))``
    """
    _check_key(key)
    if len(val) > MAX_VALUE:
        raise ArgumentError(
            f"val: expected a string of at most {MAX_VALUE} bytes, got {len(val)} bytes"
        )
    return await _run(hub, "set", key, _set_blocking, _place(hub, key), val)


@lua_api
async def delete(hub: HubContext, key: str) -> bool | Fail:
    """secrets.delete(key) -> bool | nil, err

    Removes the calling plugin's secret `key`: true if one was removed, false if there was
    none (deleting twice is fine). Raises on a bad key name.
    Example: ``secrets.delete("api_token")``
    """
    _check_key(key)
    return await _run(hub, "delete", key, _delete_blocking, _place(hub, key))


LUA = {"get": get, "set": set, "delete": delete}
WRONG_DOOR = {
    "remove": "use secrets.delete(key)",
    "unset": "use secrets.delete(key)",
    "put": "use secrets.set(key, val)",
    "list": "secrets cannot be listed; keep the names you use in config or in code",
    "all": "secrets cannot be listed; keep the names you use in config or in code",
}
