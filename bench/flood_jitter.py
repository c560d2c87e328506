"""Loop responsiveness under output: does routing 20 flooding terminals delay a plugin timer?

One real hub with a ``ticker`` plugin (``timer.every(0.01, ...)`` logging ``tick``) and 20
sessions, each ``sh -c 'while read s; do timeout "$s" yes; done'``: idle until it is sent a
number, then ``yes`` as fast as the PTY takes it for that many seconds. One socket client is
attached to each session (``subscribe terminal``), so every byte is routed through the hub to a
client; the clients only count bytes. Windows, marked in the hub's own log by a plugin
command: quiet, flood, quiet, flood, quiet (each flood block ends with the output drained).

The quiet windows are the same-run baseline: the same ticker, the same 20 sessions and
clients, idle. Jitter is read from the hub's log stamps as in ``loop_jitter``
(``|interval - 10 ms|``, 1 ms resolution). Everything shares this machine's cores: the 20
``yes``, the 20 session processes, the hub and the counting clients. Goal (from the issue):
p99 jitter during the flood below 10 ms.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench._common import Result, header, p99, verdict
from bench._hub import (
    SPAWNER,
    ByteCounter,
    HubRun,
    Sandbox,
    autogroup,
    cpu_seconds,
    runqueue_wait_s,
)
from bench._jitter import TICK_LINE, TICKER, describe, inside, stamps

__all__ = ["run"]

SESSIONS = 20
BLOCKS = 2
FLOOD_S = 3
QUIET_S = 2.5
WARMUP_S = 0.5
DRAIN_S = 0.3  # no byte for this long: the flood is over
GOAL_MS = 10.0
FLOODER = ["sh", "-c", 'while read s; do timeout "$s" yes; done']


async def _drained(counters: list[ByteCounter], within: float = 10.0) -> float:
    """Waits until no client has received anything for DRAIN_S; returns the seconds waited."""
    t0 = time.perf_counter()
    last = sum(c.bytes for c in counters)
    quiet_since = time.perf_counter()
    while time.perf_counter() - t0 < within:
        await asyncio.sleep(0.05)
        now = sum(c.bytes for c in counters)
        if now != last:
            last, quiet_since = now, time.perf_counter()
        elif time.perf_counter() - quiet_since >= DRAIN_S:
            break
    return time.perf_counter() - t0


async def _measure(sandbox: Sandbox) -> tuple[list[float], list[float], list[str]]:
    sandbox.write_plugin("ticker", TICKER)
    sandbox.write_plugin("spawner", SPAWNER)
    hub = HubRun(sandbox)
    await hub.start()
    notes: list[str] = []
    counters: list[ByteCounter] = []
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        ids = await asyncio.gather(
            *(
                conn.request("bench.spawn", {"cmd": FLOODER[0], "args": FLOODER[1:]})
                for _ in range(SESSIONS)
            )
        )
        sock = sandbox.hub_socket()
        counters = [await ByteCounter.attach(sock, sid) for sid in ids]
        await asyncio.sleep(WARMUP_S)
        await conn.request("bench.mark", {"text": "QUIET start"})
        await asyncio.sleep(QUIET_S)
        records = sandbox.session_records()
        session_pids = [int(r["pid"]) for r in records]
        groups = {autogroup(p) for r in records for p in (r["pid"], r["child_pid"])} - {""}
        if groups:
            notes.append(
                f"scheduler autogroups: the hub shares one with this process; the {SESSIONS} "
                f"session processes and their programs are in {len(groups)} others (each "
                "started a new session), and CPU is shared per autogroup first"
            )

        def cpu() -> tuple[float, float, float, float]:
            return (
                cpu_seconds(hub.pid),
                sum(cpu_seconds(p) for p in session_pids),
                time.process_time(),
                runqueue_wait_s(hub.pid),
            )

        for block in range(BLOCKS):
            before = sum(c.bytes for c in counters)
            cpu0 = cpu()
            await conn.request("bench.mark", {"text": "FLOOD start"})
            t0 = time.perf_counter()
            for counter in counters:
                counter.type(f"{FLOOD_S}\n".encode())
            await asyncio.sleep(FLOOD_S)
            await conn.request("bench.mark", {"text": "FLOOD end"})
            flood_s = time.perf_counter() - t0
            used = [(b - a) / flood_s * 100 for a, b in zip(cpu0, cpu(), strict=True)]
            drain_s = await _drained(counters)
            routed = sum(c.bytes for c in counters) - before
            notes.append(
                f"flood {block + 1}: {routed / 1e6:.0f} MB routed to the {SESSIONS} clients "
                f"({routed / 1e6 / flood_s:.1f} MB/s over the {flood_s:.1f} s window; "
                f"drained {drain_s:.1f} s after it); CPU: hub {used[0]:.0f}%, "
                f"{SESSIONS} session processes {used[1]:.0f}%, bench clients {used[2]:.0f}% "
                f"(of {os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%); the hub's "
                f"loop thread waited for a CPU {used[3] * 10:.0f} ms per second"
            )
            await conn.request("bench.mark", {"text": "QUIET start"})
            await asyncio.sleep(QUIET_S)
        await conn.request("bench.mark", {"text": "QUIET end"})
        cut = sum(1 for c in counters if c.lost.is_set())
        if cut:
            notes.append(f"{cut} of {SESSIONS} clients were disconnected by the hub")
        await conn.close()
    finally:
        for c in counters:
            c.close()
        rc = await hub.stop()
    if rc:
        notes.append(f"hub exit code {rc}")
    dropped = hub.count(r"dropped")
    if dropped:
        notes.append(f"{dropped} 'dropped' lines in the hub log (a session's ring overran)")
    notes += [t for t in hub.lines if " ERROR " in t or "Traceback" in t][:5]
    marks = stamps(hub, r"\[spawner\] MARK (QUIET start|FLOOD start|FLOOD end|QUIET end)")
    if len(marks) != 3 * BLOCKS + 2:
        raise RuntimeError(f"expected {3 * BLOCKS + 2} window marks in the log:\n{hub.log}")
    # QUIET start, then per block FLOOD start, FLOOD end, QUIET start; then QUIET end. The
    # drain (FLOOD end to QUIET start) belongs to neither window.
    quiet = [(marks[0], marks[1])] + [(marks[3 * b + 3], marks[3 * b + 4]) for b in range(BLOCKS)]
    flood = [(marks[3 * b + 1], marks[3 * b + 2]) for b in range(BLOCKS)]
    ticks = stamps(hub, TICK_LINE)
    return inside(ticks, quiet), inside(ticks, flood), notes


def run() -> list[Result]:
    header(f"flood_jitter: 10 ms timer while {SESSIONS} sessions print as fast as they can")
    with Sandbox() as sandbox:
        idle, flood, notes = asyncio.run(_measure(sandbox))
    print(describe("sessions idle (baseline)", idle))
    print(describe(f"{SESSIONS} sessions flooding", flood))
    for line in notes:
        print(f"  {line}")
    flood_p99, idle_p99 = p99(flood), p99(idle)
    passed = flood_p99 < GOAL_MS
    print(f"  goal: p99 jitter during the flood < {GOAL_MS:g} ms: {verdict(passed)}")
    return [
        Result(
            "flood_jitter",
            f"p99 tick jitter, {SESSIONS} sessions flooding",
            flood_p99,
            idle_p99,
            "ms",
            f"< {GOAL_MS:g} ms",
            passed,
        )
    ]


if __name__ == "__main__":
    run()
