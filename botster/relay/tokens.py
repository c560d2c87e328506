"""Hub tokens: minted once, shown once, stored only as SHA-256 hashes.

A token is ``btstr_<43 urlsafe characters>`` (32 random bytes). The relay keeps the hex
SHA-256 of it and finds a token by that hash; the stored and computed hashes are then compared
with ``hmac.compare_digest`` so a lookup never leaks, through timing, how much of a guess was
right. Storage lives in ``store``; this module only makes and checks strings.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

__all__ = ["PREFIX", "bearer_token", "hash_token", "looks_like_token", "mint_token", "same_hash"]

PREFIX = "btstr_"
_SHAPE = re.compile(r"^btstr_[A-Za-z0-9_-]{43}$")


def mint_token() -> str:
    """A new random hub token."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time equality of two token hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def looks_like_token(value: str) -> bool:
    """Whether `value` has a token's shape (to tell a token from a name on ``--revoke``)."""
    return bool(_SHAPE.match(value))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None
