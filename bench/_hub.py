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
``rss_mb``, ``cpu_seconds``, ``runqueue_wait_s`` and ``autogroup`` read ``/proc`` for a pid;
``pin_cpus`` keeps every thread of one on given CPUs.

Built on ``harness/`` like ``tests/conftest.py`` (isolation, a real repo, the hub process),
without the tests' checks: a benchmark reports, it does not assert. ``BOTSTER_DEBUG`` is left
unset and bytecode caching is on (``child_env``) so the hub runs as users run it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench._common import bin_path, child_env
from botster.base.framing import PTY_INPUT, encode_frame, encode_json, encode_session
from botster.transports.client import HubConnection
from botster.transports.handshake import hello
from harness import (
    HubProcess,
    hub_socket,
    init_git_repo,
    kill_sessions,
    process_alive,
    sandbox_env,
    write_plugin,
)
from harness.sandbox import PROXY_VARS, session_records

__all__ = [
    "SPAWNER",
    "ByteCounter",
    "HubRun",
    "Sandbox",
    "autogroup",
    "cpu_seconds",
    "log_time",
    "pin_cpus",
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
        self.env = {
            k: v
            for k, v in child_env().items()
            if k not in (*PROXY_VARS, "BOTSTER_LOG", "BOTSTER_DEBUG")
        }
        self.env.update(sandbox_env(home, runtime, debug=False, who="Bench"))
        self.repo = init_git_repo(self.root / "repo", self.env)

    @property
    def plugins_dir(self) -> Path:
        return self.repo / ".botster" / "plugins"

    def write_plugin(self, name: str, source: str) -> None:
        """Writes ``<repo>/.botster/plugins/<name>/init.lua``."""
        write_plugin(self.repo, name, source)

    def clear_plugins(self) -> None:
        shutil.rmtree(self.plugins_dir, ignore_errors=True)

    @property
    def runtime(self) -> Path:
        return Path(self.env["BOTSTER_RUNTIME_DIR"])

    def hub_socket(self) -> Path:
        """The socket of the hub running in this sandbox (from its registry entry)."""
        return hub_socket(self.runtime)

    def session_records(self) -> list[dict[str, Any]]:
        """The discovery records of the sessions started in this sandbox (live or not)."""
        return session_records(self.runtime)

    def define_agent(self, argv: list[str], name: str = "bench") -> None:
        """Commits an agent definition `name` whose initialization execs `argv` (blocks: git);
        its worktrees go under the sandbox."""
        d = self.repo / ".botster" / "agents" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "initialization").write_text(f"exec {shlex.join(argv)}\n")
        env = self.env
        subprocess.run(["git", "add", ".botster"], cwd=self.repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "agent"], cwd=self.repo, env=env, check=True)
        env["BOTSTER_WORKTREE_BASE"] = str(self.root / "worktrees")

    def kill_sessions(self, grace: float = 2.0) -> int:
        """Ends every session process of this sandbox and its program; returns how many."""
        return kill_sessions(self.runtime, grace)

    def close(self) -> None:
        self.kill_sessions()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def pin_cpus(pid: int, cpus: set[int]) -> None:
    """Keeps every thread of a process on `cpus` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # the thread ended meanwhile


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
            encode_json(hello("bench-counter"))
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


class HubRun(HubProcess):
    """One ``botster hub`` process of a sandbox, started by the installed console script."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox.repo, sandbox.env, command=[str(bin_path("botster"))])
        # HubProcess lays the sandbox over this process's environment, which may hold
        # PYTHONDONTWRITEBYTECODE: the hub and its sessions would then compile from source
        # whatever no earlier child cached (``child_env`` leaves it out on purpose).
        for key in set(self.env) - set(sandbox.env):
            if key == "PYTHONDONTWRITEBYTECODE":
                del self.env[key]
        self.sandbox = sandbox

    async def connect(self, name: str = "bench", **kwargs: Any) -> HubConnection:
        return await super().connect(name, **kwargs)
