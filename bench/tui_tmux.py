"""Key to echo through the real UI next to tmux, both as a user runs them: on a terminal.

Both clients run as processes on a pseudo-terminal of their own, 120x36 (the "outer
terminal", which this benchmark plays): ``tmux attach`` to a private tmux server whose pane
runs the echo program, and ``botster attach`` to a real hub whose agent runs the same
program. The program (raw mode) answers every byte with its own count, ``\\r ESC[K <n>``, so
each key has a token of its own on screen. A key is written to the outer terminal's master
and the time taken when the client's output, escape sequences removed, shows the token: what
the user's terminal would draw. Blocks of 50 keys alternate between tmux, the UI, and the
UI with its output fast path off (``BOTSTER_TUI_FAST_PAINT=0``: every echo waits for
Textual's next frame), which shows on a second agent running the same program.

Goals (issue 12): UI p50 within 1.5x of tmux's; UI p99 < 25 ms. This measures the idle
case; ``tui_flood_input`` measures the UI under a flood.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from bench._common import Result, header, median, p99, verdict
from bench._floor import Floor
from bench._hub import HubRun, Sandbox
from bench._tmux import COLS, ROWS, OuterTerminal, Tmux, write_echo
from bench._tui import latency_line

__all__ = ["run"]

BLOCKS, PER_BLOCK = 4, 50
GAP_S = 0.02  # typing, not a flood


def _blocks(clients: list[OuterTerminal]) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in clients]
    for _ in range(BLOCKS):
        for out, client in zip(samples, clients, strict=True):
            for _ in range(PER_BLOCK):
                out.append(client.keystroke(len(out) + 1))
                time.sleep(GAP_S)  # the gap between keys a person types
    return samples


async def _measure(sandbox: Sandbox) -> list[list[float]]:
    argv = write_echo(sandbox.root)
    env = sandbox.env
    tmux = Tmux(sandbox.root, env)
    await asyncio.to_thread(sandbox.define_agent, argv)
    await asyncio.to_thread(tmux.new_session, argv)
    hub = HubRun(sandbox)
    await hub.start()
    floor = Floor(sandbox.root, argv, ROWS, COLS)
    clients: list[OuterTerminal] = []
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        # Two agents on one program each: one per UI (a UI resizes the agent it shows).
        for branch in ("bench", "bench2"):
            await conn.request("create_agent", {"agent": "bench", "branch": branch})
        await conn.close()
        clients.append(OuterTerminal(tmux.attach_argv(), env))
        botster = str(Path(sys.executable).with_name("botster"))
        attach = [botster, "attach", "--socket", str(sandbox.hub_socket())]
        clients.append(OuterTerminal(attach, env))
        # The same UI drawing only at Textual's frames (the output fast path off).
        clients.append(OuterTerminal(attach, {**env, "BOTSTER_TUI_FAST_PAINT": "0"}))
        clients.append(OuterTerminal(floor.ui_argv(), env))
        for client in clients:
            await asyncio.to_thread(client.wait_for, b"READY")
        # The frame-timer UI shows the second agent (prefix, j), so the two UIs never
        # share a program (each key's token is its program's own count).
        os.write(clients[2].master, b"\x02j")
        await asyncio.sleep(1.0)  # first frames, the switch and the resize settle (not timed)
        return await asyncio.to_thread(_blocks, clients)
    finally:
        for client in reversed(clients):
            client.close()
        floor.close()
        await asyncio.to_thread(tmux.kill)
        await hub.stop()


def run() -> list[Result]:
    header("tui_tmux: key to drawn echo, botster attach next to tmux attach, on a PTY each")
    goal_p50, goal_p99 = "<= 1.5x tmux", "< 25 ms"
    if not Tmux.installed():
        print("  SKIPPED: tmux is not installed")
        return [Result("tui_tmux", "p50 key to drawn echo", None, None, "ms", skipped="no tmux")]
    with Sandbox() as sandbox:
        anchor, ours, frames, floor = asyncio.run(_measure(sandbox))
    print(latency_line("tmux attach (anchor)", anchor))
    print(latency_line("botster attach", ours))
    print(latency_line("botster attach, drawing at Textual's frames only", frames))
    print(latency_line("floor: bare Python session + UI passing bytes on", floor))
    print(
        f"  botster / tmux: p50 {median(ours) / median(anchor):.1f}x, "
        f"p99 {p99(ours) / p99(anchor):.1f}x; output drawn at once / at frames: "
        f"p50 {median(ours) / median(frames):.2f}x, p99 {p99(ours) / p99(frames):.2f}x"
    )
    print(
        f"  floor / tmux: p50 {median(floor) / median(anchor):.2f}x (what two Python processes"
        f" cost before any work); botster - floor: p50 {median(ours) - median(floor):.2f} ms"
    )
    p50_ok = median(ours) <= 1.5 * median(anchor)
    p99_ok = p99(ours) < 25.0
    print(f"  goal: UI p50 within 1.5x of tmux's: {verdict(p50_ok)}")
    print(f"  goal: UI p99 < 25 ms: {verdict(p99_ok)}")
    return [
        Result(
            "tui_tmux",
            "p50 key to drawn echo",
            median(ours),
            median(anchor),
            "ms",
            goal_p50,
            p50_ok,
        ),
        Result("tui_tmux", "p99 key to drawn echo", p99(ours), p99(anchor), "ms", goal_p99, p99_ok),
        Result("tui_tmux", "p50, baseline: frames only", median(ours), median(frames), "ms"),
        Result("tui_tmux", "p99, baseline: frames only", p99(ours), p99(frames), "ms"),
        Result("tui_tmux", "p50 bare Python floor", median(floor), median(anchor), "ms"),
    ]


if __name__ == "__main__":
    run()
