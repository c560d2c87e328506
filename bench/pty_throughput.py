"""PTY throughput: how fast a program's output gets through a session into the hub and out.

The program is ``sh -c 'read _; cat FILE; echo; echo BENCH-END'`` with FILE 32 MB of base64
lines (76 columns, like a build log scrolling by): it waits for one line of input so that every
reader is in place first, and the clock runs from that input to the end marker arriving. Four
readers of the same program, interleaved in rotating order, 5 rounds, median (as in
``bench/pty_anchors.py``: every reader runs once in each place of a round, so load that drifts
over a round favours none of them):

* raw (baseline): ``os.openpty`` in this process, the program on the slave side, the master
  read with ``loop.add_reader`` and ``os.read(fd, 64 KiB)`` (one read per wake-up: a PTY read
  returns at most ~4 KiB);
* raw + model (information): the same reader feeding every chunk to the session's terminal
  model (``make_terminal``), as the session process does before forwarding: the ceiling of
  any session that keeps its screen model in the read path;
* into the hub: a session process started with ``spawn_session`` and a ``SessionClient``
  connected to it from this process, which is exactly the hub's side of a session (the hub's
  own ingestion cannot be observed from outside without changing the product);
* to a socket client: a session started by a real hub (``pty.spawn`` from a plugin command)
  and a client attached to it over the hub socket (``subscribe terminal``): PTY_OUTPUT bytes.

Every reader must see every byte (the counts are compared; a session whose hub falls more than
its 4 MiB ring behind drops output, which would show; a socket client that falls behind gets
a fresh snapshot instead of the held bytes, by design: ``watchers.RESYNC_BYTES``). Goals
(from the issue): into the hub at least 0.8x the raw read, to an attached client at least 0.7x.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import os
import struct
import termios
import time
from pathlib import Path

from bench._common import Result, header, median, verdict
from bench._hub import SPAWNER, HubRun, Sandbox
from botster.base.framing import (
    PTY_INPUT,
    PTY_OUTPUT,
    SNAPSHOT,
    Frame,
    encode_frame,
    encode_session,
    split_session,
)
from botster.sessions.client import SessionClient, SessionEvent, spawn_session
from botster.sessions.terminal import make_terminal
from botster.transports.client import HubConnection

__all__ = ["run"]

SIZE_MB = 32
ROUNDS = 5
PATHS = ("raw", "model", "hub", "client")
READ_SIZE = 64 << 10  # more than a PTY read ever returns
ROWS, COLS = 24, 80
END = b"BENCH-END"  # not in the base64 alphabet, so it cannot occur in the data
SETTLE_S = 0.2  # after a reader is in place, before the go
GOAL_HUB, GOAL_CLIENT = 0.8, 0.7


def _write_data(path: Path) -> int:
    """SIZE_MB MB of base64 lines; returns the file size."""
    with path.open("wb") as f:
        for _ in range(SIZE_MB):
            f.write(base64.encodebytes(os.urandom(768 << 10)))  # 1 MiB of text per block
    return path.stat().st_size


class _Counter:
    """Counts bytes and spots the end marker, even split across two chunks."""

    def __init__(self) -> None:
        self.bytes = 0
        self.resyncs = 0
        self.done = asyncio.get_running_loop().create_future()
        self.finished = 0.0
        self._tail = b""

    def resync(self, data: bytes) -> None:
        """A fresh snapshot instead of held bytes (the hub's answer to a client that fell
        behind): its bytes are not counted, but the marker may be in it."""
        self.resyncs += 1
        if END in data and not self.done.done():
            self.finished = time.perf_counter()
            self.done.set_result(None)

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        keep = len(END) - 1
        if END in data or END in self._tail + data[:keep]:
            if not self.done.done():
                self.finished = time.perf_counter()
                self.done.set_result(None)
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[-keep:]


async def _raw(argv: list[str], *, model: bool = False) -> tuple[float, int]:
    """The baseline: (seconds from the go to the marker, bytes read); with `model`, every
    chunk also goes through the session's terminal model."""
    loop = asyncio.get_running_loop()
    terminal = make_terminal(ROWS, COLS, 1000) if model else None
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    os.set_blocking(master, False)
    counter = _Counter()

    def readable() -> None:
        try:
            data = os.read(master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: the program is gone
            data = b""
        if not data:
            loop.remove_reader(master)
            if not counter.done.done():
                counter.done.set_exception(RuntimeError("raw: end of output before the marker"))
            return
        if terminal is not None:
            terminal.feed(data)
        counter.feed(data)

    loop.add_reader(master, readable)
    try:
        await asyncio.sleep(SETTLE_S)
        t0 = time.perf_counter()
        os.write(master, b"\n")
        await asyncio.wait_for(counter.done, 120)
        return counter.finished - t0, counter.bytes
    finally:
        loop.remove_reader(master)
        await asyncio.wait_for(proc.wait(), 10)
        os.close(master)


async def _into_hub(sandbox: Sandbox, argv: list[str]) -> tuple[float, int, int]:
    """A SessionClient on a session: (seconds, output bytes, bytes the session dropped)."""
    # The session process inherits this process's environment: the sandbox's, for the spawn
    # (bytecode cache in the temp prefix, never in the source tree).
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(sandbox.env)
    try:
        _, sock = await spawn_session({"cmd": argv[0], "args": argv[1:]}, sandbox.runtime)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    counter = _Counter()
    dropped = 0

    def on_event(ev: SessionEvent) -> None:
        nonlocal dropped
        if ev.type == "dropped":
            dropped += int(ev.data.get("bytes", 0))

    client = await SessionClient.connect(
        sock, on_output=lambda out: counter.feed(out.data), on_event=on_event
    )
    try:
        await asyncio.sleep(SETTLE_S)
        t0 = time.perf_counter()
        client.write(b"\n")
        await asyncio.wait_for(counter.done, 120)
        return counter.finished - t0, counter.bytes, dropped
    finally:
        await client.close()


async def _to_client(conn: HubConnection, argv: list[str]) -> tuple[float, int]:
    """A socket client attached through the hub: (seconds, PTY_OUTPUT bytes)."""
    sid = await conn.request("bench.spawn", {"cmd": argv[0], "args": argv[1:]})
    counter = _Counter()
    snapshot = asyncio.get_running_loop().create_future()

    def on_frame(frame: Frame) -> None:
        fsid, data = split_session(frame.payload)
        if fsid != sid:
            return
        if frame.type == SNAPSHOT and not snapshot.done():
            snapshot.set_result(None)
        elif frame.type == SNAPSHOT:
            counter.resync(data)
        elif frame.type == PTY_OUTPUT:
            counter.feed(data)

    conn.on_frame = on_frame
    conn.subscribe("terminal", {"session_id": sid, "rows": ROWS, "cols": COLS})
    try:
        await asyncio.wait_for(snapshot, 10)
        await asyncio.sleep(SETTLE_S)
        t0 = time.perf_counter()
        conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, b"\n")))
        await asyncio.wait_for(counter.done, 120)
        return counter.finished - t0, counter.bytes
    finally:
        conn.send({"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}})
        await conn.request("bench.close", {"id": sid})


def _mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


async def _measure(sandbox: Sandbox) -> dict[str, list[tuple[float, int]]]:
    data = sandbox.root / "data.b64"
    size = _write_data(data)
    argv = ["sh", "-c", f"read _; cat {data}; echo; echo {END.decode()}"]
    print(f"  data: {size / 1e6:.1f} MB of base64 lines; {ROUNDS} rounds, interleaved")
    sandbox.write_plugin("spawner", SPAWNER)
    hub = HubRun(sandbox)
    await hub.start()
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in PATHS}
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        await _raw(argv)  # warm-up: page cache for the file and the programs
        for i in range(ROUNDS):
            for path in PATHS[i % len(PATHS) :] + PATHS[: i % len(PATHS)]:
                if path == "raw":
                    runs["raw"].append(await _raw(argv))
                elif path == "model":
                    runs["model"].append(await _raw(argv, model=True))
                elif path == "hub":
                    secs, nbytes, dropped = await _into_hub(sandbox, argv)
                    runs["hub"].append((secs, nbytes))
                    if dropped:
                        print(
                            f"  round {i + 1}: the session dropped {dropped} bytes (its hub lagged)"
                        )
                else:
                    runs["client"].append(await _to_client(conn, argv))
            print(
                f"  round {i + 1}: "
                + "   ".join(
                    f"{name} {_mbps(runs[name][-1][1], runs[name][-1][0]):6.1f} MB/s"
                    for name in runs
                )
            )
        await conn.close()
    finally:
        await hub.stop()
    for line in hub.lines:
        if " dropped" in line or " ERROR " in line or "Traceback" in line:
            print(f"  hub log: {line}")
    return runs


def run() -> list[Result]:
    header(f"pty_throughput: {SIZE_MB} MB through a PTY: raw read, into the hub, to a client")
    with Sandbox() as sandbox:
        runs = asyncio.run(_measure(sandbox))
    expected = runs["raw"][0][1]
    rates = {name: median([_mbps(n, s) for s, n in rs]) for name, rs in runs.items()}
    labels = {
        "raw": "raw PTY read (baseline)",
        "model": "raw read + terminal model",
        "hub": "into the hub (SessionClient)",
        "client": "to a socket client (hub)",
    }
    for name, rs in runs.items():
        got = {n for _, n in rs}
        complete = "every byte" if got == {expected} else f"bytes {sorted(got)} of {expected}"
        if got != {expected} and name == "client":
            complete += " (the hub resynced a lagging client with a snapshot)"
        ratio = rates[name] / rates["raw"]
        print(f"  {labels[name]:<30} {rates[name]:7.1f} MB/s  {ratio:5.2f}x raw   {complete}")
    results = [
        Result(
            "pty_throughput",
            "raw PTY read + the session's terminal model",
            rates["model"],
            rates["raw"],
            "MB/s",
        )
    ]
    for name, goal in (("hub", GOAL_HUB), ("client", GOAL_CLIENT)):
        ratio = rates[name] / rates["raw"]
        passed = ratio >= goal and all(n == expected for _, n in runs[name])
        print(f"  goal: {labels[name]} >= {goal:g}x raw: {verdict(passed)}")
        metric = (
            "PTY output into the hub (SessionClient)"
            if name == "hub"
            else "PTY output to an attached socket client"
        )
        results.append(
            Result(
                "pty_throughput",
                metric,
                rates[name],
                rates["raw"],
                "MB/s",
                f">= {goal:g}x raw",
                passed,
            )
        )
    return results


if __name__ == "__main__":
    run()
