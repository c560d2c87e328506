"""Key to echo through a socket client of a real hub, next to ``tmux attach``.

Botster: a ``HubConnection`` (the Python client of the hub socket, as the UI uses it) in this
process, subscribed to the terminal of an agent of a real ``botster hub`` whose program is
``bench._tmux.ECHO`` (raw mode; each byte answered with its own count). A key is one
``send_input``; it is timed from there until the PTY_OUTPUT frame holding the program's token
for it is handed to the client's ``on_frame``. The hub lets the client read the terminal
straight from the session process and write keys to its PTY (``terminal_direct``,
``sessions/watchers.py``), as the UI does: client, program, session process, client. Nothing
is drawn: this is the transport's share of what a user of any client waits for. The row
"through the hub" is the same with a client that did not ask for direct terminals (PTY_INPUT
to the hub, which writes the key itself; output relayed by the hub): what remote-like clients
get.

Anchor, same run: the same program in a private tmux server, through ``tmux attach`` on a
pseudo-terminal this process reads (``bench._tmux``, shared with ``tui_tmux``), timed from
the key written to the terminal's master until tmux's output shows the token. Information:
the program on a bare PTY (``bench._tui.BarePty``), the floor of both; and the program in a
session process of its own that this process talks to as its hub (``SessionClient``: keys
written to the PTY through the handed-over master, echo read from the session): what a
client reading a session's output without the hub in between would see. Blocks of keys,
20 ms apart, alternate between the four.

Goal (issue 11): socket client p50 within 1.5x of tmux attach's.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from typing import Any

from bench._common import Result, header, median, p99, verdict
from bench._hub import HubRun, Sandbox
from bench._tmux import OuterTerminal, Tmux, token, write_echo
from bench._tui import BarePty, latency_line
from botster.base.framing import (
    PTY_OUTPUT,
    SNAPSHOT,
    Frame,
    split_session,
)
from botster.sessions.client import Output, SessionClient, spawn_session
from botster.transports.client import HubConnection

__all__ = ["run"]

BLOCKS, PER_BLOCK = 4, 100
GAP_S = 0.02  # typing, not a flood
WITHIN_S = 5.0


class _EchoClient:
    """A HubConnection attached to one session's terminal, typing one key at a time.

    `typed` counts the keys the program got from every client (its token is that count).
    """

    def __init__(self, conn: HubConnection, sid: str, typed: list[int]) -> None:
        self.conn, self.sid = conn, sid
        self.ready = asyncio.get_running_loop().create_future()  # the program said READY
        self.typed = typed
        self.expected = b""
        self.tail = b""
        self.arrived: asyncio.Future[float] | None = None
        conn.on_frame = self._on_frame

    def _on_frame(self, frame: Frame) -> None:
        if frame.type not in (PTY_OUTPUT, SNAPSHOT):
            return
        sid, data = split_session(frame.payload)
        if sid != self.sid:
            return
        seen = self.tail + data
        if not self.ready.done() and b"READY" in seen:
            self.ready.set_result(None)
        if frame.type == SNAPSHOT:
            return
        if self.arrived is not None and self.expected in seen and not self.arrived.done():
            self.arrived.set_result(time.perf_counter())  # stamped on arrival, not on wakeup
        self.tail = seen[-16:]

    async def keystroke(self) -> float:
        """Types a key; ms until the program's token for it reaches ``on_frame``."""
        self.typed[0] += 1
        self.expected, self.tail = token(self.typed[0]), b""
        self.arrived = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.conn.send_input(self.sid, b"x")
        try:
            t1 = await asyncio.wait_for(self.arrived, WITHIN_S)
        except TimeoutError:
            raise RuntimeError(f"token {self.typed[0]} never arrived") from None
        return (t1 - t0) * 1000


class _SessionEcho:
    """A session process of its own, this process its hub: the hub-less floor of the path."""

    def __init__(self) -> None:
        self.client: SessionClient | None = None
        self.keys = 0
        self.tail = b""
        self.expected = b"READY"
        self.arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def start(self, argv: list[str], runtime: str) -> None:
        _, sock = await spawn_session(
            {"cmd": argv[0], "args": argv[1:], "rows": 36, "cols": 120}, runtime
        )
        self.client = await SessionClient.connect(
            sock, on_output=self._on_output, on_event=lambda _event: None
        )
        await asyncio.wait_for(self.arrived, 30)

    def _on_output(self, item: Output) -> None:
        seen = self.tail + item.data
        if self.expected in seen and not self.arrived.done():
            self.arrived.set_result(time.perf_counter())
        self.tail = seen[-16:]

    async def keystroke(self) -> float:
        assert self.client is not None
        self.keys += 1
        self.expected, self.tail = token(self.keys), b""
        self.arrived = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.client.write(b"x")
        try:
            t1 = await asyncio.wait_for(self.arrived, WITHIN_S)
        except TimeoutError:
            raise RuntimeError(f"session token {self.keys} never arrived") from None
        return (t1 - t0) * 1000

    async def close(self) -> None:
        if self.client is not None and self.client.connected:
            await self.client.close()


async def _agent_session(conn: HubConnection) -> str:
    """Creates the agent and returns its session id once it runs (setup, not timed)."""
    await conn.request("create_agent", {"agent": "bench", "branch": "bench"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        agents: Any = await conn.request("list_agents")
        for a in agents or []:
            if a.get("session_id") and a.get("status") == "running":
                return str(a["session_id"])
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the agent never ran: {agents!r}")


def _bare_ready(bare: BarePty) -> None:
    seen, deadline = b"", time.monotonic() + 30
    while b"READY" not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bare PTY's program never said READY: {seen!r}")
        if select.select([bare.master], [], [], 0.1)[0]:
            seen += os.read(bare.master, 1 << 16)


def _tmux_block(term: OuterTerminal, done: int) -> list[float]:
    out = []
    for k in range(done + 1, done + PER_BLOCK + 1):
        out.append(term.keystroke(k))
        time.sleep(GAP_S)
    return out


def _bare_block(bare: BarePty, done: int) -> list[float]:
    out = []
    for k in range(done + 1, done + PER_BLOCK + 1):
        out.append(bare.keystroke(b"x", token(k)))
        time.sleep(GAP_S)
    return out


async def _measure(sandbox: Sandbox) -> dict[str, list[float]]:
    argv = write_echo(sandbox.root)
    env = sandbox.env
    tmux = Tmux(sandbox.root, env)
    await asyncio.to_thread(sandbox.define_agent, argv)
    await asyncio.to_thread(tmux.new_session, argv)
    hub = HubRun(sandbox)
    await hub.start()
    term: OuterTerminal | None = None
    bare: BarePty | None = None
    own = _SessionEcho()
    samples: dict[str, list[float]] = {
        "tmux": [],
        "socket": [],
        "relayed": [],
        "bare": [],
        "session": [],
    }
    try:
        await hub.wait_for(r"hub ready:")
        conn = await hub.connect()
        sid = await _agent_session(conn)
        typed = [0]
        client = _EchoClient(conn, sid, typed)
        conn.subscribe("terminal", {"session_id": sid, "rows": 36, "cols": 120})
        await asyncio.wait_for(client.ready, 30)
        relayed_conn = await hub.connect("bench-relayed", direct_terminal=False)
        relayed = _EchoClient(relayed_conn, sid, typed)
        relayed_conn.subscribe("terminal", {"session_id": sid, "rows": 36, "cols": 120})
        await asyncio.wait_for(relayed.ready, 30)
        term = OuterTerminal(tmux.attach_argv(), env)
        await asyncio.to_thread(term.wait_for, b"READY")
        bare = BarePty(argv)
        await asyncio.to_thread(_bare_ready, bare)
        await own.start(argv, str(sandbox.root / "own-sessions"))
        await asyncio.sleep(0.5)  # first frames and the resize settle (not timed)
        for _ in range(BLOCKS):
            samples["tmux"] += await asyncio.to_thread(_tmux_block, term, len(samples["tmux"]))
            for _ in range(PER_BLOCK):
                samples["socket"].append(await client.keystroke())
                await asyncio.sleep(GAP_S)
            for _ in range(PER_BLOCK):
                samples["relayed"].append(await relayed.keystroke())
                await asyncio.sleep(GAP_S)
            samples["bare"] += await asyncio.to_thread(_bare_block, bare, len(samples["bare"]))
            for _ in range(PER_BLOCK):
                samples["session"].append(await own.keystroke())
                await asyncio.sleep(GAP_S)
        await conn.close()
        await relayed_conn.close()
    finally:
        await own.close()
        if bare is not None:
            bare.close()
        if term is not None:
            term.close()
        await asyncio.to_thread(tmux.kill)
        await hub.stop()
    return samples


def run() -> list[Result]:
    header("socket_echo: key to echo through a socket client of the hub, next to tmux attach")
    goal = "<= 1.5x tmux"
    if not Tmux.installed():
        print("  SKIPPED: tmux is not installed")
        return [Result("socket_echo", "p50 key to echo", None, None, "ms", skipped="no tmux")]
    with Sandbox() as sandbox:
        s = asyncio.run(_measure(sandbox))
    ours, anchor, bare = s["socket"], s["tmux"], s["bare"]
    print(latency_line("tmux attach (anchor)", anchor))
    print(latency_line("socket client (HubConnection)", ours))
    print(latency_line("socket client through the hub (information)", s["relayed"]))
    print(latency_line("bare PTY (information)", bare))
    print(latency_line("session process without the hub (information)", s["session"]))
    print(
        f"  socket client / tmux: p50 {median(ours) / median(anchor):.2f}x, "
        f"p99 {p99(ours) / p99(anchor):.2f}x"
    )
    ok = median(ours) <= 1.5 * median(anchor)
    print(f"  goal: socket client p50 within 1.5x of tmux attach's: {verdict(ok)}")
    return [
        Result("socket_echo", "p50 key to echo", median(ours), median(anchor), "ms", goal, ok),
        Result("socket_echo", "p99 key to echo", p99(ours), p99(anchor), "ms"),
        Result("socket_echo", "p50 relayed by the hub", median(s["relayed"]), median(anchor), "ms"),
        Result(
            "socket_echo", "p50 session without the hub", median(s["session"]), median(anchor), "ms"
        ),
    ]


if __name__ == "__main__":
    run()
