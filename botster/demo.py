"""``make run``: a demo repository with a demo plugin, and a hub running on it.

Creates (once) ``<dir>/repo``, a git repository with ``.botster/plugins/hello/init.lua``, then
runs ``botster hub`` there in the foreground. Edit the plugin while it runs to see hot reload.
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
    return repo


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".demo").resolve()
    repo = ensure_demo_repo(root)
    plugin = repo / ".botster" / "plugins" / "hello" / "init.lua"
    print(f"Botster demo: hub for {repo}", file=sys.stderr)
    print(f"Edit {plugin} and save to see it hot-reload. Ctrl-C stops the hub.\n", file=sys.stderr)
    os.execvp(sys.executable, [sys.executable, "-m", "botster.cli", "hub", "--repo", str(repo)])


if __name__ == "__main__":
    main()
