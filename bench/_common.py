"""What every benchmark shares: the result row, the goal check, statistics and printing.

A benchmark module exposes ``run() -> list[Result]``, printing its details as it goes;
``bench/__main__.py`` collects the rows into the summary table. Leaves process handling to
``bench/_hub.py``.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Result",
    "bin_path",
    "child_env",
    "fmt_ms",
    "fmt_rate",
    "header",
    "median",
    "p99",
    "time_process",
    "verdict",
]


@dataclass
class Result:
    """One summary row: a measured value against its same-run baseline and the issue's goal.

    ``ratio`` is value / baseline. ``passed`` is None when the row has no goal (shown as
    "info") or was skipped (``skipped`` holds the reason).
    """

    bench: str
    metric: str
    value: float | None
    baseline: float | None
    unit: str  # "ms", "/s", or a unit printed after the number ("MB/s", "MB")
    goal: str = ""
    passed: bool | None = None
    skipped: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIPPED"
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "MISS"

    def shown(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.unit == "/s":
            return fmt_rate(value)
        if self.unit == "ms":
            return fmt_ms(value)
        return f"{value:.1f} {self.unit}" if value < 1000 else f"{value:.0f} {self.unit}"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def fmt_ms(ms: float) -> str:
    if 0.0005 <= ms < 1:
        return f"{ms * 1000:.0f} us"
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.0f} k/s" if per_s >= 1e4 else f"{per_s / 1e3:.2f} k/s"
    return f"{per_s:.0f} /s"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (inclusive method: a value between two observed samples)."""
    if len(values) < 2:
        return values[0] if values else math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def bin_path(name: str) -> Path:
    """An executable installed beside the running interpreter (the venv's ``botster``)."""
    return Path(sys.executable).parent / name


@functools.cache
def _pycache_dir() -> str:
    path = tempfile.mkdtemp(prefix="bt-bench-pyc-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def child_env() -> dict[str, str]:
    """The environment for measured child processes: this one, with bytecode caching on.

    Users' installs have compiled ``.pyc`` files; an environment with
    ``PYTHONDONTWRITEBYTECODE`` would make every child compile Botster from source. The cache
    goes to a temp prefix (warmed by each benchmark's first, unmeasured run), so the source
    tree is left untouched.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = _pycache_dir()
    return env


def time_process(argv: list[str], *, env: dict[str, str] | None = None) -> float:
    """Wall time in ms from spawning `argv` to its exit; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env if env is not None else child_env(),
        check=False,
    )
    elapsed = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return elapsed
