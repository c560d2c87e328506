"""Keystroke-to-echo latency through the UI, the hub and a session, against a bare PTY.

An agent runs ``cat`` (the PTY's own echo answers each key). ``BotsterApp`` runs in this
process (``run_test``) on a real ``botster hub``; each key is given to the app as its driver
gives a key read from the terminal, and the time is taken when the pane's terminal model has
been fed the echoed letter and when the pane is next rendered with it (hooks on the
``TerminalView`` instance, no polling: ``bench/_tui.py``). 200 keys, 5 ms apart.

Baseline in the same run: ``cat`` on an ``os.openpty`` slave, one byte written to the master
and read back; 100 keys before and 100 after the UI block. Goal (from the issue): p99 under
30 ms to the rendered pane.
"""

from __future__ import annotations

import asyncio
import time

from bench._common import Result, header, median, p99, verdict
from bench._hub import Sandbox
from bench._tui import BarePty, UiRun, latency_line, letter

__all__ = ["run"]

SAMPLES = 200
GAP_S = 0.005
GOAL_MS = 30.0
PROGRAM = ["cat"]


def _bare(samples: int) -> list[float]:
    pty = BarePty(PROGRAM)
    try:
        out = []
        for k in range(samples):
            out.append(pty.keystroke(letter(k).encode(), letter(k).encode()))
            time.sleep(GAP_S)
        return out
    finally:
        pty.close()


async def _measure(sandbox: Sandbox) -> tuple[list[float], list[float], list[float]]:
    bare = _bare(SAMPLES // 2)
    model: list[float] = []
    painted: list[float] = []
    async with UiRun(sandbox, PROGRAM) as ui:
        for k in range(SAMPLES):
            got = await ui.keystroke(letter(k), letter(k).encode())
            if got is None:
                raise RuntimeError(f"key {k} ({letter(k)!r}) got no echo in the UI within 5 s")
            to_model, to_paint = got
            model.append(to_model)
            painted.append(to_paint)
            await asyncio.sleep(GAP_S)
    bare += _bare(SAMPLES // 2)
    return bare, model, painted


def run() -> list[Result]:
    header("tui_echo: keystroke to echo through the UI, hub and session (agent runs cat)")
    with Sandbox() as sandbox:
        bare, model, painted = asyncio.run(_measure(sandbox))
    print(latency_line("bare PTY, cat (baseline)", bare))
    print(latency_line("UI: key to the pane's terminal model", model))
    print(latency_line("UI: key to the pane rendered with it", painted))
    value, base = p99(painted), p99(bare)
    passed = value < GOAL_MS
    print(f"  goal: p99 key to rendered echo < {GOAL_MS:g} ms: {verdict(passed)}")
    return [
        Result("tui_echo", "p50 key to rendered echo", median(painted), median(bare), "ms"),
        Result(
            "tui_echo",
            "p99 key to rendered echo",
            value,
            base,
            "ms",
            f"< {GOAL_MS:g} ms",
            passed,
        ),
    ]


if __name__ == "__main__":
    run()
