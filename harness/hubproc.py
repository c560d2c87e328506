"""A real `botster hub` child process, driven and observed from a test or a benchmark.

Plugins report to tests through the log: ``log.info("RESULT <tag> " .. json.encode(value))``;
``await proc.result("tag")`` returns the decoded value. Every wait has a deadline and, on
timeout, fails with the whole log so far. Each line's arrival time (``perf_counter``) is kept
in ``times`` for benchmarks (``wait_for_at``). Tests verify the hub at the end
(``stop_and_verify``); benchmarks only ``stop`` it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["HubProcess", "UNEXPECTED"]

# Log lines a passing test must not produce unless it declares them with expect_log().
UNEXPECTED = re.compile(r" (ERROR|CRITICAL) |slow Lua step|Traceback|exceeded its CPU budget")


class HubProcess:
    """One hub child process and everything it logged."""

    def __init__(
        self, repo: Path, env: dict[str, str], *, command: list[str] | None = None
    ) -> None:
        """`command` starts botster (default: this interpreter's ``-m botster.cli``)."""
        self.repo = repo
        self.env = {**os.environ, **env}
        self.command = command or [sys.executable, "-m", "botster.cli"]
        self.lines: list[str] = []
        self.times: list[float] = []
        self.spawned_at = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._allowed: list[re.Pattern[str]] = []
        self.stdout = b""

    async def start(self, *extra_args: str) -> None:
        self.spawned_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            "hub",
            "--repo",
            str(self.repo),
            *extra_args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.repo,
            limit=1 << 24,  # a plugin may log long lines (big RESULT values)
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            self.times.append(time.perf_counter())
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def mark(self) -> int:
        """A position in the log; pass it as `since` to wait only for later lines."""
        return len(self.lines)

    def expect_log(self, pattern: str) -> None:
        """Declares that lines matching `pattern` (regex) are expected, not failures."""
        self._allowed.append(re.compile(pattern))

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def count(self, pattern: str) -> int:
        """How many log lines so far match `pattern`."""
        rx = re.compile(pattern)
        return sum(1 for line in self.lines if rx.search(line))

    async def connect(self, name: str = "test", **kwargs: Any) -> Any:
        """A connected, hello-acknowledged ``HubConnection`` to this hub's socket."""
        from botster.transports.client import HubConnection
        from harness.sandbox import hub_socket

        runtime = Path(self.env["BOTSTER_RUNTIME_DIR"])
        return await HubConnection.connect(hub_socket(runtime), name, **kwargs)

    async def wait_for(
        self, pattern: str, *, since: int = 0, timeout: float = 10.0
    ) -> re.Match[str]:
        """Waits for a log line matching `pattern` (regex) at or after `since`."""
        return (await self.wait_for_at(pattern, since=since, timeout=timeout))[1]

    async def wait_for_at(
        self, pattern: str, *, since: int = 0, timeout: float = 10.0
    ) -> tuple[float, re.Match[str]]:
        """Like ``wait_for``; also returns the line's arrival time (``perf_counter``)."""
        rx = re.compile(pattern)
        pos = since

        async def scan() -> tuple[float, re.Match[str]]:
            nonlocal pos
            while True:
                while pos < len(self.lines):
                    m = rx.search(self.lines[pos])
                    pos += 1
                    if m:
                        return self.times[pos - 1], m
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"hub exited before logging /{pattern}/:\n{self.log}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for /{pattern}/; log:\n{self.log}"
            ) from None

    async def result(self, tag: str, *, since: int = 0, timeout: float = 10.0) -> Any:
        """Waits for ``RESULT <tag> <value>``: the value decoded as JSON, else the raw text."""
        m = await self.wait_for(rf"RESULT {re.escape(tag)} (.*)$", since=since, timeout=timeout)
        try:
            return json.loads(m.group(1))
        except ValueError:
            return m.group(1)

    async def wait_ready(self, since: int = 0, timeout: float = 20.0) -> None:
        await self.wait_for(r"hub ready:", since=since, timeout=timeout)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"hub did not exit within {timeout}s; log:\n{self.log}") from None
        if self._reader:
            await self._reader
        assert self.proc.stdout
        self.stdout = await self.proc.stdout.read()
        return rc

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then waits for the exit (kills after `timeout` s); the exit code."""
        assert self.proc
        self.signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        if self._reader:
            await self._reader
        return rc

    async def kill(self) -> int:
        """SIGKILL (no clean shutdown: sessions stay, registry entry left); the exit code."""
        assert self.proc
        if self.proc.returncode is None:
            self.proc.kill()
        rc = await self.proc.wait()
        if self._reader:
            await self._reader
        return rc

    def signal(self, sig: int) -> None:
        assert self.proc
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    def unexpected_lines(self) -> list[str]:
        out = []
        in_traceback = False
        for line in self.lines:
            is_continuation = line.startswith(("\t", " ", "stack traceback:", "Traceback"))
            if in_traceback and is_continuation:
                continue
            in_traceback = False
            if UNEXPECTED.search(line) and not any(p.search(line) for p in self._allowed):
                out.append(line)
                in_traceback = True
            elif UNEXPECTED.search(line):
                in_traceback = True
        return out

    async def stop_and_verify(self) -> None:
        """SIGTERM; the hub must exit 0, drop its registry entry and log nothing unexpected."""
        assert self.proc
        if self.proc.returncode is None:
            self.signal(signal.SIGTERM)
        rc = await self.wait_exit()
        registry = Path(self.env["BOTSTER_RUNTIME_DIR"]) / "hubs"
        leftovers = [
            p.name
            for p in (registry.glob("*.json") if registry.exists() else [])
            if json.loads(p.read_text() or "{}").get("pid") == self.proc.pid
        ]
        problems = []
        if rc != 0 and not getattr(self, "allow_nonzero_exit", False):
            problems.append(f"exit code {rc}")
        if leftovers and not getattr(self, "allow_registry_left", False):
            problems.append(f"registry entries left: {leftovers}")
        unexpected = self.unexpected_lines()
        if unexpected:
            problems.append("unexpected log lines:\n  " + "\n  ".join(unexpected))
        assert not problems, "; ".join(problems) + f"\nfull log:\n{self.log}"
