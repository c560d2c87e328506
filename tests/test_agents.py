"""The agent lifecycle: definitions, create_agent, environment, hooks in order, close."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from botster.transports.client import HubConnection, RequestFailed
from harness import wait_until
from tests.test_pty import Terminal, socket_of

INIT = """#!/usr/bin/env bash
echo "agent=$BOTSTER_AGENT_KEY branch=$BOTSTER_BRANCH issue=$BOTSTER_ISSUE"
echo "prompt=$BOTSTER_PROMPT"
echo "wt=$BOTSTER_WORKTREE"
echo "sock=$BOTSTER_HUB_SOCKET extra=$EXTRA"
cat .env 2>/dev/null
printf '\\033]0;working on it\\007'
read line
echo "got:$line"
printf '\\a'
read line
"""

HOOKS = """
local seen = {}
local function record(name)
  return function(info) seen[#seen + 1] = name; log.info("RESULT hooks " .. json.encode(seen)) end
end
hub.hooks.intercept("before_agent_create", "t", function(p) seen[#seen + 1] = "before_agent_create"; return p end)
hub.hooks.intercept("filter_agent_env", "t", function(env, info) env.EXTRA = "from-hook"; return env, info end)
hub.hooks.intercept("before_agent_delete", "t", function(r) seen[#seen + 1] = "before_agent_delete"; return r end)
for _, name in ipairs({"after_agent_create", "agent_created", "before_agent_close", "after_agent_close", "agent_deleted"}) do
  hub.hooks.on(name, "t", record(name))
end
hub.hooks.on("agent_lifecycle", "t", function(d) seen[#seen + 1] = "stage:" .. d.stage end)
events.on("pty_notification", function(d) log.info("RESULT notified " .. json.encode(d)) end)
"""


def define_agent(repo: Path, name: str = "shell") -> None:
    d = repo / ".botster" / "agents" / name
    d.mkdir(parents=True)
    (d / "initialization").write_text(INIT)
    (repo / ".botster" / "workspace_include").write_text(".env\n")
    (repo / ".env").write_text("SECRET=copied\n")
    subprocess.run(["git", "add", ".botster"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agents"], cwd=repo, check=True)


async def wait_status(conn: HubConnection, key: str, status: str) -> dict:
    async def agent_in_status() -> dict | None:
        agents = {a["agent_key"]: a for a in await conn.request("list_agents")}
        return agents[key] if key in agents and agents[key]["status"] == status else None

    return await wait_until(agent_in_status, f"agent {key} {status}", timeout=20)


async def test_full_agent_life(hub, git_repo: Path, tmp_path: Path):
    define_agent(git_repo)
    wt_base = tmp_path / "worktrees"
    proc = await hub(plugins={"watcher": HOOKS}, env={"BOTSTER_WORKTREE_BASE": str(wt_base)})
    conn = await HubConnection.connect(socket_of(proc), "t")
    created = await conn.request(
        "create_agent", {"branch": "feature/login", "prompt": "fix it", "issue": 12}
    )
    assert created == {"agent_key": "feature-login", "status": "pending"}
    agent = await wait_status(conn, "feature-login", "running")
    assert agent["agent"] == "shell" and agent["branch"] == "feature/login"
    wt = Path(agent["worktree"])
    assert wt.is_dir() and wt_base in wt.parents
    assert (wt / ".env").read_text() == "SECRET=copied\n"

    term = Terminal()
    conn.on_frame = term.on_frame
    conn.subscribe("terminal", {"session_id": agent["session_id"], "rows": 24, "cols": 100})
    async with asyncio.timeout(10):
        while not term.frames:
            term.changed.clear()
            await term.changed.wait()
    from tests.test_pty import render

    def screen() -> str:
        return "\n".join(render(100, 24, term.frames[0][1][4:] + term.output()))

    async with asyncio.timeout(10):
        while "SECRET=copied" not in screen():
            term.changed.clear()
            await term.changed.wait()
    text = screen()
    assert "agent=feature-login branch=feature/login issue=12" in text
    assert "prompt=fix it" in text and f"wt={wt}" in text
    assert f"sock={socket_of(proc)} extra=from-hook" in text
    async with asyncio.timeout(10):
        while (await wait_status(conn, "feature-login", "running")).get("title") != "working on it":
            await asyncio.sleep(0.05)

    from botster.transports.framing import PTY_INPUT, encode_frame, encode_session

    conn.send_raw(encode_frame(PTY_INPUT, encode_session(agent["session_id"], b"go\n")))
    notified = await proc.result("notified")
    assert notified["agent_key"] == "feature-login" and notified["kind"] == "bell"
    async with asyncio.timeout(10):
        while not (await wait_status(conn, "feature-login", "running"))["attention"]:
            await asyncio.sleep(0.05)
    assert await conn.request("clear_attention", {"agent_key": "feature-login"}) is True

    # A worktree with uncommitted work is kept, and the close says why.
    (wt / "wip.txt").write_text("unsaved thoughts")
    closed = await conn.request(
        "close_agent", {"agent_key": "feature-login", "delete_worktree": True}
    )
    assert closed["closed"] == "feature-login" and closed["worktree_deleted"] is False
    assert "worktree kept" in closed["warning"] and wt.is_dir()
    assert await conn.request("list_agents") == []
    m = await proc.wait_for(r'RESULT hooks (.*"agent_deleted".*)$')
    hooks = json.loads(m.group(1))
    assert hooks[:3] == ["before_agent_create", "stage:creating_worktree", "stage:spawning"]
    order = [h for h in hooks if not h.startswith("stage:")]
    assert order == [
        "before_agent_create",
        "after_agent_create",
        "agent_created",
        "before_agent_delete",
        "before_agent_close",
        "after_agent_close",
        "agent_deleted",
    ]
    await conn.close()


async def test_create_agent_errors_are_clear(hub, git_repo: Path, tmp_path: Path):
    proc = await hub(env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "wt")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    with pytest.raises(RequestFailed, match="no agent definitions: create .botster/agents"):
        await conn.request("create_agent", {"branch": "x"})
    define_agent(git_repo, "one")
    (git_repo / ".botster" / "agents" / "two").mkdir()
    (git_repo / ".botster" / "agents" / "two" / "initialization").write_text("echo two\n")
    with pytest.raises(RequestFailed, match="several agent definitions; say which: one, two"):
        await conn.request("create_agent", {"branch": "x"})
    with pytest.raises(RequestFailed, match=r"no agent definition 'three' \(have: one, two\)"):
        await conn.request("create_agent", {"agent": "three", "branch": "x"})
    with pytest.raises(RequestFailed, match="give a branch or an issue number"):
        await conn.request("create_agent", {"agent": "one"})
    defs = await conn.request("agent_definitions")
    assert [d["name"] for d in defs] == ["one", "two"]
    await conn.close()


async def test_max_sessions_is_enforced(hub, git_repo: Path, tmp_path: Path):
    define_agent(git_repo)
    proc = await hub(config={"max_sessions": 1}, env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "w")})
    conn = await HubConnection.connect(socket_of(proc), "t")
    await conn.request("create_agent", {"branch": "a1"})
    await wait_status(conn, "a1", "running")
    with pytest.raises(RequestFailed, match=r"max_sessions \(1\) reached"):
        await conn.request("create_agent", {"branch": "a2"})
    await conn.request("close_agent", {"agent_key": "a1"})
    await conn.close()
