"""The ``botster`` command line.

Kept import-light: heavy modules (lupa, aiohttp, textual) load inside the command that needs
them, so ``botster --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from botster.tui.keymap import Keymap

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


def _start_hub_blocking(repo: Path) -> dict[str, object]:
    from botster.errors import HubError
    from botster.hub.launch import start_hub_blocking

    try:
        return start_hub_blocking(repo)
    except HubError as e:
        raise click.ClickException(str(e)) from None


def _ui_keymap() -> Keymap:
    """The UI's keymap, checked before anything starts (a bad config fails fast)."""
    from botster.tui.keymap import KeymapError, load_keymap

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.ClickException("the UI needs a terminal (stdin and stdout must be a TTY)")
    try:
        return load_keymap()
    except KeymapError as e:
        raise click.ClickException(str(e)) from None


def _run_ui(socket_path: str, keymap: Keymap) -> None:
    from botster.tui import run

    code, stopped = run(socket_path, keymap)
    if not stopped and code == 0:
        click.echo("botster: detached; the hub and its agents keep running (`botster attach`)")
    sys.exit(code)


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository (default: the one containing the current directory).",
)
def start(repo: Path | None) -> None:
    """Start the repository's hub (or join the running one) and open the UI.

    Leaving the UI (detach) keeps the hub and its agents running; stopping the hub is a
    key in the UI, and asks first.
    """
    from botster.errors import HubError
    from botster.hub.identity import find_repo_root
    from botster.hub.registry import find_hub_for

    try:
        root = find_repo_root(repo or Path.cwd())
    except HubError as e:
        raise click.ClickException(str(e)) from None
    keymap = _ui_keymap()
    entry = find_hub_for(root)
    from botster.hub.launch import hub_ready_blocking

    if entry is None or not hub_ready_blocking(str(entry["socket"]), timeout=5.0):
        if entry is not None:
            raise click.ClickException(
                f"a hub (pid {entry['pid']}) holds {root} but does not answer on {entry['socket']}"
            )
        entry = _start_hub_blocking(root)
    _run_ui(str(entry["socket"]), keymap)


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository whose hub to attach to (default: the one containing the current directory).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The hub's socket, instead of finding it by repository.",
)
def attach(repo: Path | None, socket_path: Path | None) -> None:
    """Open the UI on a running hub."""
    if repo is not None and socket_path is not None:
        raise click.UsageError("give --repo or --socket, not both")
    keymap = _ui_keymap()
    if socket_path is None:
        from botster.hub.registry import find_hub_for

        start_dir = repo or Path.cwd()
        entry = find_hub_for(start_dir)
        if entry is None:
            raise click.ClickException(
                f"no hub is running for {start_dir.resolve()}; start one with `botster start`"
            )
        socket_path = Path(str(entry["socket"]))
    elif not socket_path.exists():
        raise click.ClickException(f"no hub socket at {socket_path}")
    _run_ui(str(socket_path), keymap)


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


async def _pair_request(socket_path: Path, command: str, args: dict[str, object]) -> object:
    from botster.transports.client import HubConnection

    conn = await HubConnection.connect(socket_path, "botster-pair")
    try:
        return await conn.request(command, args)
    finally:
        await conn.close()


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository whose hub to pair with (default: the one containing the current directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON ({url, qr} or the list).")
@click.option("--list", "list_paired", is_flag=True, help="List the paired browsers.")
@click.option("--revoke", metavar="KEY", default=None, help="Forget a paired browser by key.")
@click.option("--new", "fresh", is_flag=True, help="Make a fresh code (a new one-time key).")
def pair(
    repo: Path | None, as_json: bool, list_paired: bool, revoke: str | None, fresh: bool
) -> None:
    """Show the running hub's pairing code (URL and QR), or manage paired browsers.

    Scan the QR code or open the URL in a browser to pair it: the keys travel in the URL's
    fragment, which never reaches the relay. Only browsers paired this way get in.
    """
    import asyncio
    import json

    from botster.hub.registry import find_hub_for
    from botster.transports.client import RequestFailed

    if list_paired and revoke is not None:
        raise click.UsageError("give --list or --revoke, not both")
    start_dir = repo or Path.cwd()
    entry = find_hub_for(start_dir)
    if entry is None:
        raise click.ClickException(
            f"no hub is running for {start_dir.resolve()}; start one with `botster start`"
        )
    socket_path = Path(str(entry["socket"]))
    if list_paired:
        command, args = "connection.paired", {}
    elif revoke is not None:
        command, args = "connection.revoke", {"browser_key": revoke}
    else:
        command, args = ("connection.regenerate" if fresh else "connection.code"), {}
    try:
        result = asyncio.run(_pair_request(socket_path, command, args))
    except (OSError, ConnectionError, RequestFailed) as e:
        raise click.ClickException(f"{command}: {e}") from None
    assert isinstance(result, (dict, list))
    if list_paired:
        if as_json:
            click.echo(json.dumps(result, indent=2))
        elif not result:
            click.echo("no browsers paired")
        for p in result:
            assert isinstance(p, dict)
            click.echo(f"{p['browser_key']}  paired {p.get('paired_at')}")
        return
    if revoke is not None:
        assert isinstance(result, dict)
        if as_json:
            click.echo(json.dumps(result))
        elif not result.get("revoked"):
            raise click.ClickException(f"{revoke} is not a paired browser")
        else:
            click.echo(f"revoked {revoke}")
        return
    assert isinstance(result, dict)
    if as_json:
        click.echo(json.dumps({"url": result["url"], "qr": result["qr_ascii"]}))
        return
    click.echo(result["qr_ascii"])
    click.echo("")
    click.echo(result["url"])


if __name__ == "__main__":
    main()
