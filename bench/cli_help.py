"""``botster --help`` wall time: the command line must stay import-light.

Runs the installed ``botster`` entry point, median of 10 (after one warm-up). Baseline, same
run and interleaved: ``python -c pass``, the interpreter's own start. Goal (from the issue):
under 150 ms.
"""

from __future__ import annotations

import sys

from bench._common import Result, bin_path, fmt_ms, header, median, time_process, verdict

__all__ = ["run"]

RUNS = 10
GOAL_MS = 150.0


def run() -> list[Result]:
    header(f"cli_help: botster --help (median of {RUNS})")
    bare = [sys.executable, "-c", "pass"]
    helps = [str(bin_path("botster")), "--help"]
    time_process(bare)  # warm-up: page cache, .pyc files
    time_process(helps)
    bares, times = [], []
    for _ in range(RUNS):
        bares.append(time_process(bare))
        times.append(time_process(helps))
    help_ms, bare_ms = median(times), median(bares)
    passed = help_ms < GOAL_MS
    print(f"  python -c pass        {fmt_ms(bare_ms):>9}   (baseline)")
    print(
        f"  botster --help        {fmt_ms(help_ms):>9}   {help_ms / bare_ms:.1f}x python -c pass"
        f"   (+{help_ms - bare_ms:.0f} ms)"
    )
    print(f"  goal: botster --help < {GOAL_MS:g} ms: {verdict(passed)}")
    return [
        Result("cli_help", "botster --help", help_ms, bare_ms, "ms", f"< {GOAL_MS:g} ms", passed)
    ]


if __name__ == "__main__":
    run()
