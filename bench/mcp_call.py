"""MCP tool calls: ``tools/call`` through ``botster mcp-serve`` to a trivial Lua tool.

A real hub with one plugin tool (``mcp.tool("bench_echo", ...)`` returning ``{n = p.n}``) and a
real ``botster mcp-serve`` child process, driven as an agent drives it: newline-delimited
JSON-RPC on its stdin/stdout (``initialize``, ``notifications/initialized``, then
``tools/call``), one call at a time. The bridge turns each call into a hub request
(``mcp.call_tool``) over the hub socket, the hub runs the Lua handler and the answer comes
back the same way. 500 calls after a warm-up, in 5 blocks interleaved with the others:

* baseline: ``ping`` over the hub socket with ``HubConnection`` (the same client the bridge
  uses), one at a time;
* information: ``mcp.call_tool`` over the hub socket with ``HubConnection``, i.e. the same
  tool call without the bridge and its stdio hop.

Goal (from the issue): p50 of ``tools/call`` under 3 ms.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench._common import Result, bin_path, fmt_ms, header, median, p99, verdict
from bench._hub import HubRun, Sandbox
from botster.transports.client import HubConnection

__all__ = ["run"]

CALLS = 500
BLOCKS = 5
WARMUP = 50
GOAL_MS = 3.0

TOOL = """
mcp.tool("bench_echo", {
  description = "Returns the number it is given",
  input_schema = {type = "object", properties = {n = {type = "number"}}},
}, function(p) return {n = p.n} end)
"""


class _Bridge:
    """``botster mcp-serve`` as a subprocess, spoken to in JSON-RPC lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.next_id += 1
        rid = self.next_id
        message = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            if not line:
                raise RuntimeError("mcp-serve closed its stdout")
            answer = json.loads(line)
            if answer.get("id") != rid:
                continue  # a notification (tools/list_changed)
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer["result"]

    def notify(self, method: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}).encode() + b"\n")


async def _timed(n: int, call: Any) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _measure(sandbox: Sandbox) -> dict[str, list[float]]:
    sandbox.write_plugin("tools", TOOL)
    hub = HubRun(sandbox)
    await hub.start()
    proc: asyncio.subprocess.Process | None = None
    try:
        await hub.wait_for(r"hub ready:")
        conn: HubConnection = await hub.connect()
        proc = await asyncio.create_subprocess_exec(
            str(bin_path("botster")),
            "mcp-serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=sandbox.env,
            cwd=sandbox.repo,
        )
        bridge = _Bridge(proc)
        init = await bridge.call(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        )
        bridge.notify("notifications/initialized")
        tools = await bridge.call("tools/list")
        if [t["name"] for t in tools["tools"]] != ["bench_echo"]:
            raise RuntimeError(f"unexpected tools: {tools}")
        print(f"  mcp-serve: protocol {init['protocolVersion']}, tools: bench_echo")

        async def mcp(i: int) -> None:
            result = await bridge.call("tools/call", {"name": "bench_echo", "arguments": {"n": i}})
            if result.get("isError") or json.loads(result["content"][0]["text"]) != {"n": i}:
                raise RuntimeError(f"tools/call answered {result}")

        async def ping(i: int) -> None:
            await conn.request("ping")

        async def direct(i: int) -> None:
            result = await conn.request(
                "mcp.call_tool", {"name": "bench_echo", "arguments": {"n": i}}
            )
            if result.get("is_error"):
                raise RuntimeError(f"mcp.call_tool answered {result}")

        for call in (mcp, ping, direct):
            await _timed(WARMUP, call)
        out: dict[str, list[float]] = {"mcp": [], "ping": [], "direct": []}
        for _ in range(BLOCKS):
            out["mcp"] += await _timed(CALLS // BLOCKS, mcp)
            out["ping"] += await _timed(CALLS // BLOCKS, ping)
            out["direct"] += await _timed(CALLS // BLOCKS, direct)
        await conn.close()
    finally:
        if proc is not None and proc.returncode is None:
            assert proc.stdin
            proc.stdin.close()  # mcp-serve ends with its stdin
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc is not None and proc.stderr is not None:
            for line in (await proc.stderr.read()).decode(errors="replace").splitlines():
                # On stdin's end the bridge drops its hub link and says so: expected here.
                if "lost the hub" not in line:
                    print(f"  mcp-serve log: {line}")
        await hub.stop()
    return out


def run() -> list[Result]:
    header(f"mcp_call: {CALLS} sequential tools/call through botster mcp-serve to a Lua tool")
    with Sandbox() as sandbox:
        out = asyncio.run(_measure(sandbox))
    labels = {
        "ping": "hub ping, HubConnection (base)",
        "direct": "mcp.call_tool, HubConnection",
        "mcp": "tools/call via mcp-serve",
    }
    for key, label in labels.items():
        ms = out[key]
        print(
            f"  {label:<32} p50 {fmt_ms(median(ms)):>8}  p99 {fmt_ms(p99(ms)):>8}  "
            f"{len(ms) / (sum(ms) / 1000):6.0f} calls/s"
        )
    p50 = median(out["mcp"])
    passed = p50 < GOAL_MS
    print(f"  goal: tools/call p50 < {GOAL_MS:g} ms: {verdict(passed)}")
    base = median(out["ping"])
    return [
        Result(
            "mcp_call", "tools/call p50 via mcp-serve", p50, base, "ms", f"< {GOAL_MS:g} ms", passed
        ),
        Result(
            "mcp_call",
            "tools/call rate via mcp-serve",
            len(out["mcp"]) / (sum(out["mcp"]) / 1000),
            len(out["ping"]) / (sum(out["ping"]) / 1000),
            "/s",
        ),
        Result("mcp_call", "mcp.call_tool p50 (no bridge)", median(out["direct"]), base, "ms"),
    ]


if __name__ == "__main__":
    run()
