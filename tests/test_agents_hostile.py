"""Agent creation under pressure and with odd input (issue 10, item 5 loose ends)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from botster.transports.client import HubConnection, RequestFailed
from tests.test_agents import define_agent, wait_status
from tests.test_pty import socket_of


async def test_issue10_max_sessions_counts_agents_being_created(hub, git_repo, tmp_path):
    define_agent(git_repo)
    proc = await hub(config={"max_sessions": 4}, env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "w")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    results = await asyncio.gather(
        *(conn.request("create_agent", {"branch": f"c{i}"}) for i in range(12)),
        return_exceptions=True,
    )
    made = [r["agent_key"] for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, RequestFailed)]
    assert len(made) == 4, results
    assert all("max_sessions (4) reached" in str(r) for r in refused)
    for key in made:
        await wait_status(conn, key, "running")
    sessions = [s for s in await conn.request("sessions.list") if s["running"]]
    assert len(sessions) == 4
    assert sorted(a["agent_key"] for a in await conn.request("list_agents")) == sorted(made)
    for key in made:
        await conn.request("close_agent", {"agent_key": key})
    await conn.close()


@pytest.mark.parametrize("branch", ["-x", "@", "a..b", "a b", "x.lock", "HEAD"])
async def test_issue10_a_refused_branch_leaves_no_agent_and_no_ref(hub, git_repo, tmp_path, branch):
    define_agent(git_repo)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "w")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    with pytest.raises(RequestFailed, match="not a valid branch name"):
        await conn.request("create_agent", {"branch": branch})
    assert await conn.request("list_agents") == []
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=git_repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert refs == ["refs/heads/main"]
    await conn.close()


async def test_issue10_distinct_branches_get_distinct_keys(hub, git_repo, tmp_path):
    define_agent(git_repo)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "w")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    a = await conn.request("create_agent", {"branch": "a/b"})
    b = await conn.request("create_agent", {"branch": "a-b"})
    assert a["agent_key"] != b["agent_key"]
    ra = await wait_status(conn, a["agent_key"], "running")
    rb = await wait_status(conn, b["agent_key"], "running")
    assert (ra["branch"], rb["branch"]) == ("a/b", "a-b")
    for key in (a["agent_key"], b["agent_key"]):
        await conn.request("close_agent", {"agent_key": key})
    await conn.close()


@pytest.mark.parametrize("issue", [-1, 0, 1.5, "7", True])
async def test_issue10_issue_numbers_are_validated(hub, git_repo, tmp_path, issue):
    define_agent(git_repo)
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "w")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    with pytest.raises(RequestFailed, match="create_agent: issue: expected a positive integer"):
        await conn.request("create_agent", {"issue": issue})
    assert await conn.request("list_agents") == []
    await conn.close()
