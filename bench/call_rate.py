"""Call rates from Lua: what plugin code pays for ``events.emit`` and ``json.encode``.

In-process, no hub: one ``LuaHost`` with the ``events``, ``json`` and ``timer`` primitives
installed the way ``botster/hub/daemon.py`` installs them. Each case is a Lua loop run as a
hub task (``host.sched.start``, so the CPU-budget hook is on, as for plugin code), sized to
take ~0.15 s, best of 5.

Baselines, same run: a bare Lua->Python call (a no-op Python function set as a Lua global),
without arguments and with a 3-key table. Goals (from the issue): ``events.emit("nobody")``
and ``json.encode({a = 1, b = "two", c = true})`` at >= 0.5x the bare call rate;
``json.encode`` is compared with the table-argument call, since both build the same table
every iteration. More rows are information only: ``json.encode`` outside a task (a task runs
with the budget's count hook, and in Lua 5.4 any count hook sends every VM instruction
through the hook check), a Python primitive through the binding layer (``timer.cancel`` of an
unknown id, which needs no hub) and an emit with one listener (which starts a task).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any

from bench._common import Result, fmt_rate, header, verdict

__all__ = ["run"]

RUNS = 5
TARGET_S = 0.15
GOAL_RATIO = 0.5

LOOPS = b"""
local function noop() end
events.on("bench_one_listener", noop)
return {
  bare = function(n) local f = noop_py for _ = 1, n do f() end end,
  bare_table = function(n)
    local f = noop_py for _ = 1, n do f({a = 1, b = "two", c = true}) end
  end,
  emit = function(n) local emit = events.emit for _ = 1, n do emit("nobody") end end,
  encode = function(n)
    local encode = json.encode for _ = 1, n do encode({a = 1, b = "two", c = true}) end
  end,
  primitive = function(n) local cancel = timer.cancel for _ = 1, n do cancel("timer_0") end end,
  emit_listener = function(n)
    local emit = events.emit for _ = 1, n do emit("bench_one_listener", n) end
  end,
}
"""


@dataclass(frozen=True)
class _Case:
    key: str
    label: str
    baseline: str | None = None  # key of the case it is compared with
    goal: bool = False
    in_task: bool = True  # False: a plain call, without the scheduler's budget hook


CASES = (
    _Case("bare", "bare Lua->Python call, no argument"),
    _Case("bare_table", "bare Lua->Python call, 3-key table"),
    _Case("emit", 'events.emit("nobody")', "bare", goal=True),
    _Case("encode", 'json.encode({a=1, b="two", c=true})', "bare_table", goal=True),
    _Case("encode", "json.encode, outside a task (no budget hook)", "bare_table", in_task=False),
    _Case("primitive", 'timer.cancel("timer_0") (Python primitive)', "bare"),
    _Case("emit_listener", "events.emit, one listener (starts a task)", "bare"),
)
_SHORT = {"bare": "bare call", "bare_table": "bare call with table"}


def _noop(*args: Any) -> None:
    return None


class _BareHub:
    """The part of a HubContext the measured primitives touch: a Lua host and per-module state
    (no loop, no socket: the loops never reach them)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self._states: dict[Any, Any] = {}

    def state(self, cls: Any) -> Any:
        return self._states.setdefault(cls, cls(self))


def _host() -> Any:
    from botster.lua.runtime import LuaHost

    # Generous limits: the loops are long on purpose; slow-step warnings would be noise.
    host = LuaHost(budget_s=60.0, slow_s=3600.0)
    hub = _BareHub(host)
    for name in ("events", "json", "timer"):
        module = importlib.import_module(f"botster.primitives.{name}")
        extras = getattr(module, "lua_extras", None)
        host.install(name, module, extras(hub) if extras else None, hub=hub)
    host.globals[b"noop_py"] = _noop
    return host


def _timed(host: Any, fn: Any, label: str, n: int, in_task: bool) -> float:
    t0 = time.perf_counter()
    if in_task:
        status = host.sched.start("bench", label, fn, n)
    else:
        fn(n)
        status = "done"
    elapsed = time.perf_counter() - t0
    if status != "done":
        raise RuntimeError(f"{label}: {status}: {host.sched.errors.get('bench')}")
    return elapsed


def _best_rate(host: Any, fn: Any, label: str, in_task: bool) -> float:
    n = 1000
    while (elapsed := _timed(host, fn, label, n, in_task)) < 0.02:
        n *= 4
    n = max(n, int(n * TARGET_S / elapsed))
    return max(n / _timed(host, fn, label, n, in_task) for _ in range(RUNS))


def run() -> list[Result]:
    header(f"call_rate: calls/s from a Lua loop in one LuaHost (best of {RUNS})")
    host = _host()
    table = host.lua.execute(LOOPS)
    rates: dict[str, float] = {}
    results = []
    for case in CASES:
        rate = _best_rate(host, table[case.key.encode()], case.key, case.in_task)
        rates.setdefault(case.key, rate)
        line = f"  {case.label:<44} {fmt_rate(rate):>10}"
        if case.baseline is None:
            print(line + "   (baseline)", flush=True)
            continue
        base = rates[case.baseline]
        ratio = rate / base
        line += f"   {ratio:5.2f}x {_SHORT[case.baseline]}"
        if case.key == "encode" and case.goal:
            line += f" ({rate / rates['bare']:.2f}x without table)"
        goal = f">= {GOAL_RATIO:g}x"
        passed = ratio >= GOAL_RATIO if case.goal else None
        line += f"   goal {goal}: {verdict(passed)}" if passed is not None else "   info"
        print(line, flush=True)
        results.append(
            Result("call_rate", case.label, rate, base, "/s", goal if case.goal else "", passed)
        )
    return results


if __name__ == "__main__":
    run()
