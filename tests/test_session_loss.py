"""A session process that dies (kill -9, the OOM killer) is an exit its watchers hear about
(issue 10, item 5): attached clients get PROCESS_EXITED, plugins the process_exited event."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from botster.transports.client import HubConnection
from tests.test_pty import Terminal, socket_of


async def test_issue10_kill_9_of_a_session_process_sends_process_exited(hub):
    proc = await hub(
        plugins={
            "p": """
        events.on("process_exited", function(d) log.info("RESULT exited " .. json.encode(d)) end)
        require("lib.commands").register("test.spawn", function()
          return assert(pty.spawn({cmd = "sh", args = {"-c", "echo ready; exec cat"}})):id()
        end)
    """
        }
    )
    proc.expect_log("lost session")
    conn = await HubConnection.connect(socket_of(proc), "t")
    sid = await conn.request("test.spawn")
    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": sid})
    async with asyncio.timeout(10):  # the snapshot: attached
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    runtime = Path(proc.env["BOTSTER_RUNTIME_DIR"]) / "sessions"
    record = json.loads((runtime / f"{sid}.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)
    assert await term.wait_exit() == -1
    exited = await proc.result("exited")
    assert exited["session_id"] == sid and exited["lost"] is True
    sessions = await conn.request("sessions.list")
    assert all(s["id"] != sid or not s["running"] for s in sessions)
    await conn.close()
    async with asyncio.timeout(10):  # the program lost its terminal: it ends on SIGHUP
        while True:
            try:
                os.kill(record["child_pid"], 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
