"""A real ``botster hub`` child process in a throwaway sandbox, for the end-to-end benchmarks.

    sandbox = Sandbox()                      # temp HOME, BOTSTER_HOME, runtime dir, git repo
    sandbox.write_plugin("ticker", source)
    hub = HubRun(sandbox)
    await hub.start()
    await hub.wait_for(r"hub ready:")        # every line is kept with its arrival time
    await hub.stop()                         # SIGTERM; returns the exit code
    sandbox.close()

Mirrors ``tests/conftest.py`` (isolation, a real repo) without its checks: a benchmark
reports, it does not assert. ``BOTSTER_DEBUG`` is left unset and bytecode caching is on
(``child_env``) so the hub runs as users run it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench._common import bin_path, child_env

__all__ = ["HubRun", "Sandbox", "log_time"]

_PROXY_VARS = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "BOTSTER_LOG",
    "BOTSTER_DEBUG",
)
_STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def log_time(line: str) -> float | None:
    """Seconds since midnight of a hub log line's ``HH:MM:SS.mmm`` stamp (None if absent)."""
    m = _STAMP.match(line)
    if not m:
        return None
    h, mi, s, ms = (int(g) for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


class Sandbox:
    """HOME, BOTSTER_HOME, BOTSTER_RUNTIME_DIR and XDG dirs under one temp dir, plus a git repo
    with one commit. No proxies, no debug checks."""

    def __init__(self) -> None:
        # Short path: the hub's Unix socket path must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="bt-bench-", dir="/tmp"))
        home = self.root / "home"
        runtime = self.root / "run"
        home.mkdir()
        runtime.mkdir(mode=0o700)
        self.env = {k: v for k, v in child_env().items() if k not in _PROXY_VARS}
        self.env.update(
            {
                "HOME": str(home),
                "BOTSTER_HOME": str(home / ".botster"),
                "BOTSTER_RUNTIME_DIR": str(runtime),
                "XDG_RUNTIME_DIR": str(runtime / "xdg"),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_DATA_HOME": str(home / ".local/share"),
                "GIT_AUTHOR_NAME": "Botster Bench",
                "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                "GIT_COMMITTER_NAME": "Botster Bench",
                "GIT_COMMITTER_EMAIL": "bench@example.invalid",
            }
        )
        self.repo = self.root / "repo"
        self.repo.mkdir()
        (self.repo / "README.md").write_text("bench repo\n")
        for argv in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "add", "."],
            ["git", "commit", "-q", "-m", "init"],
        ):
            subprocess.run(argv, cwd=self.repo, env=self.env, check=True)

    @property
    def plugins_dir(self) -> Path:
        return self.repo / ".botster" / "plugins"

    def write_plugin(self, name: str, source: str) -> None:
        """Writes ``<repo>/.botster/plugins/<name>/init.lua``."""
        root = self.plugins_dir / name
        root.mkdir(parents=True, exist_ok=True)
        (root / "init.lua").write_text(source)

    def clear_plugins(self) -> None:
        shutil.rmtree(self.plugins_dir, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HubRun:
    """One ``botster hub`` process; its stderr lines are kept as (perf_counter, text)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.lines: list[tuple[float, str]] = []
        self.spawned_at = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        argv = [str(bin_path("botster")), "hub", "--repo", str(self.sandbox.repo)]
        self.spawned_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.sandbox.env,
            cwd=self.sandbox.repo,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc and self.proc.stderr
        while line := await self.proc.stderr.readline():
            self.lines.append((time.perf_counter(), line.decode(errors="replace").rstrip("\n")))
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "\n".join(text for _, text in self.lines)

    async def wait_for(
        self, pattern: str, *, since: int = 0, within: float = 30.0
    ) -> tuple[float, re.Match[str]]:
        """Waits for a line matching `pattern`; returns (arrival perf_counter, match)."""
        rx = re.compile(pattern)
        pos = since

        async def scan() -> tuple[float, re.Match[str]]:
            nonlocal pos
            while True:
                while pos < len(self.lines):
                    at, text = self.lines[pos]
                    pos += 1
                    if m := rx.search(text):
                        return at, m
                if self._reader is not None and self._reader.done():
                    raise RuntimeError(f"hub exited before logging /{pattern}/:\n{self.log}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise RuntimeError(
                f"timed out after {within} s waiting for /{pattern}/; log:\n{self.log}"
            ) from None

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for _, text in self.lines if rx.search(text))

    async def stop(self, within: float = 15.0) -> int:
        """SIGTERM, then waits for the exit (kills after `within` s); returns the exit code."""
        assert self.proc
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        if self._reader:
            await self._reader
        return rc
