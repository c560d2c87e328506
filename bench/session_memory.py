"""Session memory: what one session process costs, with 20 of them running ``bash``.

A real hub starts one session and ends it (unmeasured: the session's modules land in the
bytecode cache, as an install has them), then 20 (``bash --norc --noprofile``, through a
plugin command); each
gets a little work (``ls -la /; echo ...``) and a second to settle. Then, from
``/proc/<pid>/smaps_rollup`` of every session process (the pids are in the discovery records,
``$BOTSTER_RUNTIME_DIR/sessions/*.json``), RSS, PSS (shared pages divided among the processes
that map them, so the 20 sessions split the interpreter's pages) and USS (private pages).
Medians over the 20. The shells themselves are listed apart (information).

Baseline, same run and measured at the same moment: a bare ``python -c "import time;
time.sleep(30)"`` of the same interpreter, so it shares pages with the sessions as one of them
would. Information: the same interpreter after importing what a session process imports
(``botster.sessions.process``), which separates the imports from the running session.
Goal (from the issue): under 12 MB PSS per session.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bench._common import Result, header, median, verdict
from bench._hub import SPAWNER, HubRun, Sandbox
from botster.base.framing import PTY_INPUT, encode_frame, encode_session

__all__ = ["run"]

SESSIONS = 20
SETTLE_S = 1.0
GOAL_MB = 12.0
SHELL = ["bash", "--norc", "--noprofile"]
BARE = "import time; time.sleep(30)"
# What a session process imports (``botster/sessions/__main__.py`` keeps ssl out; the
# terminal model loads avt when it is made).
SESSION_IMPORTS = (
    "import sys; sys.modules['ssl'] = None; import botster.sessions.process as p; "
    "p.make_terminal(24, 80, 100)"
)
IMPORTED = SESSION_IMPORTS + "; import time; time.sleep(30)"


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of a process in MB (from /proc/<pid>/smaps_rollup)."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        kb[key] = int(rest.split()[0])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss": kb["Rss"] / 1024, "pss": kb["Pss"] / 1024, "uss": uss / 1024}


def _describe(label: str, rows: list[dict[str, float]]) -> str:
    cells = "  ".join(
        f"{key.upper()} {median([r[key] for r in rows]):5.1f} MB" for key in ("rss", "pss", "uss")
    )
    spread = f"(PSS {min(r['pss'] for r in rows):.1f}-{max(r['pss'] for r in rows):.1f})"
    return f"  {label:<36} {cells}  {spread if len(rows) > 1 else ''}".rstrip()


async def _measure(sandbox: Sandbox) -> dict[str, list[dict[str, float]]]:
    sandbox.write_plugin("spawner", SPAWNER)
    hub = HubRun(sandbox)
    await hub.start()
    bare = imported = None
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        # Warm-up: one session started and ended, so the session's modules are in the
        # bytecode cache as an install has them. (The hub imports none of them; 20 sessions
        # starting at once would each compile them from source: ~3 MB more heap per session.)
        warm = await conn.request("bench.spawn", {"cmd": SHELL[0], "args": SHELL[1:]})
        await conn.request("bench.close", {"id": warm})
        ids = await asyncio.gather(
            *(
                conn.request("bench.spawn", {"cmd": SHELL[0], "args": SHELL[1:]})
                for _ in range(SESSIONS)
            )
        )
        for sid in ids:  # attached, as a UI would be
            conn.subscribe("terminal", {"session_id": sid})
        for sid in ids:  # a little output through each, as a shell at work has
            conn.send_raw(_input(sid, b"ls -la / ; echo done $((6*7))\n"))
        await conn.request("ping")
        bare = await asyncio.create_subprocess_exec(sys.executable, "-c", BARE, env=sandbox.env)
        imported = await asyncio.create_subprocess_exec(
            sys.executable, "-c", IMPORTED, env=sandbox.env
        )
        await asyncio.sleep(SETTLE_S)
        records = [r for r in sandbox.session_records() if r["id"] in ids]
        if len(records) != SESSIONS:
            raise RuntimeError(f"{len(records)} session records, expected {SESSIONS}")
        out = {
            "session": [smaps(int(r["pid"])) for r in records],
            "shell": [smaps(int(r["child_pid"])) for r in records],
            "bare": [smaps(bare.pid)],
            "imported": [smaps(imported.pid)],
            "hub": [smaps(hub.pid)],
        }
        await conn.close()
    finally:
        for proc in (bare, imported):
            if proc is not None:
                proc.kill()
                await proc.wait()
        await hub.stop()
    return out


def _input(sid: str, data: bytes) -> bytes:
    return encode_frame(PTY_INPUT, encode_session(sid, data))


def run() -> list[Result]:
    header(f"session_memory: {SESSIONS} sessions running bash, memory per session process")
    t0 = time.perf_counter()
    with Sandbox() as sandbox:
        out = asyncio.run(_measure(sandbox))
    print(_describe(f"session process (median of {SESSIONS})", out["session"]))
    print(_describe("bare python (baseline)", out["bare"]))
    print(_describe("python + session imports (info)", out["imported"]))
    print(_describe(f"bash in the PTY (median of {SESSIONS})", out["shell"]))
    print(_describe("the hub", out["hub"]))
    pss = median([r["pss"] for r in out["session"]])
    rss = median([r["rss"] for r in out["session"]])
    base = out["bare"][0]
    total = sum(r["pss"] for r in out["session"])
    took = time.perf_counter() - t0
    print(f"  all {SESSIONS} session processes together: {total:.0f} MB PSS ({took:.0f} s)")
    passed = pss < GOAL_MB
    print(f"  goal: PSS per session < {GOAL_MB:g} MB: {verdict(passed)}")
    return [
        Result(
            "session_memory",
            "PSS per session process",
            pss,
            base["pss"],
            "MB",
            f"< {GOAL_MB:g} MB",
            passed,
        ),
        Result("session_memory", "RSS per session process", rss, base["rss"], "MB"),
        Result(
            "session_memory",
            "PSS of python + session imports",
            out["imported"][0]["pss"],
            base["pss"],
            "MB",
        ),
    ]


if __name__ == "__main__":
    run()
