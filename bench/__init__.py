"""Botster's benchmarks: ``make bench`` (``python -m bench``) runs them all and prints a table.

Every benchmark measures its own baseline in the same run and prints the ratio to it, so the
numbers mean the same on a fast laptop and a loaded CI box. The goals from the issue are
printed as PASS or MISS; a miss never fails the run (only a crashed benchmark does). Each
module also runs alone: ``python -m bench.call_rate``.

| module | what | baseline |
|---|---|---|
| ``loop_jitter`` | timer tick jitter while another plugin waits on HTTP | the same timer, no HTTP |
| ``call_rate`` | ``events.emit`` and ``json.encode`` calls/s from Lua | a bare Lua->Python call |
| ``startup`` | spawn to ``hub ready`` with 20 plugins | ``python -c "import lupa.lua54"`` |
| ``cli_help`` | ``botster --help`` wall time | ``python -c pass`` |
| ``pty_throughput`` | PTY output MB/s into the hub and to an attached client | a raw PTY read |
| ``readoption`` | new hub to ``adopted 20 sessions`` after a kill -9 | hub start, no sessions |
| ``session_memory`` | PSS/RSS per session process, 20 running ``bash`` | a sleeping ``python`` |
| ``flood_echo`` | key to echo while the terminal floods colour | a PTY reader drawing in line |
| ``flood_jitter`` | timer tick jitter while 20 sessions flood attached clients | the same, idle |
| ``socket_rtt`` | ``ping`` round trip over the hub socket | a bare asyncio echo |
| ``socket_echo`` | key to echo through a socket client of the hub | ``tmux attach`` on a PTY |
| ``mcp_call`` | ``tools/call`` through ``botster mcp-serve`` | ``ping`` over the socket |
| ``relay`` | hub -> browser signal via ``botster relay`` (1; 2 on Redis), RSS | bare ws echo |
| ``many_clients`` | 100 clients on one flooding session: fairness, hub RSS | 1 client; idle RSS |
| ``tui_echo`` | key to rendered echo through the UI, hub and session (``cat``) | a bare PTY |
| ``tui_flood_input`` | the same while the agent on screen floods; UI frames/s | a bare PTY |
| ``tui_tmux`` | key to drawn echo: ``botster attach`` on a PTY | ``tmux attach`` on a PTY |
| ``push`` | ``push.send`` to 100 subscriptions: pushes/s, tick jitter | bare ``webpush_async`` |
| ``hostile`` | tick jitter, ping p99, restarts while 50 clients send bad input | the same, quiet |
| ``browser`` | web app in Chromium: pairing, key to echo, size | the Python test browser |
| ``webrtc`` | pairing, key echo, PTY output and loop jitter over WebRTC; hub start | bare aiortc |
| ``ice`` | ICE restart to the same screen and key echo through TURN (coturn) | the direct path |
"""

from __future__ import annotations

__all__ = ["BENCHMARKS"]

# Module names under bench/, run in this order by ``python -m bench``.
BENCHMARKS: tuple[str, ...] = (
    "loop_jitter",
    "call_rate",
    "startup",
    "cli_help",
    "pty_throughput",
    "pty_anchors",
    "readoption",
    "session_memory",
    "flood_jitter",
    "flood_echo",
    "socket_rtt",
    "socket_echo",
    "mcp_call",
    "relay",
    "many_clients",
    "tui_echo",
    "tui_flood_input",
    "tui_tmux",
    "push",
    "hostile",
    "browser",
    "webrtc",
    "ice",
)
