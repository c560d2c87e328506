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
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botster.base.errors import ProtocolError

__all__ = [
    "BINARY",
    "DEFAULT_MAX_FRAME",
    "FrameDecoder",
    "JSON",
    "PROCESS_EXITED",
    "PTY_INPUT",
    "PTY_OUTPUT",
    "SNAPSHOT",
    "Frame",
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
_HEADER = struct.Struct("<IB")


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame."""

    type: int
    payload: bytes

    def json(self) -> Any:
        """The payload as a JSON object.

        Raises:
            ProtocolError: the payload is not UTF-8 JSON or not an object.
        """
        try:
            value = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(f"JSON frame is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"JSON frame must hold an object, got {type(value).__name__}")
        return value


def encode_frame(ftype: int, payload: bytes) -> bytes:
    """Encodes one frame."""
    return _HEADER.pack(len(payload) + 1, ftype) + payload


def encode_json(message: Any) -> bytes:
    """Encodes a JSON frame (compact, UTF-8)."""
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return encode_frame(JSON, data)


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
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Adds bytes; yields every frame now complete.

        Raises:
            ProtocolError: a zero length, a length over ``max_frame`` or an unknown type.
        """
        self._buf += data
        buf = self._buf
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
                end = pos + 4 + length
                if len(buf) < end:
                    break
                frame = Frame(ftype, bytes(buf[pos + 5 : end]))
                pos = end  # before yielding: a caller that stops early keeps the rest buffered
                yield frame
        finally:
            del buf[:pos]
