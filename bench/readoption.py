"""Re-adoption: how fast a new hub takes over 20 live sessions after the old one was killed.

A hub starts 20 sessions (``bash --norc --noprofile``, through a plugin command) and is killed
with SIGKILL: no clean shutdown, the sessions keep running with nobody connected. A new hub
starts on the same repository; it finds the sessions' discovery records, reconnects to each
(``adopted 20 sessions`` in its log, before Lua boots) and reports ready. Three kill/start
cycles over the same sessions; medians:

* spawn of the new hub to the ``adopted 20 sessions`` line arriving here (the goal's number);
* spawn to ``hub ready`` and spawn to a client's ``sessions.list`` returning all 20
  (information: what a user waits for).

Then every shell prints 4 MB of base64, which fills its session's 4 MiB output ring, and two
more kill/start cycles run: the adoption of sessions with a real history. A hub that adopts
asks each session for output from the end (``output_from``) instead of replaying its ring
(20 full rings took ~650 ms to replay); a client that attaches later gets a snapshot. The
hub logs how long its adoption took (``adopted N sessions in X ms``: discovery, connects,
metadata, event replay): that number, with full rings, is the second goal (< 300 ms).

Baseline, same run and interleaved: spawn to ``hub ready`` of a hub with no sessions (another
sandbox, so it has nothing to adopt). Goal (from the issue): adopted within 1 s of the start.
"""

from __future__ import annotations

import asyncio
import time

from bench._common import Result, fmt_ms, header, median, verdict
from bench._hub import SPAWNER, HubRun, Sandbox
from botster.base.framing import (
    PTY_INPUT,
    encode_frame,
    encode_session,
)

__all__ = ["run"]

SESSIONS = 20
CYCLES = 3
HISTORY_CYCLES = 2
# 3 MB of random bytes is 4 MB of base64: more than the 4 MiB ring holds. Each shell then
# adds a line to a file (the % is its path).
FILL = b"head -c 3000000 /dev/urandom | base64; echo x >> %s\n"
GOAL_MS = 1000.0
GOAL_FULL_MS = 300.0  # the hub's own adoption time, sessions with full rings
SHELL = ["bash", "--norc", "--noprofile"]


async def _empty_start(sandbox: Sandbox) -> float:
    """Spawn to ``hub ready`` (ms) of a hub with nothing to adopt."""
    hub = HubRun(sandbox)
    await hub.start()
    try:
        at, _ = await hub.wait_for_at(r"hub ready:", timeout=60)
    finally:
        await hub.stop()
    return (at - hub.spawned_at) * 1000


async def _spawn_sessions(sandbox: Sandbox) -> HubRun:
    """A hub with SESSIONS sessions; returns it running."""
    hub = HubRun(sandbox)
    await hub.start()
    await hub.wait_for(r"hub ready:", timeout=60)
    conn = await hub.connect()
    try:
        ids = await asyncio.gather(
            *(
                conn.request("bench.spawn", {"cmd": SHELL[0], "args": SHELL[1:]})
                for _ in range(SESSIONS)
            )
        )
    finally:
        await conn.close()
    if len(set(ids)) != SESSIONS:
        raise RuntimeError(f"expected {SESSIONS} sessions, got {ids}")
    return hub


async def _adopt(sandbox: Sandbox) -> tuple[HubRun, float, float, float, float]:
    """Starts a hub that adopts; (hub, ms to adopted line, ms to ready, ms to a full list,
    ms the adoption took by the hub's log)."""
    hub = HubRun(sandbox)
    await hub.start()
    adopted_at, m = await hub.wait_for_at(r"adopted (\d+) sessions in (\d+) ms", timeout=60)
    if int(m.group(1)) != SESSIONS:
        raise RuntimeError(f"adopted {m.group(1)} sessions, expected {SESSIONS}:\n{hub.log}")
    ready_at, _ = await hub.wait_for_at(r"hub ready:", timeout=60)
    while True:  # the socket listens before adoption; the registry entry names it
        try:
            conn = await hub.connect()
            break
        except (OSError, RuntimeError):
            await asyncio.sleep(0.005)
    listed = await conn.request("sessions.list")
    listed_at = time.perf_counter()
    await conn.close()
    if len(listed) != SESSIONS or not all(s["running"] for s in listed):
        raise RuntimeError(f"sessions.list after adoption: {listed}")
    t0 = hub.spawned_at
    took = float(m.group(2))
    return hub, (adopted_at - t0) * 1000, (ready_at - t0) * 1000, (listed_at - t0) * 1000, took


async def _fill_history(hub: HubRun) -> None:
    """Makes every shell print FILL and waits until each has finished.

    The client attaches only to type (output would flood it); the shells report the end by
    appending to a file.
    """
    done = hub.sandbox.root / "filled"
    conn = await hub.connect()
    conn.on_frame = lambda frame: None
    sids = [s["id"] for s in await conn.request("sessions.list")]
    for sid in sids:
        conn.subscribe("terminal", {"session_id": sid})
    await conn.request("ping")
    for sid in sids:
        conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, FILL % bytes(done))))
        conn.send({"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}})
    await conn.request("ping")
    await conn.close()
    deadline = time.monotonic() + 120
    while not done.exists() or len(done.read_text().split()) < len(sids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the shells did not finish printing:\n{hub.log}")
        await asyncio.sleep(0.1)


async def _cycle(sandbox: Sandbox, hub: HubRun, out: dict[str, list[float]], key: str) -> HubRun:
    """kill -9 `hub`, start one that adopts; its times go to out[key...]; returns it."""
    rc = await hub.kill()
    if rc != -9:
        raise RuntimeError(f"hub exit code {rc} after SIGKILL:\n{hub.log}")
    hub, adopted, ready, listed, took = await _adopt(sandbox)
    out[key].append(adopted)
    out[f"{key}_took"].append(took)
    out[f"{key}_ready"].append(ready)
    out[f"{key}_listed"].append(listed)
    warnings = [t for t in hub.lines if "could not adopt" in t or " ERROR " in t]
    for line in warnings[:5]:
        print(f"  hub log: {line}")
    return hub


async def _measure(sandbox: Sandbox, empty: Sandbox) -> dict[str, list[float]]:
    sandbox.write_plugin("spawner", SPAWNER)
    keys = ("empty", "adopted", "adopted_ready", "adopted_listed", "adopted_took")
    out: dict[str, list[float]] = {k: [] for k in keys}
    out.update({k.replace("adopted", "history"): [] for k in keys[1:]})
    await _empty_start(empty)  # warm-up: page cache, .pyc files
    hub = await _spawn_sessions(sandbox)
    try:
        for _ in range(CYCLES):
            out["empty"].append(await _empty_start(empty))
            hub = await _cycle(sandbox, hub, out, "adopted")
        await _fill_history(hub)
        for _ in range(HISTORY_CYCLES):
            hub = await _cycle(sandbox, hub, out, "history")
    finally:
        await hub.stop()
    return out


def run() -> list[Result]:
    header(f"readoption: kill -9 a hub with {SESSIONS} sessions, start a new one (x{CYCLES})")
    with Sandbox() as sandbox, Sandbox() as empty:
        out = asyncio.run(_measure(sandbox, empty))
    med = {k: median(v) for k, v in out.items()}
    base = med["empty"]

    def line(label: str, key: str) -> None:
        runs = ", ".join(f"{v:.0f}" for v in out[key])
        print(f"  {label:<40} {fmt_ms(med[key]):>9}   {med[key] / base:4.2f}x   runs: {runs}")

    line("hub start, no sessions: to ready (base)", "empty")
    line(f"spawn to 'adopted {SESSIONS} sessions'", "adopted")
    line("spawn to 'hub ready' after adopting", "adopted_ready")
    line(f"spawn to sessions.list returning {SESSIONS}", "adopted_listed")
    print(f"  each session with a full 4 MiB output ring ({HISTORY_CYCLES} cycles):")
    line(f"spawn to 'adopted {SESSIONS} sessions'", "history")
    line("spawn to 'hub ready' after adopting", "history_ready")
    line(f"spawn to sessions.list returning {SESSIONS}", "history_listed")
    for label, key in (("empty rings", "adopted_took"), ("full rings", "history_took")):
        runs = ", ".join(f"{v:.0f}" for v in out[key])
        print(f"  adoption by the hub's log, {label:<12} {fmt_ms(med[key]):>9}   runs: {runs}")
    passed = med["adopted"] < GOAL_MS
    print(f"  goal: adopted {SESSIONS} sessions < {GOAL_MS:g} ms after start: {verdict(passed)}")
    full_passed = med["history_took"] < GOAL_FULL_MS
    print(
        f"  goal: adopting {SESSIONS} sessions with full rings < {GOAL_FULL_MS:g} ms: "
        f"{verdict(full_passed)}"
    )
    return [
        Result(
            "readoption",
            f"spawn to 'adopted {SESSIONS} sessions'",
            med["adopted"],
            base,
            "ms",
            f"< {GOAL_MS:g} ms",
            passed,
        ),
        Result(
            "readoption",
            f"spawn to sessions.list returning {SESSIONS}",
            med["adopted_listed"],
            base,
            "ms",
        ),
        Result(
            "readoption",
            "same, sessions with 4 MiB of output kept each",
            med["history_listed"],
            base,
            "ms",
        ),
        Result(
            "readoption",
            f"adopting {SESSIONS} sessions with full rings (hub log)",
            med["history_took"],
            base,
            "ms",
            f"< {GOAL_FULL_MS:g} ms",
            full_passed,
        ),
    ]


if __name__ == "__main__":
    run()
