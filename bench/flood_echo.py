"""Key to echo while the same terminal floods coloured output: what the terminal model costs.

A session process keeps a terminal model for snapshots (``sessions/terminal.py``). It lags the
output and draws it a few KiB per turn of the session's loop (``Session._model_step``), so
output the model cannot skip (coloured text; plain lines it mostly skips) never keeps the PTY
unread for long. This measures what a user feels of it: keys typed into a terminal whose
program floods.

The program: ``sh -c 'stty -icanon echo; while :; do cat FILE; done'``, FILE being 1 MiB of
words in SGR colours with line breaks. A key is ``@`` (FILE has none). The tty echoes it into
the flood, so the program adds nothing. A key is timed from its write until the output that
holds its echo reaches the reader.

* raw PTY: ``os.openpty`` in this process, read with ``loop.add_reader`` + ``os.read``; the
  key written to the master. The floor;
* raw PTY + model in line (baseline): the same reader drawing each read on the session's
  terminal model before it reads again, as a holder with its model on the forwarding path
  does (tmux, and the session process before issue 11);
* Botster into the hub: a session process and a ``SessionClient`` (the hub's side) in this
  process; the key through the session.

Blocks of keys, ``GAP_S`` apart, rotate between the three, each block with a fresh program.
Goal: Botster's p99 within 3x the in-line reader's. Under a flood the model cannot skip, the
session draws as much as it reads, so it cannot beat drawing in line; it must stay near it.
Drawing each 1 MiB batch at once (before) left keys up to 30 ms behind it (p99 ~20x).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import signal
import struct
import termios
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import Result, header, median, p99, verdict
from bench._hub import Sandbox
from bench._tui import latency_line
from botster.sessions.client import SessionClient, spawn_session
from botster.sessions.terminal import make_terminal

__all__ = ["run"]

BLOCKS, PER_BLOCK = 4, 100
GAP_S = 0.005
SETTLE_S = 0.5  # the flood runs before the first key
WITHIN_S = 10.0
ROWS, COLS = 50, 200
KEY = b"@"
GOAL = 3.0


def _write_coloured(path: Path, size: int = 1 << 20) -> None:
    rnd = random.Random(1)
    words = ["build", "ok", "warning:", "x" * 40]
    parts, total = [], 0
    while total < size:
        part = f"\x1b[{rnd.randint(30, 37)}m{rnd.choice(words)} \x1b[0m"
        if rnd.random() < 0.1:
            part += "\r\n"
        parts.append(part)
        total += len(part)
    path.write_text("".join(parts))


class _Echoes:
    """Counts the echoed keys in the output and wakes the one waiting for the next."""

    def __init__(self) -> None:
        self.count = 0
        self._want = 0
        self._arrived: asyncio.Future[float] | None = None

    def feed(self, data: bytes) -> None:
        self.count += data.count(KEY)
        if self._arrived is not None and self.count >= self._want:
            self._arrived.set_result(time.perf_counter())
            self._arrived = None

    async def key(self, write: Callable[[bytes], object]) -> float:
        """Types one key; its echo's latency in ms."""
        self._want = self.count + 1
        self._arrived = asyncio.get_running_loop().create_future()
        arrived = self._arrived
        t0 = time.perf_counter()
        write(KEY)
        return (await asyncio.wait_for(arrived, WITHIN_S) - t0) * 1e3


async def _block(echoes: _Echoes, write: Callable[[bytes], object]) -> list[float]:
    await asyncio.sleep(SETTLE_S)
    out = []
    for _ in range(PER_BLOCK):
        out.append(await echoes.key(write))
        await asyncio.sleep(GAP_S)
    return out


async def _raw(argv: list[str], model: bool = False) -> list[float]:
    loop = asyncio.get_running_loop()
    terminal = make_terminal(ROWS, COLS, 1000) if model else None
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    os.set_blocking(master, False)
    echoes = _Echoes()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            data = os.read(master, 64 << 10)
            echoes.feed(data)
            if terminal is not None:
                terminal.render(data)

    loop.add_reader(master, readable)
    try:
        return await _block(echoes, lambda key: os.write(master, key))
    finally:
        loop.remove_reader(master)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        os.close(master)


async def _session(sandbox: Sandbox, argv: list[str]) -> list[float]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(sandbox.env)
    try:
        _, sock = await spawn_session(
            {"cmd": argv[0], "args": argv[1:], "rows": ROWS, "cols": COLS}, sandbox.runtime
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    echoes = _Echoes()
    client = await SessionClient.connect(sock, on_output=lambda out: echoes.feed(out.data))
    try:
        return await _block(echoes, client.write)
    finally:
        await client.close()


async def _measure(sandbox: Sandbox) -> tuple[list[float], list[float], list[float]]:
    coloured = sandbox.root / "coloured.txt"
    _write_coloured(coloured)
    argv = ["sh", "-c", f"stty -icanon echo; while :; do cat {coloured}; done"]
    got: dict[str, list[float]] = {"raw": [], "inline": [], "botster": []}
    order = list(got)
    for block in range(BLOCKS):
        for path in order[block % 3 :] + order[: block % 3]:
            if path == "raw":
                got[path] += await _raw(argv)
            elif path == "inline":
                got[path] += await _raw(argv, model=True)
            else:
                got[path] += await _session(sandbox, argv)
    return got["raw"], got["inline"], got["botster"]


def run() -> list[Result]:
    header("flood_echo: key to echo while the terminal floods coloured output")
    with Sandbox() as sandbox:
        raw, inline, botster = asyncio.run(_measure(sandbox))
    print(latency_line("raw PTY", raw))
    print(latency_line("raw PTY + model in line (baseline)", inline))
    print(latency_line("Botster into the hub", botster))
    ok = p99(botster) <= GOAL * p99(inline)
    print(f"  p99 {p99(botster) / p99(inline):.2f}x in line (goal <= {GOAL}x): {verdict(ok)}")
    return [
        Result("flood_echo", "Botster into the hub p99 vs model in line", p99(botster),
               p99(inline), "ms", goal=f"<= {GOAL}x", passed=ok),
        Result("flood_echo", "Botster into the hub p50 vs model in line", median(botster),
               median(inline), "ms"),
        Result("flood_echo", "model in line p99 vs raw PTY", p99(inline), p99(raw), "ms"),
    ]  # fmt: skip


if __name__ == "__main__":
    run()
