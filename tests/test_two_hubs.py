"""Two hubs in one Python process, on one loop: each sees only its own state (issue 9).

Both hubs run the same plugin. The test drives each one differently (events emitted into one
only, a different number of timers, a socket client on each) and checks, through the
per-hub leak counters and through a request over each hub's socket, that nothing of one
shows in the other. Then reloading the plugin in one hub releases only that hub's timers.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from botster.hub.config import Config
from botster.hub.daemon import Hub
from botster.hub.identity import find_repo_root, hub_id_for, socket_path_for
from botster.hub.paths import Paths
from botster.primitives import hub_client, timer, watch, websocket
from botster.transports.client import HubConnection
from tests.conftest import write_plugin

PLUGIN = """
local commands = require("lib.commands")
local me = hub.hub_id()
local ticks, pings = 0, 0
timer.every(0.02, function()
  ticks = ticks + 1
  if ticks == 3 then log.info("RESULT ticked " .. me) end
end)
events.on("make_timer", function()
  timer.every(3600, function() end)
  log.info("RESULT made " .. me)
end)
events.on("ping", function() pings = pings + 1 end)
commands.register("test.state", function()
  local ids = {}
  for _, c in ipairs(socket.clients()) do ids[#ids + 1] = c.id end
  return {hub_id = me, pings = pings, clients = ids}
end)
log.info("RESULT loaded " .. me)
"""


class _Lines(logging.Handler):
    """Collects log messages; wakes waiters on each one (everything runs on one loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = "\n".join(self.messages[-40:])
            raise AssertionError(f"timed out waiting for {what}; last log lines:\n{seen}") from None

    def count(self, text: str) -> int:
        return sum(1 for m in self.messages if text in m)


def _repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=root, check=True)
    write_plugin(root, "twin", PLUGIN)
    return root


@pytest.fixture
async def lines() -> AsyncIterator[_Lines]:
    handler = _Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_two_hubs_in_one_process_keep_their_state_apart(
    tmp_path: Path, isolated_env: dict[str, str], lines: _Lines
) -> None:
    hubs: list[Hub] = []
    for name in ("a", "b"):
        repo = find_repo_root(_repo(tmp_path / name))
        paths = Paths.for_repo(repo)
        config = Config.load_blocking(paths.config_file)
        h = Hub(paths, config, hub_id_for(repo), handle_signals=False)
        h.lock.acquire()
        hubs.append(h)
    a, b = hubs
    assert a.hub_id != b.hub_id
    runs = [asyncio.create_task(h.run()) for h in hubs]
    conns: list[HubConnection] = []
    try:
        await lines.wait(lambda: lines.count("hub ready") == 2, "both hubs ready")
        for h in hubs:
            assert lines.count(f"RESULT loaded {h.hub_id}") == 1
        # Each hub's timer fires on its own.
        await lines.wait(
            lambda: all(lines.count(f"RESULT ticked {h.hub_id}") for h in hubs),
            "both plugins' timers to tick",
        )
        assert timer.active_count(a, "twin") == timer.active_count(b, "twin") == 1

        # Events emitted into hub a reach only hub a's listeners.
        a.emit("make_timer")
        a.emit("make_timer")
        await lines.wait(lambda: lines.count(f"RESULT made {a.hub_id}") == 2, "two timers in a")
        assert lines.count(f"RESULT made {b.hub_id}") == 0
        assert timer.active_count(a, "twin") == 3
        assert timer.active_count(b, "twin") == 1
        b.emit("ping")

        # A socket client of each hub talks to that hub only.
        for h in hubs:
            conns.append(await HubConnection.connect(socket_path_for(h.paths, h.hub_id)))
        state_a = await conns[0].request("test.state")
        state_b = await conns[1].request("test.state")
        assert state_a == {"hub_id": a.hub_id, "pings": 0, "clients": [conns[0].client_id]}
        assert state_b == {"hub_id": b.hub_id, "pings": 1, "clients": [conns[1].client_id]}

        # Reloading the plugin in hub a releases a's timers and nothing of b's.
        await conns[0].request("plugins.reload", {"name": "twin"})
        assert timer.active_count(a, "twin") == 1
        assert timer.active_count(b, "twin") == 1
        assert lines.count(f"RESULT loaded {a.hub_id}") == 2
        assert lines.count(f"RESULT loaded {b.hub_id}") == 1
        for h in hubs:
            assert hub_client.active_count(h) == websocket.active_count(h) == 0
    finally:
        for conn in conns:
            await conn.close()
        for h in hubs:
            h.quit()
        codes = await asyncio.gather(*runs)
    assert codes == [0, 0]
    # Stopping released everything each hub held.
    for h in hubs:
        assert timer.active_count(h) == watch.active_count(h) == 0
