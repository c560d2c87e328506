"""A PTY's input: written without ever blocking, and handed from the session to its hub.

``InputQueue`` writes bytes to a PTY master; what the program has not read yet waits, up to a
limit, and is written as the PTY takes it. The session process uses one for INPUT frames; a
hub that holds the session's PTY (below) uses one for keystrokes.

Why a hub writes to the session's PTY itself: a keystroke that goes hub -> session -> PTY
wakes one more process than hub -> PTY, and on these machines that hop is most of the
difference between Botster's and tmux's key-to-echo (measured in ``bench/socket_echo``).
Output still comes only from the session, which alone reads the PTY.

The hand-over (session protocol, ``process.py``): a hub opens a second connection to the
session socket and sends ``{"type": "input_fd", "version": 1}`` as its first frame. The session
answers ``{"type": "input_fd"}`` with a duplicate of its PTY master attached (SCM_RIGHTS) and
closes that connection; the hub then writes its input itself, and closes its copy when its
session connection ends or the child exits. The session refuses (``{"type": "error"}``) while
input it was sent earlier still waits to be written (the new writer would overtake it) or
once the child has exited; that hub sends INPUT frames instead, as to a session of an older
version.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

from botster.base.errors import ProtocolError, SessionError
from botster.sessions.protocol import (
    JSON,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameDecoder,
    encode_message,
)

__all__ = ["INPUT_LIMIT", "InputQueue", "send_pty_fd", "take_pty_fd"]

INPUT_LIMIT = 1 << 20  # bytes the program has not read before more input is dropped
_FD = array.array("i")


class InputQueue:
    """Input for a PTY master (non-blocking), written in order, never blocking the loop.

    Args:
        fd: the PTY master (O_NONBLOCK). The queue never closes it: its owner does.
        on_dropped: called with the size of a write refused because ``limit`` bytes are
            still unread (the program is not reading).
        limit: bytes that may wait.
    """

    def __init__(
        self, fd: int, on_dropped: Callable[[int], None], limit: int = INPUT_LIMIT
    ) -> None:
        self.fd = fd
        self._on_dropped = on_dropped
        self._limit = limit
        self._pending = bytearray()
        self._writing = False  # a writer callback waits for the PTY to take more
        self._closed = False

    @property
    def empty(self) -> bool:
        """Nothing waits to be written."""
        return not self._pending

    def write(self, data: bytes) -> None:
        """Writes `data` after everything before it; queues what the PTY does not take."""
        if self._closed or not data:
            return
        if len(self._pending) + len(data) > self._limit:
            self._on_dropped(len(data))
            return
        self._pending += data
        if not self._writing:
            self._flush()

    def close(self) -> None:
        """Stops writing; what still waits is dropped (the program or its PTY is gone)."""
        self._closed = True
        self._pending.clear()
        self._stop_waiting()

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            try:
                n = os.write(self.fd, pending)
            except BlockingIOError:
                if not self._writing:
                    self._writing = True
                    asyncio.get_running_loop().add_writer(self.fd, self._flush)
                return
            except OSError:  # EIO: the program is gone
                pending.clear()
                break
            del pending[:n]
        self._stop_waiting()

    def _stop_waiting(self) -> None:
        if self._writing:
            self._writing = False
            with contextlib.suppress(OSError, RuntimeError):
                asyncio.get_running_loop().remove_writer(self.fd)


def send_pty_fd(sock: socket.socket, master: int) -> None:
    """Session side: sends the ``input_fd`` answer with `master` attached on `sock`.

    `sock` is the connection's socket as asyncio holds it (nothing written on it yet); a
    duplicate is used, since asyncio's own socket object may not send ancillary data.

    Raises:
        OSError: the hub hung up, or the socket would block.
    """
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        socket.send_fds(dup, [encode_message({"type": "input_fd"})], [master])


async def take_pty_fd(socket_path: Path | str, timeout_s: float) -> int:
    """Hub side: asks the session at `socket_path` for its PTY master; returns a copy.

    The copy is close-on-exec, so no program the hub starts later holds another's terminal.

    Raises:
        SessionError: the session refused (its reason), sent no descriptor, or the exchange
            failed or took longer than `timeout_s`.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    fd = sock.fileno()
    got: asyncio.Future[tuple[bytes, list[int]]] = loop.create_future()

    def readable() -> None:
        try:
            # Not socket.recv_fds: in Python 3.11 it drops its flags, and the copy would be
            # inherited by every program the hub starts.
            data, ancillary, _flags, _addr = sock.recvmsg(
                MAX_FRAME, socket.CMSG_SPACE(_FD.itemsize), socket.MSG_CMSG_CLOEXEC
            )
        except BlockingIOError:
            return
        except OSError as e:
            if not got.done():
                got.set_exception(e)
            return
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if got.done():
            for extra in fds:
                os.close(extra)
        else:
            got.set_result((data, list(fds)))

    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, str(socket_path))
            await loop.sock_sendall(
                sock, encode_message({"type": "input_fd", "version": PROTOCOL_VERSION})
            )
            loop.add_reader(fd, readable)
            try:
                data, fds = await got
            finally:
                loop.remove_reader(fd)
    except (OSError, TimeoutError) as e:
        raise SessionError(f"input_fd: {e or 'no answer in time'}") from None
    finally:
        sock.close()
    return _checked_fd(data, fds)


def _checked_fd(data: bytes, fds: list[int]) -> int:
    """The descriptor of an ``input_fd`` answer, once it is known to be what was asked for."""
    try:
        frame = next(iter(FrameDecoder(MAX_FRAME).feed(data)), None)
        message = frame.json() if frame is not None and frame.type == JSON else {}
    except ProtocolError:
        message = {}
    if message.get("type") == "input_fd" and len(fds) == 1 and os.isatty(fds[0]):
        os.set_blocking(fds[0], False)  # the session's already is: one open file, one flag
        return fds[0]
    for fd in fds:
        os.close(fd)
    if message.get("type") == "error":
        raise SessionError(f"input_fd: the session refused: {message.get('message')}")
    raise SessionError(f"input_fd: unexpected answer {data[:80]!r} with {len(fds)} descriptors")
