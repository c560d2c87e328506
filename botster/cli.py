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
@click.option(
    "--supervised",
    is_flag=True,
    help="Run the hub under a supervisor that restarts it if it dies or stops answering "
    "(for service managers; `botster start` does this).",
)
def hub(repo: Path | None, supervised: bool) -> None:
    """Run a headless hub in the foreground for a repository."""
    _setup_logging()
    from botster.base.errors import HubError
    from botster.hub.run import run_hub

    try:
        if supervised:
            from botster.hub.supervisor import supervise

            code = supervise(repo or Path.cwd())
        else:
            from botster.hub.run import run_hub

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

    from botster.base.registry import live_hubs_blocking

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
    from botster.base.errors import HubError
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
    from botster.base.errors import HubError
    from botster.base.identity import find_repo_root
    from botster.base.registry import find_hub_for

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
        from botster.base.registry import find_hub_for

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


@main.command()
@click.option(
    "--server", "server_url", required=True, help="The relay's URL (http:// or https://)."
)
@click.option(
    "--token",
    default=None,
    help="The hub token (`botster relay token` prints one). Default: read from stdin.",
)
def login(server_url: str, token: str | None) -> None:
    """Store the relay's URL and this device's hub token.

    The URL goes into config.json as `server_url`; the token into the system keyring when it
    has a usable backend, else into $BOTSTER_HOME/relay_tokens.json (mode 0600). Running hubs
    pick it up when they restart. BOTSTER_SERVER_URL and BOTSTER_TOKEN override both.
    """
    from botster.base.config import Config
    from botster.base.errors import HubError
    from botster.base.paths import botster_home
    from botster.remote.relay_link import normalise_url, store_token_blocking

    try:
        url = normalise_url(server_url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--server") from None
    if token is None:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise click.BadParameter("the token is empty", param_hint="--token")
    home = botster_home()
    try:
        config = Config.load_blocking(home / "config.json")
        config.set_blocking("server_url", url)
        where = store_token_blocking(home, url, token)
    except (HubError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"botster: relay {url}; token stored in {where}")


def _repo_hub_id(repo: Path | None) -> tuple[Path, str]:
    """The repository root containing `repo` (default: the current directory) and its hub id."""
    from botster.base.errors import HubError
    from botster.base.identity import find_repo_root, hub_id_for

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
    from botster.base.registry import find_hub_for
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

    from botster.base.registry import find_hub_for
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


@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8420, show_default=True, type=int, help="Port (0: a free one).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for relay.json and, without --redis, the SQLite store "
    "(default: $BOTSTER_HOME/relay).",
)
@click.option("--redis", "redis_url", default=None, help="Redis URL: scale out across relays.")
@click.option("--public-url", default=None, help="URL browsers reach this relay at.")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="PEM certificate chain: serve HTTPS and WSS (with --tls-key).",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="PEM key."
)
@click.option("--stun", multiple=True, help="A STUN URL for browsers and hubs (repeatable).")
@click.option("--turn", multiple=True, help="A TURN URL (repeatable).")
@click.option(
    "--turn-secret-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File holding coturn's static-auth-secret: hands out time-limited TURN credentials.",
)
@click.pass_context
def relay(
    ctx: click.Context,
    host: str,
    port: int,
    data_dir: Path | None,
    redis_url: str | None,
    public_url: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    stun: tuple[str, ...],
    turn: tuple[str, ...],
    turn_secret_file: Path | None,
) -> None:
    """Run a relay: hubs register with it, browsers reach hubs through it.

    `botster relay token` mints hub tokens. docs/relay.md describes the protocol and a
    deployment behind TLS, a reverse proxy, Redis and a TURN server.
    """
    if ctx.invoked_subcommand is not None:
        return
    _setup_logging()
    import ssl

    from botster.relay.server import run_relay_blocking
    from botster.relay.settings import SettingsError, load_settings

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("give --tls-cert and --tls-key together")
    data = data_dir or _default_relay_data()
    try:
        settings = load_settings(data)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None
    if stun:
        settings.ice.stun = list(stun)
    if turn:
        settings.ice.turn = list(turn)
    if turn_secret_file is not None:
        settings.ice.turn_secret = turn_secret_file.read_text().strip()
    try:
        settings.ice.check_urls()
    except SettingsError as e:
        raise click.ClickException(str(e)) from None
    context = None
    if tls_cert is not None and tls_key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
    from botster.relay.store import StoreError

    try:
        run_relay_blocking(host, port, data, redis_url, public_url, settings, context)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _default_relay_data() -> Path:
    home = os.environ.get("BOTSTER_HOME") or str(Path.home() / ".botster")
    return Path(home) / "relay"


@relay.command("token")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The relay's data directory (default: $BOTSTER_HOME/relay).",
)
@click.option("--redis", "redis_url", default=None, help="The relay's Redis URL, if it uses one.")
@click.option("--name", default=None, help="A name for the token (default: a random one).")
@click.option("--revoke", default=None, metavar="TOKEN|NAME", help="Revoke a token.")
@click.option("--list", "list_tokens", is_flag=True, help="List token names.")
def relay_token(
    data_dir: Path | None,
    redis_url: str | None,
    name: str | None,
    revoke: str | None,
    list_tokens: bool,
) -> None:
    """Mint a hub token (printed on the last line), revoke one, or list them.

    Revoking closes the sockets of hubs using that token within a second.
    """
    import asyncio

    from botster.relay.store import StoreError, open_store

    data = data_dir or _default_relay_data()

    async def act() -> list[str]:
        store = await open_store(data, redis_url)
        try:
            if list_tokens:
                return [t["name"] for t in await store.list_tokens()]
            if revoke is not None:
                hashes = await store.revoke_token(revoke)
                if not hashes:
                    raise StoreError("no such token")
                return [f"revoked {len(hashes)} token(s)"]
            token_name, token = await store.create_token(name)
            return [f"token {token_name!r} created; it is shown only now:", token]
        finally:
            await store.close()

    try:
        lines = asyncio.run(act())
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    for line in lines:
        click.echo(line)


if __name__ == "__main__":
    main()
