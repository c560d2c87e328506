"""``python -m bench`` (``make bench``): every benchmark in turn, then one summary table.

Exit status: 0 when every benchmark ran, whatever its goal said (a MISS is a finding, not a
failure); 1 when one crashed (its traceback is printed and the others still run).
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

from bench import BENCHMARKS
from bench._common import Result

COLUMNS = ("benchmark", "metric", "value", "baseline", "ratio", "goal", "status")


def _row(result: Result) -> tuple[str, ...]:
    ratio = result.ratio
    return (
        result.bench,
        result.metric,
        result.shown(result.value),
        result.shown(result.baseline),
        "-" if ratio is None else f"{ratio:.2f}x",
        result.goal or "-",
        result.status,
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    right = {2, 3, 4}  # numbers line up on the right

    def fmt(r: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(COLUMNS), rule, *(fmt(r) for r in rows)])


def main() -> int:
    t0 = time.perf_counter()
    rows: list[tuple[str, ...]] = []
    crashed: list[str] = []
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
            results = module.run()
        except Exception:
            traceback.print_exc()
            crashed.append(name)
            rows.append((name, "(crashed, see traceback above)", "-", "-", "-", "-", "CRASHED"))
            continue
        rows.extend(_row(r) for r in results)
    print(f"\n== summary ({time.perf_counter() - t0:.0f} s; ratio = value / same-run baseline) ==")
    print(_table(rows))
    if crashed:
        print(f"\ncrashed: {', '.join(crashed)}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
