"""Many clients on one terminal: 100 socket clients attached to one session flooding output.

A real hub and one session, ``sh -c 'while read s; do timeout "$s" yes; done'`` (an agent
printing as fast as its PTY takes it, for a given number of seconds). 100 clients attach to it
(``subscribe terminal``); each only counts the bytes it receives (``ByteCounter``: nothing
decoded, so the clients cost this process little). The flood runs 5 s; the hub's RSS is
sampled every 100 ms from before the flood until its output has drained.

Starvation: each client's bytes received during the flood window against the median client's
(min / median / max); a client the hub disconnects (``slow_client``: 8 MiB queued for it)
counts as starved. Memory: the hub's peak RSS over the run and its growth over the idle RSS
before the flood; the hub bounds what it queues for one client at 8 MiB, so the growth must
stay under that bound (100 x 8 MiB) and RSS must stop growing (its last second of flood no
higher than a margin over the peak of the seconds before).

Baselines, same run: the same flood with 1 client attached (per-client throughput) and the
hub's idle RSS with the 100 clients attached. Goals (from the issue): no client starves
(slowest at least 0.5x the median, none cut); memory bounded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench._common import Result, header, median, verdict
from bench._hub import SPAWNER, ByteCounter, HubRun, Sandbox, cpu_seconds, rss_mb

__all__ = ["run"]

CLIENTS = 100
FLOOD_S = 5
BASE_FLOOD_S = 2
SAMPLE_S = 0.1
DRAIN_S = 0.5
FAIR = 0.5  # the slowest client gets at least this fraction of the median
SEND_LIMIT_MB = 8 * 1024 * 1024 / 1e6  # the hub's per-client queue bound (8 MiB)
GROWTH_MARGIN_MB = 16.0  # the last second may exceed the earlier peak by at most this
FLOODER = ["sh", "-c", 'while read s; do timeout "$s" yes; done']


@dataclass
class _Run:
    one: float  # MB/s to the single client
    got: list[int]  # bytes per client in the flood window
    secs: float  # the window
    total: list[int]  # bytes per client after the drain
    cut: int  # clients the hub disconnected
    idle_rss: float
    flood_rss: list[float]  # samples inside the window
    peak_rss: float
    drained_s: float
    cpu: list[float]  # % of one core: hub, session process, this process
    timeline: list[tuple[float, float]]  # (s since the flood started, hub RSS MB)
    dropped: int = 0
    cut_log: int = 0


async def _settled(counters: list[ByteCounter], within: float = 20.0) -> None:
    """Waits until no client has received anything for DRAIN_S."""
    deadline = time.perf_counter() + within
    last, since = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        now = sum(c.bytes for c in counters)
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= DRAIN_S:
            return
        await asyncio.sleep(0.05)


async def _sample_rss(pid: int, out: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append((time.perf_counter(), rss_mb(pid)))
        await asyncio.sleep(SAMPLE_S)


async def _window(counters: list[ByteCounter], seconds: int) -> tuple[list[int], float]:
    """One flood (typed by the first client): (bytes per client in the window, its length)."""
    before = [c.bytes for c in counters]
    t0 = time.perf_counter()
    counters[0].type(f"{seconds}\n".encode())
    await asyncio.sleep(seconds)
    got = [c.bytes - b for c, b in zip(counters, before, strict=True)]
    return got, time.perf_counter() - t0


async def _measure(sandbox: Sandbox) -> _Run:
    sandbox.write_plugin("spawner", SPAWNER)
    hub = HubRun(sandbox)
    await hub.start()
    counters: list[ByteCounter] = []
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        sid = await conn.request("bench.spawn", {"cmd": FLOODER[0], "args": FLOODER[1:]})
        sock = sandbox.hub_socket()
        # Baseline: one client.
        one = [await ByteCounter.attach(sock, sid)]
        await asyncio.sleep(0.3)
        got, secs = await _window(one, BASE_FLOOD_S)
        one_mbps = got[0] / secs / 1e6
        await _settled(one)
        one[0].close()
        # 100 clients.
        counters = [await ByteCounter.attach(sock, sid) for _ in range(CLIENTS)]
        await asyncio.sleep(0.5)
        idle_rss = rss_mb(hub.pid)
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(hub.pid, samples, stop))
        session_pid = int(sandbox.session_records()[0]["pid"])
        t0 = time.perf_counter()
        cpu0 = (cpu_seconds(hub.pid), cpu_seconds(session_pid), time.process_time())
        got, secs = await _window(counters, FLOOD_S)
        cpu1 = (cpu_seconds(hub.pid), cpu_seconds(session_pid), time.process_time())
        t_end = time.perf_counter()
        await _settled(counters)
        stop.set()
        await sampler
        out = _Run(
            one=one_mbps,
            got=got,
            secs=secs,
            total=[c.bytes for c in counters],
            cut=sum(1 for c in counters if c.lost.is_set()),
            idle_rss=idle_rss,
            flood_rss=[rss for at, rss in samples if t0 <= at <= t_end],
            peak_rss=max(rss for _, rss in samples),
            drained_s=time.perf_counter() - t_end,
            cpu=[(b - a) / secs * 100 for a, b in zip(cpu0, cpu1, strict=True)],
            timeline=[(at - t0, rss) for at, rss in samples],
        )
        await conn.close()
    finally:
        for c in counters:
            c.close()
        await hub.stop()
    out.dropped = hub.count(r"dropped")
    out.cut_log = hub.count(r"send queue over")
    return out


def run() -> list[Result]:
    header(f"many_clients: {CLIENTS} clients on one session flooding output for {FLOOD_S} s")
    with Sandbox() as sandbox:
        out = asyncio.run(_measure(sandbox))
    got, secs, total, flood_rss = out.got, out.secs, out.total, out.flood_rss
    one, idle_rss, peak = out.one, out.idle_rss, out.peak_rss
    lo, mid, hi = min(got), median(got), max(got)
    rate = mid / secs / 1e6
    print(f"  1 client (baseline): {one:.1f} MB/s during a {BASE_FLOOD_S} s flood")
    print(
        f"  {CLIENTS} clients, bytes in the {secs:.1f} s window: min {lo / 1e6:.1f} MB, "
        f"median {mid / 1e6:.1f} MB, max {hi / 1e6:.1f} MB ({rate:.2f} MB/s per client, "
        f"{rate * CLIENTS:.0f} MB/s in all)"
    )
    print(
        f"  after the drain ({out.drained_s:.1f} s): min {min(total) / 1e6:.1f} MB, "
        f"median {median(total) / 1e6:.1f} MB, max {max(total) / 1e6:.1f} MB; "
        f"clients cut by the hub: {out.cut} (log: {out.cut_log}); "
        f"'dropped' lines in the hub log: {out.dropped}"
    )
    cpu = out.cpu
    print(
        f"  CPU during the flood: hub {cpu[0]:.0f}%, session process {cpu[1]:.0f}%, "
        f"the {CLIENTS} counting clients {cpu[2]:.0f}%"
    )
    timeline = out.timeline
    print(
        "  hub RSS (s: MB): "
        + ", ".join(f"{at:.1f}: {rss:.0f}" for i, (at, rss) in enumerate(timeline) if i % 5 == 0)
    )
    growth = peak - idle_rss
    split = max(1, len(flood_rss) - int(1 / SAMPLE_S))
    earlier, last = max(flood_rss[:split]), max(flood_rss[split:])
    print(
        f"  hub RSS: idle {idle_rss:.0f} MB, peak {peak:.0f} MB (+{growth:.0f} MB), "
        f"flood samples {len(flood_rss)}: peak before the last second {earlier:.0f} MB, "
        f"in it {last:.0f} MB"
    )
    fair = lo >= FAIR * mid and not out.cut
    bound = CLIENTS * SEND_LIMIT_MB
    bounded = growth < bound and last <= earlier + GROWTH_MARGIN_MB
    print(f"  goal: no client starves (min >= {FAIR:g}x median, none cut): {verdict(fair)}")
    print(
        f"  goal: memory bounded (growth < {bound:.0f} MB, flat in the last second): "
        f"{verdict(bounded)}"
    )
    return [
        Result(
            "many_clients",
            f"slowest of {CLIENTS} clients (MB in {FLOOD_S} s)",
            lo / 1e6,
            mid / 1e6,
            "MB",
            f">= {FAIR:g}x median",
            fair,
        ),
        Result("many_clients", "median client MB/s (base: 1 client)", rate, one, "MB/s"),
        Result(
            "many_clients",
            f"hub peak RSS, {CLIENTS} clients (base: idle)",
            peak,
            idle_rss,
            "MB",
            f"growth < {bound:.0f} MB, flat",
            bounded,
        ),
    ]


if __name__ == "__main__":
    run()
