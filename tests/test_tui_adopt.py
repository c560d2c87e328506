"""A hub restart keeps what the UI shows of each agent: title, cwd and attention.

The agent sets a title and a cwd (OSC 0, OSC 7) and rings the bell on request. A bell the
first hub saw and the user cleared stays cleared after adoption; a bell rung while no hub
ran shows as attention once the next hub adopted the session. No hub logs an error (the
`hub` fixture checks every log at teardown).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from botster.base.framing import PTY_INPUT, encode_frame, encode_session
from harness import wait_until

AGENT = r"""#!/usr/bin/env bash
printf '\033]0;first title\007\033]7;file://localhost/tmp/adopt-cwd\007'
echo READY
while IFS= read -r line; do
  case "$line" in
    bell) printf '\a'; echo rang;;
    later)  # rings once {flag} exists: while no hub runs
      while [ ! -e "{flag}" ]; do sleep 0.05; done
      printf '\033]0;rang while away\007\a'; echo done > "{done}";;
  esac
done
"""


async def agent(conn) -> dict:
    (a,) = await conn.request("list_agents")
    return a


async def test_adoption_keeps_title_cwd_and_attention(hub, git_repo: Path, tmp_path: Path):
    flag, done = tmp_path / "flag", tmp_path / "done"
    d = git_repo / ".botster" / "agents" / "adopt"
    d.mkdir(parents=True)
    (d / "initialization").write_text(
        AGENT.replace("{flag}", str(flag)).replace("{done}", str(done))
    )
    subprocess.run(["git", "add", ".botster"], cwd=git_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agent"], cwd=git_repo, check=True)
    env = {"BOTSTER_WORKTREE_BASE": str(tmp_path / "worktrees")}

    first = await hub(env=env)
    conn = await first.connect()
    await conn.request("create_agent", {"branch": "adopt", "agent": "adopt"})

    async def titled(conn, title: str) -> bool:
        a = await agent(conn)
        return a.get("title") == title and a.get("cwd") == "/tmp/adopt-cwd"

    await wait_until(lambda: titled(conn, "first title"), "the first title and cwd", timeout=30)
    sid = (await agent(conn))["session_id"]
    conn.subscribe("terminal", {"session_id": sid})  # a client types into what it watches

    def type_(conn, text: bytes) -> None:
        conn.send_raw(encode_frame(PTY_INPUT, encode_session(sid, text)))

    # A bell the first hub sees, and the user clears.
    type_(conn, b"bell\r")
    await wait_until(lambda: agent_attention(conn, True), "attention from the bell")
    await conn.request("clear_attention", {"agent_key": "adopt"})
    # A bell rung while no hub runs.
    type_(conn, b"later\r")
    await conn.close()
    await first.stop()
    flag.touch()
    await wait_until(done.exists, "the agent to ring while the hub is down", timeout=20)

    second = await hub(env=env)
    await second.wait_for(r"adopted 1 sessions")
    conn = await second.connect()
    # The session may still be reading the bell from its PTY when the hub adopts it: then
    # it arrives live. Either way the agent shows it.
    await wait_until(lambda: agent_attention(conn, True), "attention after adoption")
    a = await agent(conn)
    assert (a.get("title"), a.get("cwd")) == ("rang while away", "/tmp/adopt-cwd")
    assert a["status"] == "running" and a["session_id"] == sid
    await conn.request("clear_attention", {"agent_key": "adopt"})
    await conn.close()
    await second.stop()

    # Nothing rang since: the next hub shows no attention, and the same title.
    third = await hub(env=env)
    await third.wait_for(r"adopted 1 sessions")
    conn = await third.connect()
    a = await agent(conn)
    assert (a.get("title"), a.get("cwd"), a["attention"]) == (
        "rang while away",
        "/tmp/adopt-cwd",
        False,
    )
    await conn.close()


async def agent_attention(conn, want: bool) -> bool:
    return (await agent(conn))["attention"] is want
