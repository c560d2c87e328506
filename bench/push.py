"""Web push: how fast the hub pushes to 100 browsers, and whether its loop stays responsive.

A loopback push service (``harness/push_service.py`` in counting mode: it answers 201 and
counts, so this process does not decrypt) and 100 subscriptions, made with ``push.subscribe``
over the hub socket. A real hub process runs two plugins:

* ``ticker``: ``timer.every(0.01, ...)`` logging ``tick`` (``bench/_jitter.py``);
* ``pusher``: command ``bench.push {sends}`` calling ``push.send`` `sends` times.

After a warm-up push (pywebpush imported, connections open), 3 blocks of 10 ``push.send``
(1000 pushes each) run with 2 s of quiet before, between and after; a block ends when the
service has counted all its pushes. Value: pushes/s over the blocks; jitter p99 of the ticker
during the blocks against the quiet windows (printed with their ratio); the hub's CPU per push
(``/proc/<pid>/stat``, all threads) against the bare loop's; and the hub's run-queue wait
(``/proc/<pid>/schedstat``) per second of pushing and of quiet, which says how much of the
jitter is this machine's other load rather than the hub's loop. Baseline, same run: a bare
``webpush_async`` loop (a fresh claims dict per push, one aiohttp session, everything in flight
at once) in a child process, the same 3 blocks to the same service, after the hub has stopped.
Goal (issue 16): p99 jitter while pushing < 5 ms; throughput is information.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from bench._common import Result, child_env, fmt_rate, header, p99, verdict
from bench._hub import SPAWNER, HubRun, Sandbox, cpu_seconds, runqueue_wait_s
from bench._jitter import TICK_LINE, TICKER, describe, inside, stamps
from harness.push_service import PushService, push_service

__all__ = ["run"]

SUBSCRIPTIONS = 100
BLOCKS = 3
SENDS = 10  # push.send calls per block, each to every subscription
QUIET_S = 2.0
GOAL_MS = 5.0
SUBJECT = "mailto:bench@botster.example"

PUSHER = (
    SPAWNER
    + """
-- bench.push {sends} -> how many pushes were queued
commands.register("bench.push", function(args)
  local total = 0
  for i = 1, args.sends do
    total = total + assert(push.send({title = "bench", body = "push " .. i, url = "/hubs/b"}))
  end
  return total
end)
"""
)

# The baseline: pywebpush as its README shows it, in a process of its own like the hub.
BARE = """
import asyncio, json, sys, time
import aiohttp
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import Vapid, webpush_async

async def main():
    job = json.load(sys.stdin)
    key = Vapid(private_key=ec.generate_private_key(ec.SECP256R1()))
    data = json.dumps({"title": "bench", "body": "push 1", "url": "/hubs/b"})
    async with aiohttp.ClientSession() as session:
        async def one(sub):
            await webpush_async(sub, data, vapid_private_key=key,
                vapid_claims={"sub": "mailto:bench@botster.example"}, ttl=86400,
                headers={"Urgency": "normal"}, aiohttp_session=session)
        for _ in range(job["blocks"]):
            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(s) for _ in range(job["sends"]) for s in job["subs"]))
            print(time.perf_counter() - t0, time.process_time() - c0, flush=True)

asyncio.run(main())
"""


def _write_config(sandbox: Sandbox, settings: dict) -> None:
    home = Path(sandbox.env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(settings))


async def _wait_count(svc: PushService, n: int) -> None:
    await svc.wait_for(lambda: svc.count >= n, f"{n} pushes", 120.0)


class _HubRun:
    """What one hub run measured."""

    def __init__(self) -> None:
        self.quiet: list[float] = []  # tick deviations (ms) in the quiet windows
        self.loaded: list[float] = []  # ... while pushing
        self.rate = 0.0  # pushes/s
        self.cpu_us = 0.0  # hub CPU per push (all threads)
        self.wait_quiet = 0.0  # hub run-queue wait, ms per s of window
        self.wait_loaded = 0.0
        self.note = ""


async def _hub_run(svc: PushService, subs: list[dict]) -> _HubRun:
    with Sandbox() as sandbox:
        sandbox.write_plugin("ticker", TICKER)
        sandbox.write_plugin("pusher", PUSHER)
        _write_config(sandbox, {"push_subject": SUBJECT})
        hub = HubRun(sandbox)
        durations: list[float] = []
        cpu = 0.0
        waits: dict[bool, list[float]] = {True: [], False: []}  # pushing -> [wait s, window s]
        try:
            await hub.start()
            await hub.wait_for(r"hub ready:")
            conn = await hub.connect()
            for sub in subs:
                await conn.request("push.subscribe", {"subscription": sub})
            target = svc.count + await conn.request("bench.push", {"sends": 1})  # warm-up
            await _wait_count(svc, target)
            assert hub.proc is not None
            pid = hub.proc.pid

            def account(pushing: bool, w0: float, t0: float) -> None:
                acc = waits[pushing]
                acc += [0.0, 0.0] if not acc else []
                acc[0] += runqueue_wait_s(pid) - w0
                acc[1] += time.perf_counter() - t0

            await conn.request("bench.mark", {"text": "window"})
            for _ in range(BLOCKS):
                w0, t0 = runqueue_wait_s(pid), time.perf_counter()
                await asyncio.sleep(QUIET_S)
                account(False, w0, t0)
                await conn.request("bench.mark", {"text": "window"})
                w0, c0, t0 = runqueue_wait_s(pid), cpu_seconds(pid), time.perf_counter()
                target = svc.count + await conn.request("bench.push", {"sends": SENDS})
                await _wait_count(svc, target)
                durations.append(time.perf_counter() - t0)
                cpu += cpu_seconds(pid) - c0
                account(True, w0, t0)
                await conn.request("bench.mark", {"text": "window"})
            await asyncio.sleep(QUIET_S)
            await conn.request("bench.mark", {"text": "window"})
            await conn.close()
        finally:
            rc = await hub.stop()
        marks = stamps(hub, r"\[pusher\] MARK window$")
        windows = list(itertools.pairwise(marks))
        ticks = stamps(hub, TICK_LINE)
        problems = [t for t in hub.lines if " ERROR " in t or "WARNING" in t]
        note = f"hub exit code {rc}; " if rc else ""
        note += f"{len(problems)} warnings/errors in the hub log" + (
            f", first: {problems[0]}" if problems else ""
        )
        pushes = BLOCKS * SENDS * SUBSCRIPTIONS
        out = _HubRun()
        out.quiet, out.loaded = inside(ticks, windows[0::2]), inside(ticks, windows[1::2])
        out.rate, out.cpu_us, out.note = pushes / sum(durations), cpu / pushes * 1e6, note
        out.wait_quiet = waits[False][0] / waits[False][1] * 1000
        out.wait_loaded = waits[True][0] / waits[True][1] * 1000
        return out


def _bare_run(subs: list[dict]) -> tuple[float, float]:
    """pushes/s and CPU us per push of the bare webpush_async loop."""
    job = json.dumps({"subs": subs, "blocks": BLOCKS, "sends": SENDS})
    out = subprocess.run(
        [sys.executable, "-c", BARE],
        input=job,
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    ).stdout
    rows = [[float(x) for x in line.split()] for line in out.splitlines() if line.strip()]
    pushes = BLOCKS * SENDS * SUBSCRIPTIONS
    return pushes / sum(r[0] for r in rows), sum(r[1] for r in rows) / pushes * 1e6


async def _run() -> list[Result]:
    header(
        f"push: push.send to {SUBSCRIPTIONS} subscriptions on a loopback push service, "
        "and the loop's jitter meanwhile"
    )
    async with push_service(verify=False) as svc:
        subs = [svc.subscriber(f"s{i}").subscription for i in range(SUBSCRIPTIONS)]
        run = await _hub_run(svc, subs)
        bare, bare_cpu = await asyncio.get_running_loop().run_in_executor(None, _bare_run, subs)
    quiet, loaded, rate = run.quiet, run.loaded, run.rate
    print(describe("quiet windows (baseline)", quiet))
    print(describe("while pushing", loaded))
    print(
        f"  p99 while pushing / p99 quiet: {p99(loaded) / max(p99(quiet), 1.0):.2f}; the hub "
        f"waited for a CPU {run.wait_loaded:.0f} ms/s while pushing, {run.wait_quiet:.0f} ms/s "
        "quiet (this machine's other load)"
    )
    print(f"  hub: {run.note}")
    print(
        f"  throughput: hub {fmt_rate(rate)} pushes, bare webpush_async loop {fmt_rate(bare)} "
        f"(ratio {rate / bare:.2f})"
    )
    print(
        f"  CPU per push: hub {run.cpu_us:.0f} us (all threads), bare loop {bare_cpu:.0f} us "
        f"(ratio {run.cpu_us / bare_cpu:.2f})"
    )
    load_p99 = p99(loaded)
    passed = load_p99 < GOAL_MS
    print(f"  goal: p99 jitter while pushing < {GOAL_MS:g} ms: {verdict(passed)}")
    return [
        Result(
            "push",
            "p99 tick jitter while pushing",
            load_p99,
            p99(quiet),
            "ms",
            f"< {GOAL_MS:g} ms",
            passed,
        ),
        Result("push", f"pushes/s to {SUBSCRIPTIONS} subscriptions", rate, bare, "/s"),
    ]


def run() -> list[Result]:
    return asyncio.run(_run())


if __name__ == "__main__":
    run()
