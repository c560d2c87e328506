"""A real ``botster hub`` child process in a throwaway sandbox, for the end-to-end benchmarks.

    sandbox = Sandbox()                      # temp HOME, BOTSTER_HOME, runtime dir, git repo
    sandbox.write_plugin("ticker", source)
    hub = HubRun(sandbox)
    await hub.start()
    await hub.wait_for(r"hub ready:")        # every line is kept with its arrival time
    conn = await hub.connect()               # a HubConnection to its socket
    await hub.stop()                         # SIGTERM (hub.kill(): SIGKILL); the exit code
    sandbox.close()                          # also ends every session process started in it

Sessions (``pty.spawn``) outlive their hub by design: ``Sandbox.kill_sessions()`` (run by
``close``) ends every one found in ``$BOTSTER_RUNTIME_DIR/sessions/*.json``, and its program.
``SPAWNER`` is a plugin whose commands start (``bench.spawn``) and end (``bench.close``) a
session and write a line to the hub log (``bench.mark``) on a client's request.
``ByteCounter.attach(socket, session_id)`` is an attached client that only counts bytes.
``rss_mb``, ``cpu_seconds``, ``runqueue_wait_s`` and ``autogroup`` read ``/proc`` for a pid.

Mirrors ``tests/conftest.py`` (isolation, a real repo) without its checks: a benchmark
reports, it does not assert. ``BOTSTER_DEBUG`` is left unset and bytecode caching is on
(``child_env``) so the hub runs as users run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import bin_path, child_env
from botster.transports.client import HubConnection
from botster.transports.framing import PTY_INPUT, encode_frame, encode_json, encode_session

__all__ = [
    "SPAWNER",
    "ByteCounter",
    "HubRun",
    "Sandbox",
    "autogroup",
    "cpu_seconds",
    "log_time",
    "process_alive",
    "rss_mb",
    "runqueue_wait_s",
]

SPAWNER = """
-- Sessions and log marks on request, for the bench's clients.
local commands = require("lib.commands")
-- bench.spawn {cmd, args?, rows?, cols?, labels?} -> session id
commands.register("bench.spawn", function(args)
  local h = assert(pty.spawn({cmd = args.cmd, args = args.args or {}, rows = args.rows or 24,
    cols = args.cols or 80, labels = args.labels or {}}))
  return h:id()
end)
-- bench.close {id} -> bool: ends a session for good
commands.register("bench.close", function(args)
  local h = pty.get(args.id)
  return h ~= nil and h:close()
end)
-- bench.mark {text} -> true: a line in the hub log (its stamp marks a window)
commands.register("bench.mark", function(args)
  log.info("MARK " .. args.text)
  return true
end)
"""

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

    @property
    def runtime(self) -> Path:
        return Path(self.env["BOTSTER_RUNTIME_DIR"])

    def hub_socket(self) -> Path:
        """The socket of the hub running in this sandbox (from its registry entry)."""
        for entry in sorted((self.runtime / "hubs").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(entry.read_text())
                if process_alive(int(data["pid"])):
                    return Path(data["socket"])
        raise RuntimeError(f"no live hub registered under {self.runtime / 'hubs'}")

    def session_records(self) -> list[dict[str, Any]]:
        """The discovery records of the sessions started in this sandbox (live or not)."""
        out = []
        for path in sorted((self.runtime / "sessions").glob("*.json")):
            if path.name.endswith(".spawn.json"):
                continue
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return out

    def kill_sessions(self, grace: float = 2.0) -> int:
        """Ends every session process of this sandbox and its program; returns how many.

        SIGTERM first (a session then hangs up its program and removes its files), SIGKILL
        to what is left after `grace` seconds, and to each program's process group.
        """
        records = self.session_records()
        pids = [int(r["pid"]) for r in records if process_alive(int(r.get("pid", 0)))]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for r in records:
            child = int(r.get("child_pid", 0))
            # The program leads its own process group (start_new_session); only signal a group
            # that still has that leader, so a reused pid is never hit.
            with contextlib.suppress(OSError):
                if child > 0 and os.getpgid(child) == child:
                    os.killpg(child, signal.SIGKILL)
        return len(pids)

    def close(self) -> None:
        self.kill_sessions()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def autogroup(pid: int) -> str:
    """The scheduler autogroup of a process ("" when the kernel has none)."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return ""


def rss_mb(pid: int) -> float:
    """A process's resident set size in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ByteCounter(asyncio.Protocol):
    """The lightest attached client: hello and ``subscribe terminal`` sent at once, then every
    byte received counted (frame headers included) and nothing decoded, so many of them cost
    this process little. ``type`` sends input to the session. ``lost`` is set when the hub
    closes the connection (e.g. cut as a slow client)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.session_id = ""
        self.lost = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def attach(
        cls, socket: Path, session_id: str, rows: int = 24, cols: int = 80
    ) -> ByteCounter:
        loop = asyncio.get_running_loop()
        _, counter = await loop.create_unix_connection(cls, str(socket))
        assert counter.transport is not None
        counter.session_id = session_id
        counter.transport.write(
            encode_json({"type": "hello", "protocol": 1, "client": "bench-counter"})
            + encode_json(
                {
                    "type": "subscribe",
                    "channel": "terminal",
                    "params": {"session_id": session_id, "rows": rows, "cols": cols},
                }
            )
        )
        return counter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def type(self, data: bytes) -> None:
        """Input for the session (a PTY_INPUT frame; the hub accepts it once attached)."""
        assert self.transport is not None
        self.transport.write(encode_frame(PTY_INPUT, encode_session(self.session_id, data)))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HubRun:
    """One ``botster hub`` process; its stderr lines are kept as (perf_counter, text)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.lines: list[tuple[float, str]] = []
        self.spawned_at = 0.0
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *extra_args: str) -> None:
        """Starts ``botster hub`` (plus `extra_args`, e.g. ``--supervised``)."""
        argv = [str(bin_path("botster")), "hub", "--repo", str(self.sandbox.repo), *extra_args]
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

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    async def connect(self, name: str = "bench", **kwargs: Any) -> HubConnection:
        """A connected, hello-acknowledged client of this hub (``on_message``/``on_frame``)."""
        return await HubConnection.connect(self.sandbox.hub_socket(), name, **kwargs)

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

    async def kill(self) -> int:
        """SIGKILL (no clean shutdown: sessions stay, registry entry left); the exit code."""
        assert self.proc
        if self.proc.returncode is None:
            self.proc.kill()
        rc = await self.proc.wait()
        if self._reader:
            await self._reader
        return rc
