"""``make run``: a demo repository with a demo plugin and a demo agent, in the terminal UI.

Creates (once) ``<dir>/repo``, a git repository with ``.botster/plugins/hello/init.lua`` and an
agent definition ``.botster/agents/demo/initialization``; starts its hub in the background,
creates the demo agent if none runs, and opens the UI (``botster attach``). Without a terminal
(CI, a pipe) it runs the headless hub in the foreground instead. Edit the plugin while it runs
to see hot reload.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

DEMO_PLUGIN = """\
-- The demo plugin. Edit this file and save: the hub reloads it within half a second.
log.info("hello from the demo plugin (hub " .. hub.hub_id():sub(1, 12) .. ")")

-- A timer that keeps its own count across reloads in hub.state.
local beats = hub.state.get("demo.beats", 0)
timer.every(5, function()
  beats = beats + 1
  hub.state.set("demo.beats", beats)
  log.info("heartbeat " .. beats .. ": try changing this message and saving")
end)

-- An MCP tool agents can call (through `botster mcp-serve`).
mcp.tool("demo_echo", {
  description = "Echoes its input back, with the hub's id",
  input_schema = {
    type = "object",
    properties = { text = { type = "string", description = "what to echo" } },
    required = { "text" },
  },
}, function(params, context)
  return { echo = params.text, hub = hub.hub_id():sub(1, 12) }
end)

events.on("tools_list_changed", function(info)
  log.info("MCP tools now: " .. info.count)
end)

events.on("shutdown", function() log.info("goodbye from the demo plugin") end)
"""


DEMO_AGENT = """\
#!/usr/bin/env bash
# The demo agent: a shell in its own worktree. A real one would run `claude "$BOTSTER_PROMPT"`.
printf '\\033]0;demo agent\\007'
echo "Hello from the demo agent ($BOTSTER_AGENT_KEY) on branch $BOTSTER_BRANCH."
echo "This shell runs in its own git worktree: $BOTSTER_WORKTREE"
echo "Type commands here; ctrl+b then ? shows the UI's keys. Ringing the bell (printf '\\a')"
echo "marks the agent as needing attention."
exec bash --norc -i
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Botster Demo", "-c", "user.email=demo@botster.invalid", *args],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ensure_demo_repo(root: Path) -> Path:
    """Creates the demo repository under `root` if it is not there yet; returns its path."""
    repo = root / "repo"
    plugin = repo / ".botster" / "plugins" / "hello" / "init.lua"
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
        (repo / "README.md").write_text("# Botster demo repository\n")
        _git(repo, "add", "README.md")
        _git(repo, "commit", "-q", "-m", "Demo repository")
    if not plugin.exists():
        plugin.parent.mkdir(parents=True, exist_ok=True)
        plugin.write_text(DEMO_PLUGIN)
    agent = repo / ".botster" / "agents" / "demo" / "initialization"
    if not agent.exists():
        agent.parent.mkdir(parents=True, exist_ok=True)
        agent.write_text(DEMO_AGENT)
    return repo


async def _ensure_demo_agent(socket_path: str) -> None:
    """Creates the demo agent unless one exists, and waits until it runs."""
    import asyncio

    from botster.transports.client import HubConnection

    conn = await HubConnection.connect(socket_path, "make-run")
    try:
        if not await conn.request("list_agents"):
            await conn.request(
                "create_agent", {"agent": "demo", "branch": "demo/hello", "prompt": "say hello"}
            )
        running = asyncio.Event()

        def on_message(msg: dict) -> None:
            if msg.get("event") == "agents_changed":
                check.set()

        check = asyncio.Event()
        conn.on_message = on_message
        conn.subscribe("hub")
        async with asyncio.timeout(30):
            while not running.is_set():
                agents = await conn.request("list_agents")
                if any(a["status"] == "running" for a in agents):
                    running.set()
                else:
                    check.clear()
                    await check.wait()
    finally:
        await conn.close()


def _relay_line(repo: Path, wait_s: float = 5.0) -> str:
    """Where the hub's relay is (the embedded one unless server_url is set), for the user."""
    import time

    from botster.base.identity import hub_id_for
    from botster.base.paths import runtime_dir
    from botster.remote.relay_link import read_relay_info_blocking

    hub_id = hub_id_for(repo)
    deadline = time.monotonic() + wait_s
    info = read_relay_info_blocking(runtime_dir(), hub_id)
    while (info is None or not info.get("server_id")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the hub registers in the background once it is ready
        info = read_relay_info_blocking(runtime_dir(), hub_id)
    if info is None:
        return "Relay: none (see the hub log)"
    kind = "embedded relay" if info.get("embedded") else "relay"
    sid = info.get("server_id") or "not registered yet"
    return f"Relay: {kind} at {info['url']} (this hub's server id: {sid})"


async def _pairing_text(socket_path: str) -> str:
    """The browser pairing link and its QR code, for a newcomer to open the demo agent."""
    from botster.transports.client import HubConnection, RequestFailed

    try:
        conn = await HubConnection.connect(socket_path, "demo")
    except (OSError, ConnectionError) as e:
        return f"No pairing link: {e}"
    try:
        code = await conn.request("connection.regenerate")
    except (RequestFailed, ConnectionError) as e:
        return f"No pairing link: {e}"
    finally:
        await conn.close()
    return (
        f"{code.get('qr_ascii', '')}\n"
        f"Open the demo agent in a browser (or scan the code with a phone that reaches the "
        f"relay): {code['url']}\n"
        f"The link works once; `botster pair --new` makes another."
    )


def _headless(repo: Path, plugin: Path) -> None:
    """No terminal (CI, a pipe, an editor's task runner): the hub runs in the foreground, its
    log on stderr; once it is ready, the demo agent, the relay and the pairing link."""
    import asyncio
    import signal
    import subprocess
    import time

    from botster.base.registry import find_hub_for
    from botster.hub.launch import hub_ready_blocking

    print(f"Botster demo (no terminal, so headless): hub for {repo}", file=sys.stderr)
    hub = subprocess.Popen([sys.executable, "-m", "botster.cli", "hub", "--repo", str(repo)])
    try:
        deadline = time.monotonic() + 30
        entry = None
        while hub.poll() is None and time.monotonic() < deadline:
            entry = find_hub_for(repo)
            if entry is not None and hub_ready_blocking(str(entry["socket"]), timeout=1.0):
                break
            time.sleep(0.1)  # a newcomer's script waiting for the hub it just started
        if entry is not None and hub.poll() is None:
            asyncio.run(_ensure_demo_agent(str(entry["socket"])))
            print(_relay_line(repo), file=sys.stderr)
            print(asyncio.run(_pairing_text(str(entry["socket"]))), file=sys.stderr)
            print(
                f"Edit {plugin} and save to see it hot-reload. Ctrl-C stops the hub.",
                file=sys.stderr,
            )
        sys.exit(hub.wait())
    except KeyboardInterrupt:
        hub.send_signal(signal.SIGINT)
        sys.exit(hub.wait())


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".demo").resolve()
    repo = ensure_demo_repo(root)
    plugin = repo / ".botster" / "plugins" / "hello" / "init.lua"
    import asyncio

    from botster.base.registry import find_hub_for
    from botster.hub.launch import hub_ready_blocking, start_hub_blocking

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        _headless(repo, plugin)

    entry = find_hub_for(repo)
    if entry is None or not hub_ready_blocking(str(entry["socket"]), timeout=5.0):
        entry = start_hub_blocking(repo)
    asyncio.run(_ensure_demo_agent(str(entry["socket"])))
    print(_relay_line(repo), file=sys.stderr)
    print(asyncio.run(_pairing_text(str(entry["socket"]))), file=sys.stderr)
    print(f"Edit {plugin} while it runs to see it hot-reload.", file=sys.stderr)
    os.environ["BOTSTER_REATTACH"] = "make run"  # the demo's runtime directory is its own
    os.execvp(sys.executable, [sys.executable, "-m", "botster.cli", "attach", "--repo", str(repo)])


if __name__ == "__main__":
    main()
