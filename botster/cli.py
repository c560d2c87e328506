"""The ``botster`` command line.

Kept import-light: heavy modules (lupa, aiohttp, textual) load inside the command that needs
them, so ``botster --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

__all__ = ["main"]


def _setup_logging() -> None:
    level = os.environ.get("BOTSTER_LOG", "info").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="botster")
def main() -> None:
    """Botster: a local hub for AI coding agents, scripted by hot-reloading Lua plugins."""


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository the hub serves (default: the one containing the current directory).",
)
def hub(repo: Path | None) -> None:
    """Run a headless hub in the foreground for a repository."""
    _setup_logging()
    from botster.errors import HubError
    from botster.hub.run import run_hub

    try:
        code = run_hub(repo or Path.cwd())
    except HubError as e:
        click.echo(f"botster: {e}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_hubs(as_json: bool) -> None:
    """List the hubs running on this machine."""
    import json

    from botster.hub.registry import live_hubs_blocking

    hubs = live_hubs_blocking()
    if as_json:
        click.echo(json.dumps(hubs, indent=2))
        return
    if not hubs:
        click.echo("no hubs running")
        return
    click.echo(f"{'HUB ID':<14}{'PID':>8}  REPOSITORY")
    for h in hubs:
        click.echo(f"{h['id'][:12]:<14}{h['pid']:>8}  {h['repo_path']}")


@main.command("mcp-serve")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The hub's socket (default: $BOTSTER_HUB_SOCKET, else the current repo's hub).",
)
def mcp_serve(socket_path: Path | None) -> None:
    """Serve the hub's MCP tools to an agent over stdio."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, os.environ.get("BOTSTER_LOG", "warning").upper(), logging.WARNING),
        format="botster mcp-serve: %(levelname)s %(message)s",
    )
    from botster.mcp.serve import find_socket, serve

    path = find_socket(socket_path)
    if path is None:
        click.echo(
            "botster mcp-serve: no hub found for this directory; start one with `botster hub` "
            "or pass --socket PATH",
            err=True,
        )
        sys.exit(1)
    serve(path)


if __name__ == "__main__":
    main()
