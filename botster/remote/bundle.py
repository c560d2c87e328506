"""The hub's key bundle (protocol version 6), the pairing URL that carries it, and its QR code.

A bundle is 161 bytes: ``[0x06][32 hub curve25519 identity][32 hub ed25519][32 one-time
curve25519 key][64 ed25519 signature over bytes 0..97]``. The pairing URL is
``<relay public url>/hubs/<server id>/pairing#<BASE32(bundle)>`` (RFC 4648, upper case, no
padding): the bundle travels only in the fragment, which browsers never send to a server.
The QR code has two segments, byte mode up to and including ``#`` and alphanumeric mode for the
Base32 tail (whose alphabet is a subset of QR's alphanumeric one), drawn with half blocks.

Pure functions; the account that signs lives in ``botster.remote.olm``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from botster.base.errors import BotsterError

__all__ = [
    "BUNDLE_LEN",
    "BUNDLE_VERSION",
    "Bundle",
    "BundleError",
    "b32decode",
    "b32encode",
    "build",
    "pairing_url",
    "parse_pairing_url",
    "make_qr",
    "qr_ascii",
    "qr_segments",
    "verify",
]

BUNDLE_VERSION = 6
BUNDLE_LEN = 161
_SIGNED = 97  # bytes covered by the signature


class BundleError(BotsterError, ValueError):
    """A bundle or pairing URL that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle's keys (raw 32-byte public keys)."""

    identity_key: bytes
    signing_key: bytes
    one_time_key: bytes
    raw: bytes


def b64u(data: bytes) -> str:
    """Standard base64 without padding (the wire's key and message encoding)."""
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    """Decodes standard base64 with or without padding.

    Raises:
        ValueError: not base64.
    """
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def build(
    identity_key: bytes,
    signing_key: bytes,
    one_time_key: bytes,
    sign: Callable[[bytes], bytes],
) -> bytes:
    """Builds a signed bundle.

    Args:
        identity_key, signing_key, one_time_key: raw 32-byte public keys.
        sign: returns the 64-byte Ed25519 signature of its argument.
    """
    for name, key in (("identity", identity_key), ("signing", signing_key), ("otk", one_time_key)):
        if len(key) != 32:
            raise BundleError(f"{name} key: expected 32 bytes, got {len(key)}")
    head = bytes([BUNDLE_VERSION]) + identity_key + signing_key + one_time_key
    sig = sign(head)
    if len(sig) != 64:
        raise BundleError(f"signature: expected 64 bytes, got {len(sig)}")
    return head + sig


def verify(
    raw: bytes, *, identity_key: bytes | None = None, signing_key: bytes | None = None
) -> Bundle:
    """Parses and verifies a bundle; with pinned keys, also checks they match.

    Raises:
        BundleError: wrong size or version, a bad signature, or keys other than the pinned ones.
    """
    if len(raw) != BUNDLE_LEN:
        raise BundleError(f"bundle: expected {BUNDLE_LEN} bytes, got {len(raw)}")
    if raw[0] != BUNDLE_VERSION:
        raise BundleError(f"bundle: version {raw[0]} is not supported (expected {BUNDLE_VERSION})")
    ident, signing, otk, sig = raw[1:33], raw[33:65], raw[65:97], raw[97:]
    try:
        Ed25519PublicKey.from_public_bytes(signing).verify(sig, raw[:_SIGNED])
    except (InvalidSignature, ValueError):
        raise BundleError("bundle: the signature does not verify") from None
    if identity_key is not None and ident != identity_key:
        raise BundleError("bundle: identity key differs from the pinned one (possible MITM)")
    if signing_key is not None and signing != signing_key:
        raise BundleError("bundle: signing key differs from the pinned one (possible MITM)")
    return Bundle(ident, signing, otk, bytes(raw))


def b32encode(data: bytes) -> str:
    """RFC 4648 Base32, upper case, no padding."""
    return base64.b32encode(data).decode().rstrip("=")


def b32decode(text: str) -> bytes:
    """Inverse of b32encode (case-insensitive, padding optional).

    Raises:
        BundleError: not Base32.
    """
    text = text.strip().upper().rstrip("=")
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError as e:
        raise BundleError(f"pairing code: not Base32: {e}") from None


def pairing_url(relay_url: str, server_id: str, bundle: bytes) -> str:
    """``<relay_url>/hubs/<server_id>/pairing#<BASE32(bundle)>``."""
    return f"{relay_url.rstrip('/')}/hubs/{server_id}/pairing#{b32encode(bundle)}"


def parse_pairing_url(url: str) -> tuple[str, str, Bundle]:
    """Splits a pairing URL into (relay url, server id, verified bundle).

    Raises:
        BundleError: not a pairing URL, or its bundle does not verify.
    """
    base, sep, fragment = url.partition("#")
    parts = urlsplit(base)
    path = parts.path.rstrip("/").split("/")
    if not sep or len(path) < 4 or path[-3] != "hubs" or path[-1] != "pairing":
        raise BundleError(f"not a pairing URL: {base!r}")
    relay = f"{parts.scheme}://{parts.netloc}{'/'.join(path[:-3])}"
    return relay, path[-2], verify(b32decode(fragment))


def qr_segments(url: str) -> list[tuple[str, str]]:
    """The QR segments of a pairing URL: byte mode through ``#``, alphanumeric after."""
    head, sep, tail = url.partition("#")
    if not sep:
        return [(url, "byte")]
    return [(head + sep, "byte"), (tail, "alphanumeric")]


def make_qr(url: str) -> Any:
    """The segno QR code of a pairing URL, with the segments of ``qr_segments``."""
    import segno  # ~10 ms; only when a code is drawn
    from segno import consts

    modes = {"byte": consts.MODE_BYTE, "alphanumeric": consts.MODE_ALPHANUMERIC}
    return segno.make_qr([(text, modes[mode]) for text, mode in qr_segments(url)], error="l")


def qr_ascii(url: str) -> str:
    """The pairing URL's QR code drawn with Unicode half blocks (two modules per character)
    inside a quiet zone of two modules."""
    qr = make_qr(url)
    border = 2
    rows = [list(r) for r in qr.matrix]
    size = len(rows)
    pad = [0] * (size + 2 * border)
    grid = [pad] * border + [[0] * border + r + [0] * border for r in rows] + [pad] * border
    if len(grid) % 2:
        grid.append(pad)
    # Light modules are drawn (full/half blocks), dark ones left blank: on a dark terminal the
    # code reads as dark modules on a light field, the way scanners prefer.
    chars = {(0, 0): "█", (0, 1): "▀", (1, 0): "▄", (1, 1): " "}
    lines = []
    for y in range(0, len(grid), 2):
        top, bottom = grid[y], grid[y + 1]
        lines.append(
            "".join(chars[(int(bool(t)), int(bool(b)))] for t, b in zip(top, bottom, strict=True))
        )
    return "\n".join(lines)
