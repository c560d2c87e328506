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

    code, stopped, hub_gone = run(socket_path, keymap)
    # The way back: `botster attach`, or what started this UI (`make run` for the demo,
    # whose runtime directory is its own).
    again = os.environ.get("BOTSTER_REATTACH")
    if not stopped and code == 0:
        if hub_gone:
            click.echo(
                "botster: detached; the hub is not running (its agents' sessions are: "
                f"`{again or 'botster start'}` starts a hub that adopts them)"
            )
        else:
            click.echo(
                "botster: detached; the hub and its agents keep running "
                f"(`{again or 'botster attach'}` comes back)"
            )
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


def _repo_hub_id(repo: Path | None) -> tuple[Path, str]:
    """The repository root containing `repo` (default: the current directory) and its hub id."""
    from botster.errors import HubError
    from botster.hub.identity import find_repo_root, hub_id_for

    try:
        root = find_repo_root(repo or Path.cwd())
    except HubError as e:
        raise click.ClickException(str(e)) from None
    return root, hub_id_for(root)


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository whose hub to stop (default: the one containing the current directory).",
)
@click.option(
    "--sessions",
    "with_sessions",
    is_flag=True,
    help="Also end the hub's agent sessions (without it they keep running for the next hub).",
)
def stop(repo: Path | None, with_sessions: bool) -> None:
    """Stop a repository's hub; with --sessions, its agents' sessions too."""
    from botster.hub.registry import find_hub_for
    from botster.sessions.control import (
        end_sessions_blocking,
        session_rows_blocking,
        stop_hub_blocking,
    )

    root, hub_id = _repo_hub_id(repo)
    entry = find_hub_for(root)
    if entry is None and not with_sessions:
        raise click.ClickException(f"no hub is running for {root}")
    if entry is not None:
        if not stop_hub_blocking(entry):
            raise click.ClickException(f"the hub (pid {entry['pid']}) did not stop within 20 s")
        click.echo(f"botster: hub {hub_id[:12]} stopped")
    if with_sessions:
        ended = end_sessions_blocking(session_rows_blocking(hub_id=hub_id))
        click.echo(f"botster: {ended} session{'s' if ended != 1 else ''} ended")
    elif entry is not None:
        left = len(session_rows_blocking(hub_id=hub_id))
        if left:
            click.echo(
                f"botster: {left} session{'s' if left != 1 else ''} keep running for the next "
                "hub (`botster stop --sessions` ends them)"
            )


@main.command()
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Only the sessions of this repository's hub (default: every session on the machine).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--end", "end_ids", multiple=True, metavar="ID", help="End this session (an id prefix will do)."
)
@click.option("--end-orphans", is_flag=True, help="End every session whose hub is not running.")
def sessions(repo: Path | None, as_json: bool, end_ids: tuple[str, ...], end_orphans: bool) -> None:
    """List the sessions on this machine, orphaned ones included, and end some."""
    import json

    from botster.sessions.control import end_sessions_blocking, session_rows_blocking

    hub_id = _repo_hub_id(repo)[1] if repo is not None else None
    rows = session_rows_blocking(hub_id=hub_id)
    if end_ids or end_orphans:
        chosen = [r for r in rows if end_orphans and r["orphaned"]]
        for wanted in end_ids:
            matches = [r for r in rows if r["id"].startswith(wanted)]
            if len(matches) != 1:
                what = "no session" if not matches else f"{len(matches)} sessions"
                raise click.ClickException(f"{what} with an id starting {wanted!r}")
            chosen += [m for m in matches if m not in chosen]
        ended = end_sessions_blocking(chosen)
        click.echo(f"botster: {ended} session{'s' if ended != 1 else ''} ended")
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no sessions running")
        return
    width = max(len(r["id"]) for r in rows) + 2
    click.echo(f"{'SESSION':<{width}}{'PID':>8}  {'HUB':<14}{'AGENT':<20}COMMAND")
    for r in rows:
        hub = "orphaned" if r["orphaned"] else r["hub_id"][:12]
        cmd = " ".join(r["cmd"])
        click.echo(f"{r['id']:<{width}}{r['pid']:>8}  {hub:<14}{r['agent_key'] or '-':<20}{cmd}")


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
