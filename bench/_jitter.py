"""Timer jitter read from a hub's log: a 10 ms ``timer.every`` ticker plugin, and the math.

    sandbox.write_plugin("ticker", TICKER)
    ticks = stamps(hub, TICK_LINE)                       # log stamps, s
    devs = inside(ticks, [(start, end), ...])            # |interval - 10 ms| per window, ms
    print(describe("quiet windows", devs))

Stamps come from the hub's own ``HH:MM:SS.mmm`` log prefix (1 ms resolution), so nothing is
added to the product and a steady loop reads as 0-1 ms. Used by ``loop_jitter`` and
``flood_jitter``.
"""

from __future__ import annotations

import itertools
import re

from bench._common import fmt_ms, median, p99
from bench._hub import HubRun, log_time

__all__ = ["TICKER", "TICK_LINE", "TICK_MS", "deviations_ms", "describe", "inside", "stamps"]

TICK_MS = 10.0

TICKER = """
-- Logs one line per 10 ms tick; the bench reads the log stamps.
timer.every(0.01, function() log.info("tick") end)
"""

TICK_LINE = r"\[ticker\] tick$"


def stamps(hub: HubRun, pattern: str) -> list[float]:
    """Log stamps (s) of matching lines, made monotonic across midnight."""
    rx = re.compile(pattern)
    out: list[float] = []
    day = 0.0
    for text in hub.lines:
        if not rx.search(text):
            continue
        t = log_time(text)
        if t is None:
            continue
        if out and t + day < out[-1] - 3600:
            day += 86400.0
        out.append(t + day)
    return out


def deviations_ms(ticks: list[float]) -> list[float]:
    """``|interval - 10 ms|`` for consecutive ticks (a skipped tick shows as 10 ms)."""
    return [abs((b - a) * 1000 - TICK_MS) for a, b in itertools.pairwise(ticks)]


def inside(ticks: list[float], windows: list[tuple[float, float]]) -> list[float]:
    """Deviations of the intervals whose both ends lie in one window."""
    devs: list[float] = []
    for start, end in windows:
        devs += deviations_ms([t for t in ticks if start <= t <= end])
    return devs


def describe(label: str, devs: list[float]) -> str:
    skipped = sum(1 for d in devs if d >= TICK_MS - 1)
    return (
        f"  {label:<28} {len(devs):5d} intervals  p50 {fmt_ms(median(devs)):>8}  "
        f"p99 {fmt_ms(p99(devs)):>8}  max {fmt_ms(max(devs)):>8}  skipped ticks {skipped}"
    )
