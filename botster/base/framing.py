"""The hub socket's frame format: encoding, and an incremental decoder that never trusts input.

A frame is ``[u32 little-endian length][u8 type][payload]`` where length counts the type byte
and the payload (so it is at least 1). Types:

| type | name | payload |
|---|---|---|
| 0x01 | JSON | one UTF-8 JSON value (an object for every message the protocol defines) |
| 0x02 | PTY_OUTPUT | session id (u16 LE length + UTF-8) + raw bytes, hub -> client |
| 0x03 | PTY_INPUT | session id + raw bytes, client -> hub |
| 0x04 | SNAPSHOT | session id + u16 rows + u16 cols + bytes that redraw the screen, hub -> client |
| 0x05 | PROCESS_EXITED | session id + i32 exit code (-1 when killed by a signal) |
| 0x06 | BINARY | opaque bytes (``socket.send_binary``) |

``docs/protocol.md`` is the client-facing version of this table.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botster.base.errors import ProtocolError

__all__ = [
    "BINARY",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_FRAME",
    "FrameDecoder",
    "JSON",
    "PROCESS_EXITED",
    "PTY_INPUT",
    "PTY_OUTPUT",
    "SNAPSHOT",
    "BadMessage",
    "Frame",
    "decode_message",
    "request_id_of",
    "encode_frame",
    "encode_json",
    "encode_session",
    "split_session",
]

JSON, PTY_OUTPUT, PTY_INPUT, SNAPSHOT, PROCESS_EXITED, BINARY = 1, 2, 3, 4, 5, 6
TYPE_NAMES = {
    JSON: "json",
    PTY_OUTPUT: "pty_output",
    PTY_INPUT: "pty_input",
    SNAPSHOT: "snapshot",
    PROCESS_EXITED: "process_exited",
    BINARY: "binary",
}
DEFAULT_MAX_FRAME = 16 << 20
DEFAULT_MAX_DEPTH = 64
_HEADER = struct.Struct("<IB")
# Payloads up to this size are decoded by the C scanner (a few ms at worst); larger ones by the
# pure-Python scanner, which is slower but lets a caller on another thread share the GIL.
INLINE_DECODE = 64 << 10
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class BadMessage(ProtocolError):
    """A well-formed JSON frame the hub will not take (too deep, a number out of range).

    Unlike its parent it does not end the connection: the client gets ``bad_message``, or,
    for a request whose id can be read (``request_id``), a failed response.
    """

    request_id: Any = None


_NESTED = re.compile(rb"[\[{]")
_REQUEST = re.compile(rb'"type"\s*:\s*"request"')
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,18}(?![\d.eE])|"[^"\\]{0,200}")')


def request_id_of(payload: bytes) -> Any:
    """The id of a request the hub refuses, read from the top level before the first nested
    value (a client's ``type`` and ``id`` come before its ``args``), else None."""
    nested = _NESTED.search(payload, 1)
    head = payload[: nested.start() if nested else 4096][:4096]
    if not _REQUEST.search(head):
        return None
    m = _ID.search(head)
    return json.loads(m.group(1)) if m else None


def _reject_constant(name: str) -> Any:
    raise BadMessage(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadMessage(f"number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise BadMessage(f"integer {text[:40]}{'...' if len(text) > 40 else ''} is out of range")
    return value


def _depth_exceeds(payload: bytes, max_depth: int) -> bool:
    """Whether the JSON text nests deeper than `max_depth`, found without recursion.

    Strings are blanked first (a bracket inside one does not count), then each pass removes
    every innermost pair; text still left after `max_depth` passes is deeper than that.
    """
    if payload.count(b"[") + payload.count(b"{") <= max_depth:
        return False
    rest = _STRING.sub(b"", payload).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        shorter = rest.replace(b"[]", b"")
        if not shorter or shorter == rest:
            return False  # balanced, or unbalanced (the parser will say so)
        rest = shorter
    return True


def _decoder(pure_python: bool) -> json.JSONDecoder:
    decoder = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_reject_constant)
    if pure_python:
        decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


_C_DECODER = _decoder(False)
_PY_DECODER = _decoder(True)


def decode_message(payload: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Decodes a JSON frame's payload into a message, within the hub's limits.

    Payloads over ``INLINE_DECODE`` bytes are decoded by the pure-Python scanner, which shares
    the GIL as it goes: call this on another thread for them, and the loop keeps running.

    Raises:
        BadMessage: nested deeper than `max_depth`, NaN/Infinity, a float that overflows,
            an integer outside the signed 64-bit range.
        ProtocolError: not UTF-8 JSON, or not an object.
    """
    if _depth_exceeds(payload, max_depth):
        raise BadMessage(f"JSON nested deeper than {max_depth} levels")
    decoder = _C_DECODER if len(payload) <= INLINE_DECODE else _PY_DECODER
    try:
        value = decoder.decode(payload.decode())
    except BadMessage:
        raise
    except RecursionError:
        raise BadMessage(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"JSON frame is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"JSON frame must hold an object, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame."""

    type: int
    payload: bytes
    # A JSON payload over the decoder's max_json: its size; `payload` then holds at most its
    # first 4 KiB (enough to read a request's id).
    skipped: int = 0

    def json(self) -> Any:
        """The payload as a JSON object, trusted (a client reading its hub; the hub's own
        sessions). The hub reads its clients' messages with ``decode_message`` instead.

        Raises:
            ProtocolError: the payload is not UTF-8 JSON or not an object.
        """
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ProtocolError(f"JSON frame is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"JSON frame must hold an object, got {type(value).__name__}")
        return value


def encode_frame(ftype: int, payload: bytes) -> bytes:
    """Encodes one frame."""
    return _HEADER.pack(len(payload) + 1, ftype) + payload


def encode_json(message: Any) -> bytes:
    """Encodes a JSON frame (compact, UTF-8); NaN and infinities become null, never bad JSON."""
    try:
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(message), separators=(",", ":"), ensure_ascii=False)
    return encode_frame(JSON, text.encode())


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode_session(session_id: str, data: bytes) -> bytes:
    """A session-addressed payload: u16 LE id length + id + data."""
    raw = session_id.encode()
    return struct.pack("<H", len(raw)) + raw + data


def split_session(payload: bytes) -> tuple[str, bytes]:
    """Inverse of encode_session.

    Raises:
        ProtocolError: the payload is too short or the id is not UTF-8.
    """
    if len(payload) < 2:
        raise ProtocolError("session frame is shorter than its id length")
    (n,) = struct.unpack_from("<H", payload)
    if len(payload) < 2 + n:
        raise ProtocolError("session frame is shorter than its id")
    try:
        sid = payload[2 : 2 + n].decode()
    except UnicodeDecodeError:
        raise ProtocolError("session id is not UTF-8") from None
    return sid, payload[2 + n :]


class FrameDecoder:
    """Turns a byte stream into frames; raises ProtocolError on the first bad header.

    Args:
        max_frame: the largest accepted frame (type byte + payload), in bytes.
        max_json: a JSON payload larger than this is not kept: its bytes are discarded as
            they arrive and a ``Frame`` with ``skipped`` set stands for it (None: keep all).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, max_json: int | None = None) -> None:
        self.max_frame = max_frame
        self.max_json = max_json
        self._buf = bytearray()
        self._skip = 0  # bytes of a discarded payload still to come

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not ended (kept or being discarded)."""
        return bool(self._buf) or self._skip > 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Adds bytes; yields every frame now complete.

        Raises:
            ProtocolError: a zero length, a length over ``max_frame`` or an unknown type.
        """
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = memoryview(data)[n:]
        # Nothing buffered: frames are cut straight from `data` (one copy per payload instead
        # of two); only an unfinished tail is kept.
        owned = bool(self._buf) or type(data) is not bytes
        if owned:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data  # type: ignore[assignment]
        pos = 0
        try:
            while len(buf) - pos >= _HEADER.size:
                length, ftype = _HEADER.unpack_from(buf, pos)
                if length == 0:
                    raise ProtocolError("frame length 0 (it counts the type byte, so >= 1)")
                if length > self.max_frame:
                    raise ProtocolError(
                        f"frame of {length} bytes is over the limit of {self.max_frame}"
                    )
                if ftype not in TYPE_NAMES:
                    raise ProtocolError(f"unknown frame type 0x{ftype:02x}")
                if ftype == JSON and self.max_json is not None and length - 1 > self.max_json:
                    take = min(len(buf) - pos - 5, length - 1)
                    head = bytes(buf[pos + 5 : pos + 5 + min(take, 4096)])
                    self._skip = length - 1 - take
                    pos += 5 + take
                    yield Frame(JSON, head, skipped=length - 1)
                    continue
                end = pos + 4 + length
                if len(buf) < end:
                    break
                frame = Frame(ftype, bytes(buf[pos + 5 : end]))
                pos = end  # before yielding: a caller that stops early keeps the rest buffered
                yield frame
        finally:
            if owned:
                del self._buf[:pos]
            elif pos < len(buf):
                self._buf += memoryview(buf)[pos:]
