"""The session protocol's codec and the spawn config: what crosses the session socket.

The protocol itself (message order, every message and its fields) is described once, in the
docstring of ``botster.sessions.process``; this module is its codec. Frames use the hub's frame
format (``botster.base.framing``: ``[u32 LE length][u8 type][payload]``) and four of its
type numbers, with payloads specific to this link (the socket *is* the session, so no session
id is carried):

| type | name | direction | payload |
|---|---|---|---|
| 0x01 | JSON | both | one JSON object with a ``type`` field |
| 0x02 | OUTPUT | session -> hub | u64 LE offset of the first byte + raw PTY bytes |
| 0x03 | INPUT | hub -> session | raw bytes for the PTY |
| 0x04 | SNAPSHOT | session -> hub | u32 LE header length + JSON header + ANSI screen bytes |

Not here: sockets, processes and files (``process.py``, ``client.py``, ``files.py``).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from botster.base.errors import ProtocolError, SessionError
from botster.base.framing import (
    DEFAULT_MAX_FRAME,
    JSON,
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    FrameDecoder,
    encode_frame,
    encode_json,
)

__all__ = [
    "INPUT",
    "JSON",
    "MAX_FRAME",
    "OUTPUT",
    "OUTPUT_CHUNK",
    "PROTOCOL_VERSION",
    "SNAPSHOT",
    "FrameDecoder",
    "SpawnConfig",
    "check_session_id",
    "decode_output",
    "decode_snapshot",
    "encode_input",
    "encode_message",
    "encode_output",
    "encode_snapshot",
    "new_session_id",
]

PROTOCOL_VERSION = 1
OUTPUT, INPUT = PTY_OUTPUT, PTY_INPUT
MAX_FRAME = DEFAULT_MAX_FRAME
OUTPUT_CHUNK = 1 << 20  # the most output one frame carries
_OFFSET = struct.Struct("<Q")
_HEADER_LEN = struct.Struct("<I")
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def encode_message(message: dict[str, Any]) -> bytes:
    """A JSON frame."""
    return encode_json(message)


_OUTPUT_HEADER = struct.Struct("<IBQ")  # the frame header (length, type) and the offset


def encode_output(offset: int, data: bytes) -> bytes:
    """An OUTPUT frame: ``data`` starts at byte ``offset`` of the session's output."""
    # One copy of the data, not three: this runs for every chunk a session forwards.
    return _OUTPUT_HEADER.pack(len(data) + 1 + _OFFSET.size, OUTPUT, offset) + data


def decode_output(payload: bytes) -> tuple[int, bytes]:
    """Inverse of encode_output.

    Raises:
        ProtocolError: the payload is shorter than its offset.
    """
    if len(payload) < _OFFSET.size:
        raise ProtocolError("output frame is shorter than its offset")
    return _OFFSET.unpack_from(payload)[0], payload[_OFFSET.size :]


def encode_input(data: bytes) -> bytes:
    """An INPUT frame."""
    return encode_frame(INPUT, data)


def encode_snapshot(header: dict[str, Any], data: bytes) -> bytes:
    """A SNAPSHOT frame: a JSON header (id, rows, cols, cursor, ...) and the screen bytes."""
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return encode_frame(SNAPSHOT, _HEADER_LEN.pack(len(raw)) + raw + data)


def decode_snapshot(payload: bytes) -> tuple[dict[str, Any], bytes]:
    """Inverse of encode_snapshot.

    Raises:
        ProtocolError: a truncated payload or a header that is not a JSON object.
    """
    if len(payload) < _HEADER_LEN.size:
        raise ProtocolError("snapshot frame is shorter than its header length")
    (n,) = _HEADER_LEN.unpack_from(payload)
    end = _HEADER_LEN.size + n
    if len(payload) < end:
        raise ProtocolError("snapshot frame is shorter than its header")
    try:
        header = json.loads(payload[_HEADER_LEN.size : end])
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"snapshot header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("snapshot header must be a JSON object")
    return header, payload[end:]


def new_session_id() -> str:
    """A fresh id: ``sess-<epoch seconds>-<12 hex>``."""
    # os.urandom, not `secrets`: that module pulls in hashlib and OpenSSL (~3 MB per session).
    return f"sess-{int(time.time())}-{os.urandom(6).hex()}"


def check_session_id(session_id: object) -> str:
    """Returns ``session_id`` if it is safe as a file name.

    Raises:
        SessionError: anything but 1-80 characters of ``[A-Za-z0-9._-]`` (not starting with
            ``.``, ``_`` or ``-``).
    """
    if not isinstance(session_id, str) or not _SESSION_ID_RE.fullmatch(session_id):
        raise SessionError(
            f"session id must be 1-80 characters of [A-Za-z0-9._-] starting with a letter or "
            f"digit, got {session_id!r}"
        )
    return session_id


@dataclass(frozen=True)
class SpawnConfig:
    """What the hub asks a session process to run, and how the session behaves.

    ``env`` is applied over the session process's own environment (which is the hub's); a
    ``None`` value removes a variable. ``TERM`` defaults to ``xterm-256color``;
    ``BOTSTER_SESSION_ID`` is always set. ``cwd`` defaults to the session's starting directory.
    """

    cmd: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str | None] = field(default_factory=dict)
    cwd: str | None = None
    rows: int = 24
    cols: int = 80
    session_id: str | None = None
    buffer_size: int = 4 << 20
    orphan_timeout: float = 24 * 3600.0
    kill_grace: float = 3.0
    scrollback: int = 1000
    # Opaque to the session, given back in its metadata and discovery record: how the hub
    # knows after a restart which sessions are its own and what each one was (agent, branch).
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: object) -> SpawnConfig:
        """Validates a decoded JSON spawn config.

        Raises:
            SessionError: a missing ``cmd``, an unknown key or a value of the wrong type or range;
                the message names the key.
        """
        if not isinstance(value, dict):
            raise SessionError(f"spawn config must be an object, got {type(value).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise SessionError(
                f"spawn config: unknown key(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(known)})"
            )
        cmd = value.get("cmd")
        if not isinstance(cmd, str) or not cmd:
            raise SessionError(f"spawn config: cmd: expected a non-empty string, got {cmd!r}")
        args = value.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise SessionError(f"spawn config: args: expected a list of strings, got {args!r}")
        env = value.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and k and "=" not in k and (v is None or isinstance(v, str))
            for k, v in env.items()
        ):
            raise SessionError(
                "spawn config: env: expected an object of name -> string (or null to unset)"
            )
        cwd = value.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise SessionError(f"spawn config: cwd: expected a string, got {cwd!r}")
        sid = value.get("session_id")
        if sid is not None:
            check_session_id(sid)
        labels = value.get("labels", {})
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise SessionError("spawn config: labels: expected an object of name -> string")
        return cls(
            cmd=cmd,
            args=list(args),
            env=dict(env),
            cwd=cwd,
            rows=_int(value, "rows", 24, 1, 1000),
            cols=_int(value, "cols", 80, 1, 1000),
            session_id=sid,
            buffer_size=_int(value, "buffer_size", 4 << 20, 1024, 1 << 32),
            orphan_timeout=_number(value, "orphan_timeout", 24 * 3600.0, positive=True),
            kill_grace=_number(value, "kill_grace", 3.0, positive=False),
            scrollback=_int(value, "scrollback", 1000, 0, 1_000_000),
            labels=dict(labels),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``from_dict`` accepts."""
        return asdict(self)


def _int(value: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = value.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SessionError(f"spawn config: {key}: expected an integer from {lo} to {hi}, got {v!r}")
    return v


def _number(value: dict[str, Any], key: str, default: float, *, positive: bool) -> float:
    v = value.get(key, default)
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (v <= 0 if positive else v < 0):
        what = "a positive number" if positive else "a number >= 0"
        raise SessionError(f"spawn config: {key}: expected {what}, got {v!r}")
    return float(v)
