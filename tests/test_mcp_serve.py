"""`botster mcp-serve` driven by the official MCP Python SDK as a real MCP client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from harness import HubProcess, wait_until
from tests.conftest import write_plugin

TOOLS = """
mcp.tool("add", {
  description = "Adds two numbers",
  input_schema = {type = "object", properties = {a = {type = "number"}, b = {type = "number"}},
                  required = {"a", "b"}},
}, function(p, ctx) return {sum = p.a + p.b, agent = ctx.agent_key, hub = ctx.hub_id} end)
mcp.tool("broken", {description = "Always fails"}, function() error("kaput") end)
mcp.tool("slow_http", {description = "waits"}, function()
  local t = {}
  for i = 1, 3 do coroutine.yield() end
  return "waited"
end)
"""


@asynccontextmanager
async def mcp_client(repo: Path, env: dict[str, str], notifications: list[str]):
    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        notifications.append(type(root).__name__)

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "botster.cli", "mcp-serve"],
        env={**os.environ, **env, "BOTSTER_AGENT_KEY": "agent-42"},
        cwd=str(repo),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            yield session


async def test_list_and_call_tools_with_agent_context(hub, git_repo: Path, isolated_env):
    proc = await hub(plugins={"tools": TOOLS})
    proc.expect_log(r"mcp tool 'broken' \(tools\) failed")
    notes: list[str] = []
    async with mcp_client(git_repo, isolated_env, notes) as session:
        tools = (await session.list_tools()).tools
        assert [t.name for t in tools] == ["add", "broken", "slow_http"]
        add = tools[0]
        assert add.description == "Adds two numbers"
        assert add.input_schema["required"] == ["a", "b"]
        result = await session.call_tool("add", {"a": 2, "b": 40})
        assert not result.is_error
        payload = json.loads(result.content[0].text)
        assert payload["sum"] == 42 and payload["agent"] == "agent-42"
        assert len(payload["hub"]) == 64
        failed = await session.call_tool("broken", {})
        assert failed.is_error and "tool 'broken' failed" in failed.content[0].text
        unknown = await session.call_tool("nope", {})
        assert unknown.is_error and "unknown tool 'nope'" in unknown.content[0].text
        results = await asyncio.gather(*(session.call_tool("slow_http", {}) for _ in range(5)))
        assert [r.content[0].text for r in results] == ["waited"] * 5


async def test_plugin_edit_mid_session_sends_list_changed(hub, git_repo: Path, isolated_env):
    await hub(plugins={"tools": TOOLS})
    notes: list[str] = []
    async with mcp_client(git_repo, isolated_env, notes) as session:
        await session.list_tools()
        before = notes.count("ToolListChangedNotification")
        write_plugin(
            git_repo,
            "tools",
            TOOLS
            + """
            mcp.tool("fresh", {description = "new"}, function() return "fresh!" end)
        """,
        )
        await wait_until(
            lambda: notes.count("ToolListChangedNotification") > before,
            "list_changed after the edit",
        )
        names = [t.name for t in (await session.list_tools()).tools]
        assert "fresh" in names
        assert (await session.call_tool("fresh", {})).content[0].text == "fresh!"


async def test_hub_restart_fails_clearly_then_reconnects(hub, git_repo: Path, isolated_env):
    first = await hub(plugins={"tools": TOOLS})
    notes: list[str] = []
    async with mcp_client(git_repo, isolated_env, notes) as session:
        assert (await session.call_tool("add", {"a": 1, "b": 1})).content[0].text
        seen = notes.count("ToolListChangedNotification")
        first.signal(signal.SIGTERM)
        assert await first.wait_exit() == 0
        await wait_until(lambda: notes.count("ToolListChangedNotification") > seen, "disconnect")
        with pytest.raises(MCPError, match="hub is not reachable"):
            await session.call_tool("add", {"a": 1, "b": 1})
        seen = notes.count("ToolListChangedNotification")
        second = HubProcess(git_repo, isolated_env)
        await second.start()
        await second.wait_ready()
        await wait_until(lambda: notes.count("ToolListChangedNotification") > seen, "reconnect")
        result = await session.call_tool("add", {"a": 20, "b": 22})
        assert json.loads(result.content[0].text)["sum"] == 42
    await second.stop_and_verify()


def test_no_hub_is_a_clear_error(git_repo: Path, isolated_env):
    r = subprocess.run(
        [sys.executable, "-m", "botster.cli", "mcp-serve"],
        cwd=git_repo,
        capture_output=True,
        text=True,
        timeout=30,
        input="",
    )
    assert r.returncode == 1
    assert "no hub found for this directory" in r.stderr


async def test_requests_from_a_file_and_a_quiet_exit(hub, git_repo: Path, isolated_env, tmp_path):
    await hub(plugins={"tools": TOOLS})
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18"},
            }
        )
        + "\n"
        + json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        + "\n"
    )
    with requests.open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botster.cli",
            "mcp-serve",
            cwd=git_repo,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **isolated_env},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    replies = {m["id"]: m for m in map(json.loads, out.decode().splitlines())}
    assert replies[1]["result"]["serverInfo"]["name"] == "botster"
    assert [t["name"] for t in replies[2]["result"]["tools"]] == ["add", "broken", "slow_http"]
    assert "lost the hub" not in err.decode()  # stdin ended: a clean exit, not a lost hub
    assert proc.returncode == 0
