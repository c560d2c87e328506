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


if __name__ == "__main__":
    main()
