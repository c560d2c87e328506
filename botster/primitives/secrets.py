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
  Plaintext never touches the disk; writes are atomic (temp file, fsync, rename). The key
  file and the sealed format are ``botster/hub/vault.py``'s, shared with the hub's own
  secrets (web push keys).

All disk work runs on the hub's I/O pool. Leaves the hub's own credentials (device identity,
transport keys) to the modules that own them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botster.errors import ArgumentError
from botster.hub import vault
from botster.hub.context import current_hub
from botster.hub.paths import ensure_private_dir
from botster.lua.api import lua_api

__all__ = ["LUA"]

MAX_VALUE = 64 * 1024
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_SAFE_DIR_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
Fail = tuple[None, str]


# A secret or the key file cannot be used; the message follows ``secrets.<op>: ``.
_SecretError = vault.VaultError


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


def _place(key: str) -> _Place:
    hub = current_hub()
    return _Place(
        hub.host.current_owner(), key, hub.paths.home / "secrets.key", hub.paths.secrets_dir
    )


def _info(owner: str) -> bytes:
    return b"botster secrets v1:" + owner.encode("utf-8", "surrogateescape")


def _get_blocking(place: _Place) -> bytes | None:
    return vault.open_sealed_blocking(
        place.file, place.key_file, _info(place.owner), place.aad, MAX_VALUE, place.key
    )


def _set_blocking(place: _Place, value: bytes) -> bool:
    vault.master_key_blocking(place.key_file)  # an unsafe key file refuses before any mkdir
    ensure_private_dir(place.root)
    ensure_private_dir(place.owner_dir)
    vault.seal_blocking(place.file, place.key_file, _info(place.owner), place.aad, value)
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


async def _run(op: str, key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs fn(*args) on the I/O pool; failures become ``nil, "secrets.<op>: ..."``."""
    try:
        return await current_hub().run_blocking(fn, *args)
    except _SecretError as e:
        return None, f"secrets.{op}: {e}"
    except OSError as e:
        reason = e.strerror or str(e)
        where = e.filename if e.filename is not None else key
        return None, f"secrets.{op}: {where}: {reason[:1].lower()}{reason[1:]}"


# The Lua-facing functions ---------------------------------------------------------------------


@lua_api
async def get(key: str) -> bytes | None | Fail:
    """secrets.get(key) -> string | nil | nil, err

    The value this plugin stored under `key` (binary-safe), or nil when there is none.
    Returns nil, err when the stored value cannot be trusted or read, e.g.
    ``secrets.get: token: stored value failed authentication (tampered, or written with
    another key)``, or when the key file is missing or unsafe. Raises on a bad key name
    (1-128 characters of A-Z a-z 0-9 _ . -). Only the calling plugin's own secrets are
    visible. Example: ``local token = secrets.get("api_token")``
    """
    _check_key(key)
    return await _run("get", key, _get_blocking, _place(key))


@lua_api
async def set(key: str, val: bytes) -> bool | Fail:
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
    return await _run("set", key, _set_blocking, _place(key), val)


@lua_api
async def delete(key: str) -> bool | Fail:
    """secrets.delete(key) -> bool | nil, err

    Removes the calling plugin's secret `key`: true if one was removed, false if there was
    none (deleting twice is fine). Raises on a bad key name.
    Example: ``secrets.delete("api_token")``
    """
    _check_key(key)
    return await _run("delete", key, _delete_blocking, _place(key))


LUA = {"get": get, "set": set, "delete": delete}
WRONG_DOOR = {
    "remove": "use secrets.delete(key)",
    "unset": "use secrets.delete(key)",
    "put": "use secrets.set(key, val)",
    "list": "secrets cannot be listed; keep the names you use in config or in code",
    "all": "secrets cannot be listed; keep the names you use in config or in code",
}
