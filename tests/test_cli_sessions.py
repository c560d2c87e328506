"""`botster stop` and `botster sessions`: stop a hub, list sessions (orphans too), end them.

A real hub runs two agents; the commands run as a user would run them, as processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from harness import process_alive, wait_until
from tests.test_tui import start_hub


async def botster(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botster.cli", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def listed(*args: str) -> list[dict]:
    code, out = await botster("sessions", "--json", *args)
    assert code == 0, out
    return json.loads(out)


async def test_stop_and_sessions(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await proc.connect()
    for branch in ("one", "two"):
        await conn.request("create_agent", {"branch": branch})

    async def running() -> list[dict] | None:
        agents = await conn.request("list_agents")
        return agents if all(a["status"] == "running" for a in agents) else None

    agents = await wait_until(running, "both agents running", timeout=30)
    await conn.close()
    rows = await listed("--repo", str(git_repo))
    assert sorted(r["agent_key"] for r in rows) == ["one", "two"]
    assert all(r["hub_running"] and not r["orphaned"] for r in rows)
    assert {r["id"] for r in rows} == {a["session_id"] for a in agents}
    code, out = await botster("sessions")
    assert code == 0 and "one" in out and "two" in out and "orphaned" not in out

    # Stopping the hub leaves the sessions running, orphaned, and says so.
    code, out = await botster("stop", cwd=git_repo)
    assert code == 0 and "stopped" in out and "2 sessions keep running" in out, out
    assert await proc.wait_exit() == 0
    rows = await listed()
    assert len(rows) == 2 and all(r["orphaned"] for r in rows)
    code, out = await botster("sessions")
    assert out.count("orphaned") == 2

    # Errors: no hub to stop; an id that matches nothing.
    code, out = await botster("stop", "--repo", str(git_repo))
    assert code == 1 and "no hub is running" in out
    code, out = await botster("sessions", "--end", "nosuchid")
    assert code == 1 and "no session with an id starting 'nosuchid'" in out

    # End one by id prefix, then the rest with stop --sessions (no hub needed).
    first = next(r for r in rows if r["agent_key"] == "one")
    code, out = await botster("sessions", "--end", first["id"][:-1])
    assert code == 0 and "1 session ended" in out, out
    assert not process_alive(first["pid"]) and not process_alive(first["child_pid"])
    assert [r["agent_key"] for r in await listed()] == ["two"]
    code, out = await botster("stop", "--repo", str(git_repo), "--sessions")
    assert code == 0 and "1 session ended" in out, out
    assert await listed() == []


async def test_end_orphans_spares_a_running_hubs_sessions(hub, git_repo: Path, tmp_path: Path):
    proc = await start_hub(hub, git_repo, tmp_path)
    conn = await proc.connect()
    await conn.request("create_agent", {"branch": "kept"})
    await conn.close()
    await wait_until(lambda: listed(), "the session", timeout=30)
    code, out = await botster("sessions", "--end-orphans")
    assert code == 0 and "0 sessions ended" in out
    assert [r["agent_key"] for r in await listed()] == ["kept"]
