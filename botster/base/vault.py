"""Values encrypted at rest under the device's master key: the one place that does it.

Owns the master key file ``$BOTSTER_HOME/secrets.key`` (32 random bytes, created 0600 on first
use; a key file that is not 0600, not ours or not 32 bytes is refused, never repaired) and the
sealed file format ``MAGIC || nonce (12) || AES-256-GCM ciphertext+tag``, written atomically
(temp file, fsync, rename) with mode 0600. Each user of the vault derives its own AES key from
the master key with HKDF-SHA256 and an ``info`` naming it (``botster secrets v1:<plugin>`` for
the ``secrets`` primitive, ``botster push v1`` for web push), and binds each file to its
meaning with associated data, so a file copied to another name fails to decrypt.

Every function here blocks (``_blocking``): call them through ``hub.run_blocking``. What is
stored, and under which names, is left to the callers (``primitives/secrets.py``,
``primitives/push.py``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from botster.base.errors import BotsterError

__all__ = [
    "AUTH_FAILED",
    "MASTER_KEY_BYTES",
    "VaultError",
    "cipher",
    "master_key_blocking",
    "open_sealed_blocking",
    "read_master_blocking",
    "seal_blocking",
]

MASTER_KEY_BYTES = 32
MAGIC = b"BTSEC\x01"  # format version 1
NONCE = 12
TAG = 16
AUTH_FAILED = "stored value failed authentication (tampered, or written with another key)"


class VaultError(BotsterError):
    """The key file or a sealed file cannot be used; the message says which and why."""


def read_master_blocking(path: Path) -> bytes | None:
    """The master key, or None if there is no key file.

    Raises:
        VaultError: the key file is a symlink, not a regular file, not ours, readable by
            others, or not 32 bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: the key file is a symlink
        raise VaultError(f"{path}: cannot open the key file: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise VaultError(f"{path}: the key file is not a regular file")
        if st.st_uid != os.getuid():
            raise VaultError(f"{path}: the key file belongs to uid {st.st_uid}, not to you")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise VaultError(
                f"{path}: the key file has mode {mode:04o}, which lets others read it; "
                f"refusing to use it (if no one else has read it: chmod 600 {path})"
            )
        data = f.read(MASTER_KEY_BYTES + 1)
    if len(data) != MASTER_KEY_BYTES:
        raise VaultError(
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
    key = read_master_blocking(path)
    assert key is not None
    return key


def master_key_blocking(path: Path) -> bytes:
    """The master key, creating the key file first if there is none.

    Raises:
        VaultError: the existing key file is unsafe or corrupt (see ``read_master_blocking``).
    """
    return read_master_blocking(path) or _create_master_blocking(path)


def cipher(master: bytes, info: bytes) -> AESGCM:
    """The AES-256-GCM cipher of one vault user, derived from the master key by HKDF."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
    return AESGCM(hkdf.derive(master))


def open_sealed_blocking(
    file: Path, key_file: Path, info: bytes, aad: bytes, max_size: int, what: str
) -> bytes | None:
    """Decrypts a sealed file; None when there is no such file.

    Args:
        file: the sealed file.
        key_file: the master key file.
        info: the HKDF info naming the vault user.
        aad: associated data binding the file to its meaning.
        max_size: the largest plaintext expected (reads stop there).
        what: how error messages name the value.

    Raises:
        VaultError: the key file is missing or unsafe, or the file fails authentication.
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        blob = f.read(len(MAGIC) + NONCE + max_size + TAG + 1)
    master = read_master_blocking(key_file)
    if master is None:
        raise VaultError(
            f"{what}: the key file {key_file} is missing; stored secrets cannot be decrypted"
        )
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE + TAG:
        raise VaultError(f"{what}: {AUTH_FAILED}")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE]
    try:
        return cipher(master, info).decrypt(nonce, blob[len(MAGIC) + NONCE :], aad)
    except InvalidTag:
        raise VaultError(f"{what}: {AUTH_FAILED}") from None


def seal_blocking(file: Path, key_file: Path, info: bytes, aad: bytes, value: bytes) -> None:
    """Encrypts `value` into `file` (0600), atomically replacing any previous content.

    The directory of `file` must exist (callers make it 0700 with ``ensure_private_dir``).
    The master key file is created if there is none.

    Raises:
        VaultError: the key file is unsafe or corrupt.
        OSError: the disk refuses.
    """
    master = master_key_blocking(key_file)
    nonce = os.urandom(NONCE)
    blob = MAGIC + nonce + cipher(master, info).encrypt(nonce, value, aad)
    tmp = file.with_name(f".{file.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
