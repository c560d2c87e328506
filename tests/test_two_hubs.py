"""Two hubs in one Python process, on one loop: each sees only its own state (issue 9).

Both hubs run the same plugin. The test drives each one differently (events emitted into one
only, a different number of timers, a socket client on each) and checks, through the
per-hub leak counters and through a request over each hub's socket, that nothing of one
shows in the other. Then reloading the plugin in one hub releases only that hub's timers.
"""

from __future__ import annotations

from pathlib import Path

from botster.primitives import hub_client, timer, watch, websocket
from botster.transports.client import HubConnection
from tests.inproc import LogLines, make_repo, running_hubs, socket_of

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


async def test_two_hubs_in_one_process_keep_their_state_apart(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    lines = LogLines()
    repos = [make_repo(tmp_path / name, {"twin": PLUGIN}) for name in ("a", "b")]
    conns: list[HubConnection] = []
    with lines.attached():
        async with running_hubs(repos, lines) as hubs:
            a, b = hubs
            assert a.hub_id != b.hub_id
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
            try:
                for h in hubs:
                    conns.append(await HubConnection.connect(socket_of(h)))
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
    # Stopping released everything each hub held.
    for h in hubs:
        assert timer.active_count(h) == watch.active_count(h) == 0
