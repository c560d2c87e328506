"""Hubs run inside the test process (``Hub`` objects on the test's loop), for tests that look
at a hub's Python state: its per-hub leak counters, its client channel, its owners.

The hubs are real (their own Lua state, socket, sessions); only the process is shared, so they
do not take SIGINT/SIGTERM. Log lines of every hub in the process are collected by ``LogLines``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from botster.hub.config import Config
from botster.hub.daemon import Hub
from botster.hub.identity import find_repo_root, hub_id_for, socket_path_for
from botster.hub.paths import Paths
from tests.conftest import write_plugin

__all__ = ["LogLines", "make_repo", "running_hubs", "socket_of"]


class LogLines(logging.Handler):
    """Collects log messages; wakes waiters on each one (everything runs on one loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Waits until `predicate()` holds, re-checking on every new log line."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = "\n".join(self.messages[-40:])
            raise AssertionError(f"timed out waiting for {what}; last log lines:\n{seen}") from None

    def count(self, text: str) -> int:
        """How many collected messages contain `text`."""
        return sum(1 for m in self.messages if text in m)

    @contextlib.contextmanager
    def attached(self) -> Iterator[LogLines]:
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(self)
        root.setLevel(logging.INFO)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(old_level)


def make_repo(root: Path, plugins: dict[str, str]) -> Path:
    """A git repository at `root` with `plugins` in its repo layer."""
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=root, check=True)
    for name, source in plugins.items():
        write_plugin(root, name, source)
    return root


def socket_of(hub: Hub) -> Path:
    return socket_path_for(hub.paths, hub.hub_id)


@contextlib.asynccontextmanager
async def running_hubs(repos: list[Path], lines: LogLines) -> AsyncIterator[list[Hub]]:
    """Starts one in-process hub per repo, waits until all are ready, stops them after
    (each must exit 0)."""
    hubs: list[Hub] = []
    for path in repos:
        repo = find_repo_root(path)
        paths = Paths.for_repo(repo)
        h = Hub(
            paths, Config.load_blocking(paths.config_file), hub_id_for(repo), handle_signals=False
        )
        h.lock.acquire()
        hubs.append(h)
    ready = lines.count("hub ready")
    runs = [asyncio.create_task(h.run()) for h in hubs]
    try:
        await lines.wait(lambda: lines.count("hub ready") >= ready + len(hubs), "hubs ready")
        yield hubs
    finally:
        for h in hubs:
            if not h._quit.is_set():
                h.quit()
        codes = await asyncio.gather(*runs)
        assert codes == [0] * len(hubs), codes
