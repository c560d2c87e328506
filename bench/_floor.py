"""The floor of Botster's terminal design in Python: a session and a UI that do nothing else.

Botster's UI and session are two Python processes: a key goes UI -> PTY, its echo PTY ->
session -> UI -> terminal, three passes through an asyncio loop. tmux does it in C, with the
server reading and writing the user's terminal itself. To tell what the design costs from
what Botster's work costs (framing, the terminal model, drawing rows, Textual), ``tui_tmux``
also times this floor: ``SESSION`` holds the program's PTY, hands its master to the UI (as
``input_fd`` does) and sends every read to it unchanged; ``UI``, on its terminal in raw mode,
writes keys to the PTY and the session's bytes to the terminal as they are (the program's
own escape sequences, no model, no drawing).

    floor = Floor(root, program_argv)          # starts SESSION around the program
    term = OuterTerminal(floor.ui_argv(), env) # the UI on a terminal the bench reads
    ...; floor.close()
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

__all__ = ["Floor"]

SESSION = r"""
import asyncio, fcntl, os, socket, struct, subprocess, sys, termios
path, rows, cols, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
child = subprocess.Popen(
    argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
)
os.close(slave)
os.set_blocking(master, False)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
socket.send_fds(conn, [b"m"], [master])

async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def readable():
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            conn.sendall(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(master, readable)
    await done

try:
    asyncio.run(main())
finally:
    child.kill()
"""

UI = r"""
import asyncio, os, socket, sys, tty
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(sys.argv[1])
_, fds, _, _ = socket.recv_fds(conn, 1, 1)
master = fds[0]
tty.setraw(0)
conn.setblocking(False)

async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def key():
        data = os.read(0, 4096)
        if data:
            os.write(master, data)
        elif not done.done():
            done.set_result(None)

    def output():
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        if data:
            os.write(1, data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(0, key)
    loop.add_reader(conn.fileno(), output)
    await done

asyncio.run(main())
"""


class Floor:
    """``SESSION`` running `argv` on a `rows` x `cols` PTY, waiting for one ``UI``."""

    def __init__(self, root: Path, argv: list[str], rows: int, cols: int) -> None:
        (root / "floor_session.py").write_text(SESSION)
        (root / "floor_ui.py").write_text(UI)
        self.root = root
        self.socket = str(root / "floor.sock")
        self.proc = subprocess.Popen(
            [sys.executable, str(root / "floor_session.py"), self.socket, str(rows), str(cols)]
            + argv,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"listening\n":
            raise RuntimeError("the floor session did not start")

    def ui_argv(self) -> list[str]:
        return [sys.executable, str(self.root / "floor_ui.py"), self.socket]

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
