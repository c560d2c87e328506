"""Hub start-up: a real ``botster hub`` with 20 small plugins, until ``hub ready``.

Each plugin is what a small real one does at load: one ``events.on``, one ``timer.every``
and one ``mcp.tool``. Two numbers per start, median of 5 (after one warm-up start):

* the hub's own figure from ``hub ready: N plugins loaded, 0 failed, in X ms`` (from
  ``Hub()`` creation, so after Python start-up and imports);
* spawn-to-ready wall time: from spawning ``botster hub`` to that line arriving here.

Baselines, same run and interleaved with the hub starts: ``python -c pass`` and
``python -c "import lupa.lua54"`` (interpreter plus the Lua runtime, the floor for any hub).
Goal (from the issue): under 400 ms.

The hub serves its embedded relay by default (no ``server_url``), started after ``hub ready``.
As information, interleaved: the same start with ``embedded_relay: false`` (the ratio shows
what the relay costs start-up: it should be ~1x), and how long after ``hub ready`` the
embedded relay answers and the hub is registered with it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from bench._common import Result, fmt_ms, header, median, time_process, verdict
from bench._hub import HubRun, Sandbox

__all__ = ["run"]

PLUGINS = 20
RUNS = 5
GOAL_MS = 400.0

PLUGIN = """
-- {name}: a listener, a heartbeat timer and one MCP tool, like a small real plugin.
local seen = 0
events.on("bench_ping", function(data) seen = seen + 1 end)
timer.every(30, function() log.debug("{name} heartbeat: " .. seen .. " pings") end)
mcp.tool("{name}_status", {{
  description = "How many pings {name} has seen",
  input_schema = {{type = "object", properties = {{verbose = {{type = "boolean"}}}}}},
}}, function(params)
  return {{plugin = "{name}", seen = seen, verbose = params.verbose == true}}
end)
"""

READY = r"hub ready: (\d+) plugins? loaded, (\d+) failed, in (\d+) ms"


def _set_relay(sandbox: Sandbox, on: bool) -> None:
    home = Path(sandbox.env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps({"embedded_relay": on}))


async def _start_hub(sandbox: Sandbox, relay: list[float] | None = None) -> tuple[float, float]:
    """One start: (spawn-to-ready wall ms, hub-reported ms). With `relay`, also waits for the
    embedded relay's registration and appends ready-to-registered ms to it."""
    hub = HubRun(sandbox)
    await hub.start()
    try:
        at, m = await hub.wait_for_at(READY)
        if relay is not None:
            registered, _ = await hub.wait_for_at(r"registered as [0-9a-f]{16}")
            relay.append((registered - at) * 1000)
    finally:
        rc = await hub.stop()
    if int(m.group(1)) != PLUGINS or int(m.group(2)) != 0:
        raise RuntimeError(f"expected {PLUGINS} plugins loaded, got: {m.group(0)}\n{hub.log}")
    if rc != 0:
        raise RuntimeError(f"hub exited {rc}:\n{hub.log}")
    return (at - hub.spawned_at) * 1000, float(m.group(3))


def run() -> list[Result]:
    header(f"startup: botster hub with {PLUGINS} plugins to 'hub ready' (median of {RUNS})")
    bare = [sys.executable, "-c", "pass"]
    lupa = [sys.executable, "-c", "import lupa.lua54"]
    walls, reported, bares, lupas = [], [], [], []
    off_walls: list[float] = []
    to_registered: list[float] = []
    with Sandbox() as sandbox:
        for i in range(PLUGINS):
            name = f"plugin{i:02d}"
            sandbox.write_plugin(name, PLUGIN.format(name=name))
        time_process(bare, env=sandbox.env)  # warm-up: page cache, .pyc files
        time_process(lupa, env=sandbox.env)
        asyncio.run(_start_hub(sandbox))
        for _ in range(RUNS):
            bares.append(time_process(bare, env=sandbox.env))
            lupas.append(time_process(lupa, env=sandbox.env))
            _set_relay(sandbox, True)
            wall, own = asyncio.run(_start_hub(sandbox, to_registered))
            walls.append(wall)
            reported.append(own)
            _set_relay(sandbox, False)
            off_walls.append(asyncio.run(_start_hub(sandbox))[0])
    wall_ms, own_ms = median(walls), median(reported)
    bare_ms, lupa_ms = median(bares), median(lupas)
    print(f"  python -c pass                       {fmt_ms(bare_ms):>9}   (baseline)")
    print(f"  python -c 'import lupa.lua54'        {fmt_ms(lupa_ms):>9}   (baseline)")
    print(
        f"  spawn to 'hub ready' (wall)          {fmt_ms(wall_ms):>9}   "
        f"{wall_ms / lupa_ms:.1f}x import lupa   runs: " + ", ".join(f"{w:.0f}" for w in walls)
    )
    print(
        f"  hub-reported (Hub() to ready)        {fmt_ms(own_ms):>9}   "
        f"{own_ms / lupa_ms:.1f}x import lupa   runs: " + ", ".join(f"{r:.0f}" for r in reported)
    )
    print(
        f"  before Hub() (interpreter, imports)  {fmt_ms(wall_ms - own_ms):>9}   "
        f"(wall - hub-reported)"
    )
    off_ms = median(off_walls)
    print(
        f"  (info) same, embedded_relay false    {fmt_ms(off_ms):>9}   "
        f"relay on / off: {wall_ms / off_ms:.2f}x   runs: "
        + ", ".join(f"{w:.0f}" for w in off_walls)
    )
    print(
        f"  (info) hub ready -> registered with its embedded relay: "
        f"{fmt_ms(median(to_registered))} (median)"
    )
    goal = f"< {GOAL_MS:g} ms"
    print(
        f"  goal: spawn to ready {goal}: {verdict(wall_ms < GOAL_MS)}; "
        f"hub-reported {goal}: {verdict(own_ms < GOAL_MS)}"
    )
    rows = (
        (f"spawn to ready, {PLUGINS} plugins", wall_ms),
        (f"hub-reported start, {PLUGINS} plugins", own_ms),
    )
    return [Result("startup", metric, ms, lupa_ms, "ms", goal, ms < GOAL_MS) for metric, ms in rows]


if __name__ == "__main__":
    run()
