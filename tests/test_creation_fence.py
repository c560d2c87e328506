"""No suspending primitive lets its caller miss events about the object it is creating.

A real hub: ``pty.spawn`` twice, then ``events.on`` sees the first program's exit. In
process: the scheduler's creation fence (``Fence``) over hypothesis-chosen orderings of
create / kill / exit, with a creating primitive whose objects emit events at chosen loop
turns (the mechanism ``pty.spawn`` uses, without a process per example).
"""

from __future__ import annotations

import asyncio
import types

from hypothesis import given, settings
from hypothesis import strategies as st

from botster.lua.api import FENCE, LuaFunction, lua_api
from botster.lua.runtime import LuaHost


async def test_spawn_then_spawn_then_listen_sees_the_first_exit(hub):
    proc = await hub(
        plugins={
            "p": """
        local h = assert(pty.spawn{cmd = "sh", args = {"-c", "exit 7"}})
        local h2 = assert(pty.spawn{cmd = "sleep", args = {"100"}})
        events.on("process_exited", function(d)
          if d.session_id == h:id() then log.info("RESULT exited " .. json.encode(d)) end
        end)
        h2:close()
    """
        }
    )
    exited = await proc.result("exited")
    assert exited["exit_code"] == 7


async def test_spawn_kill_listen_in_one_step_sees_the_kill(hub):
    proc = await hub(
        plugins={
            "p": """
        local h = assert(pty.spawn{cmd = "sleep", args = {"100"}})
        h:kill()
        local h2 = assert(pty.spawn{cmd = "sh", args = {"-c", "exit 3"}})
        local seen = {}
        events.on("process_exited", function(d)
          seen[d.session_id] = d
          if seen[h:id()] and seen[h2:id()] then
            log.info("RESULT both " .. json.encode({seen[h:id()].signal, seen[h2:id()].exit_code}))
          end
        end)
    """
        }
    )
    sig, code = await proc.result("both")
    assert sig == 15 and code == 3


# In process -------------------------------------------------------------------------------


class _Maker:
    """A creating primitive whose objects fire one event each at a chosen loop turn."""

    def __init__(self) -> None:
        self.listener = None
        self.seen: list[str] = []
        self.lost: list[str] = []
        self.fences: dict[str, object] = {}
        self.host: LuaHost | None = None

    def fire(self, name: str) -> None:
        fence = self.fences.pop(name, None)
        if fence is None:
            return  # fired already (killed)

        def deliver() -> None:
            if self.listener is None:
                self.lost.append(name)
            else:
                self.host.sched.start("p", "listener", self.listener, name)

        if fence is not None and fence is not False:
            fence.run(deliver)
        else:
            deliver()


def _module(maker: _Maker) -> types.ModuleType:
    @lua_api(creates=True)
    async def make(name: str, wait_turns: int, fire_after: int) -> str:
        maker.fences[name] = FENCE.get() or False
        loop = asyncio.get_running_loop()

        async def later() -> None:
            for _ in range(fire_after):
                await asyncio.sleep(0)
            maker.fire(name)

        loop.create_task(later())
        for _ in range(wait_turns):
            await asyncio.sleep(0)
        return name

    @lua_api
    def kill(name: str) -> bool:
        maker.fire(name)
        return True

    @lua_api
    def on(fn: LuaFunction) -> bool:
        maker.listener = fn
        return True

    @lua_api
    async def pause(turns: int) -> bool:
        for _ in range(turns):
            await asyncio.sleep(0)
        return True

    mod = types.ModuleType("maker")
    mod.__file__ = "/nonexistent/maker.py"  # no companion .lua
    mod.LUA = {"make": make, "kill": kill, "on": on, "pause": pause}  # type: ignore[attr-defined]
    return mod


creations = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 6), st.booleans()), min_size=1, max_size=4
)


@settings(max_examples=150)
@given(creations)
def test_fence_over_create_kill_exit_orderings(plan) -> None:
    """Objects made (and maybe killed) before the listener in one run of creating calls are
    never lost; objects' events after a plain wait may be, but are never held forever."""

    async def run() -> tuple[_Maker, list[str]]:
        maker = _Maker()
        host = LuaHost()
        maker.host = host
        host.install("maker", _module(maker))
        lines, names = [], []
        for i, (wait_turns, fire_after, killed) in enumerate(plan):
            lines.append(f'maker.make("o{i}", {wait_turns}, {fire_after})')
            if killed:
                lines.append(f'maker.kill("o{i}")')
            names.append(f"o{i}")
        lines.append("maker.on(function(name) seen[#seen + 1] = name end)")
        script = "seen = {}\n" + "\n".join(lines)
        fn = host.load(script.encode(), "=plan")
        host.sched.start("p", "plan", fn)
        async with asyncio.timeout(10):
            while len(maker.fences) or host.sched.pending_count():
                await asyncio.sleep(0)
            for _ in range(5):
                await asyncio.sleep(0)
        seen_table = host.globals[b"seen"]
        got = [str(seen_table[i + 1]) for i in range(len(seen_table))]
        return maker, got

    maker, got = asyncio.run(run())
    assert maker.lost == []
    assert sorted(got) == sorted(f"o{i}" for i in range(len(plan)))
