"""``botster mcp-serve``: an MCP server on stdio that serves the hub's ``mcp`` tool registry.

An agent (Claude Code, Codex...) starts this as an MCP server. It speaks newline-delimited
JSON-RPC 2.0 on stdin/stdout and forwards to the hub over its socket:

* ``tools/list`` -> hub request ``mcp.list_tools`` (see docs/protocol.md)
* ``tools/call`` -> hub request ``mcp.call_tool``, with the calling agent's context
* ``notifications/tools/list_changed`` is sent when the hub's ``mcp`` channel says so, and
  whenever the bridge (re)connects

The context handed to tool handlers is ``{agent_key, hub_id}``: ``agent_key`` comes from
``$BOTSTER_AGENT_KEY`` (set by the hub for the agents it spawns). The hub is found from
``--socket``, else ``$BOTSTER_HUB_SOCKET``, else the hub serving the current repository.
While the hub is down, requests fail with a clear error (after waiting up to 2 s for a
reconnection) and the bridge keeps trying. Logs go to stderr; stdout carries only JSON-RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from botster.base.errors import ProtocolError
from botster.transports.client import HubConnection, RequestFailed

__all__ = ["serve"]

log = logging.getLogger("mcp-serve")

SUPPORTED_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
RECONNECT_S = 0.5
CONNECT_GRACE_S = 2.0  # how long a call waits for a (re)connecting hub before failing
FINISH_S = 10.0  # at end of input, how long requests still running may take
HUB_DOWN = -32000  # JSON-RPC server error: the hub is not reachable


class HubLink:
    """The bridge's connection to the hub, re-established whenever it drops."""

    def __init__(self, socket_path: Path, context: dict[str, Any], on_change: Any) -> None:
        self.socket_path = socket_path
        self.context = context
        self.on_change = on_change  # called (no args) when the tool list may have changed
        self.conn: HubConnection | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Connects, serves, reconnects; forever."""
        while True:
            try:
                self.conn = await HubConnection.connect(
                    self.socket_path, "mcp-serve", on_message=self._on_message
                )
                self.conn.subscribe("mcp", {"context": self.context})
                await self.conn.closed.wait()
            except (OSError, ProtocolError, TimeoutError) as e:
                log.debug("hub link: %s", e)
            finally:
                self.conn = None
                task = asyncio.current_task()
                stopping = task is not None and task.cancelling() > 0  # stdin closed: exiting
                if self.connected.is_set() and not stopping:
                    self.connected.clear()
                    log.warning("lost the hub at %s; reconnecting", self.socket_path)
                    self.on_change()
            await asyncio.sleep(RECONNECT_S)

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "subscribed":
            self.connected.set()
            log.info("connected to hub %s", self.conn.hub_id[:12] if self.conn else "?")
            self.on_change()
        elif kind == "event" and msg.get("event") == "tools_list_changed":
            self.on_change()
        elif kind == "error":
            log.warning("hub says: %s", msg.get("message"))

    async def request(self, command: str, args: dict[str, Any]) -> Any:
        """Runs a hub command; raises ConnectionError when the hub is not there."""
        if not self.connected.is_set():
            # Starting up or reconnecting: give the link a moment before failing the call.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONNECT_GRACE_S):
                    await self.connected.wait()
        conn = self.conn
        if conn is None or not self.connected.is_set():
            raise ConnectionError(
                f"the Botster hub is not reachable at {self.socket_path}; is it running? "
                "(mcp-serve keeps retrying)"
            )
        try:
            return await conn.request(command, args)
        except RequestFailed as e:
            raise RuntimeError(str(e)) from None


class Bridge:
    """JSON-RPC on stdio, answered through a HubLink."""

    def __init__(self, socket_path: Path, context: dict[str, Any]) -> None:
        self.out = sys.stdout.buffer
        self.initialized = False
        self.link = HubLink(socket_path, context, self._tools_changed)

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.out.flush()

    def _tools_changed(self) -> None:
        if self.initialized:
            self.send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})

    async def handle(self, msg: Any) -> None:
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            self.send(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32600, "message": "not a JSON-RPC 2.0 message"},
                }
            )
            return
        method, rid = msg.get("method"), msg.get("id")
        if method is None:
            return  # a response to something we never ask
        params = msg.get("params") or {}
        try:
            result = await self._dispatch(method, params)
        except _RpcError as e:
            if rid is not None:
                self.send(
                    {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": e.message}}
                )
            return
        if rid is not None:
            self.send({"jsonrpc": "2.0", "id": rid, "result": result})

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        if method == "initialize":
            wanted = params.get("protocolVersion")
            version = wanted if wanted in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
            from importlib.metadata import version as pkg_version

            return {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "botster", "version": pkg_version("botster")},
            }
        if method == "notifications/initialized":
            self.initialized = True
            return None
        if method.startswith("notifications/"):
            return None
        if method == "ping":
            return {}
        if method == "tools/list":
            tools = await self._hub("mcp.list_tools", {})
            return {
                "tools": [
                    {
                        "name": t["name"],
                        "description": t.get("description", ""),
                        "inputSchema": t.get("input_schema") or {"type": "object"},
                        **({"title": t["title"]} if t.get("title") else {}),
                        **({"annotations": t["annotations"]} if t.get("annotations") else {}),
                    }
                    for t in tools
                ]
            }
        if method == "tools/call":
            name = params.get("name")
            if not isinstance(name, str):
                raise _RpcError(-32602, "tools/call: params.name must be a string")
            result = await self._hub(
                "mcp.call_tool", {"name": name, "arguments": params.get("arguments") or {}}
            )
            return {"content": result.get("content", []), "isError": bool(result.get("is_error"))}
        raise _RpcError(-32601, f"method not found: {method}")

    async def _hub(self, command: str, args: dict[str, Any]) -> Any:
        try:
            return await self.link.request(command, args)
        except ConnectionError as e:
            raise _RpcError(HUB_DOWN, str(e)) from None
        except RuntimeError as e:
            raise _RpcError(-32603, str(e)) from None

    async def run(self) -> None:
        link = asyncio.create_task(self.link.run())
        read_line = await _stdin_lines()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                line = await read_line()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.send(
                        {
                            "jsonrpc": "2.0",
                            "id": None,
                            "error": {"code": -32700, "message": "parse error"},
                        }
                    )
                    continue
                task = asyncio.create_task(self.handle(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:  # stdin ended: answer what was asked before leaving
                await asyncio.wait(tasks, timeout=FINISH_S)
        finally:
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link


async def _stdin_lines() -> Any:
    """A coroutine function returning stdin's next line (b"" at the end).

    Agents give us a pipe, read without a thread; a regular file (``< requests.jsonl``)
    cannot be watched by the event loop, so it is read on a thread.
    """
    loop = asyncio.get_running_loop()
    if stat.S_ISREG(os.fstat(sys.stdin.fileno()).st_mode):
        return lambda: loop.run_in_executor(None, sys.stdin.buffer.readline)
    reader = asyncio.StreamReader(limit=16 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader.readline


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def find_socket(explicit: Path | None) -> Path | None:
    """--socket, else $BOTSTER_HUB_SOCKET, else the hub of the current repository."""
    if explicit is not None:
        return explicit
    env = os.environ.get("BOTSTER_HUB_SOCKET")
    if env:
        return Path(env)
    from botster.base.registry import find_hub_for

    entry = find_hub_for(Path.cwd())
    return Path(entry["socket"]) if entry else None


def serve(socket_path: Path) -> None:
    """Runs the bridge until stdin closes."""
    context = {"agent_key": os.environ.get("BOTSTER_AGENT_KEY")}
    asyncio.run(Bridge(socket_path, {k: v for k, v in context.items() if v}).run())
