"""The crash-only hub: a small supervisor process, the hub's heartbeat, plugin quarantine.

``botster hub --supervised`` (and the process ``botster start`` leaves behind) runs
``supervise``: it starts the real hub as a child and watches two things it hands it:

* a heartbeat pipe (``BOTSTER_HEARTBEAT_FD``): the hub's event loop writes one byte every
  ``HEARTBEAT_S`` from a loop timer, so silence means the loop is not running — wedged in C
  code no CPU budget can cut, or holding the GIL;
* a "running" file (``BOTSTER_RUNNING_FILE``), memory-mapped by the hub, where the Lua
  scheduler writes the owner of the step it enters and leaves (one ~1 µs call per step), so
  after a crash or a wedge the supervisor knows which plugin was running.

When the hub dies, or its heartbeat stops for ``hub_watchdog_s``, the supervisor kills it
(SIGKILL: a wedged loop cannot run a SIGTERM handler), quarantines the plugin that was
running, and starts a new hub at once. Sessions outlive the hub and are adopted again; UIs
reconnect on their own. Repeated failures back off (and say so). A hub that exits 0 (stopped
by the user) ends the supervisor.

A quarantined plugin is not loaded (``plugins.list`` shows it with status ``quarantined`` and
the reason) until its files change or ``plugins.enable`` lifts it. The list lives in
``$BOTSTER_HOME/state/quarantine-<id16>.json`` (0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import mmap
import os
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = [
    "HEARTBEAT_ENV",
    "HEARTBEAT_S",
    "RUNNING_ENV",
    "Quarantine",
    "Watchdog",
    "supervise",
]

log = logging.getLogger("supervisor")

HEARTBEAT_ENV = "BOTSTER_HEARTBEAT_FD"
RUNNING_ENV = "BOTSTER_RUNNING_FILE"
HEARTBEAT_S = 0.2
RUNNING_SIZE = 256
# Owners that are not plugins: nothing to quarantine when they were running.
NOT_PLUGINS = frozenset({"", "hub", "user"})
# Crash loop: more than this many failures within the window back off, doubling up to the cap.
LOOP_FAILURES, LOOP_WINDOW_S, LOOP_MAX_DELAY_S = 3, 60.0, 30.0


# In the hub ---------------------------------------------------------------------------------


class Watchdog:
    """The hub's side: the heartbeat timer and the running-owner record.

    Created by the hub when it runs under a supervisor (``from_env``); otherwise absent and
    free.
    """

    def __init__(self, fd: int, running: Path) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # the hub's own children have no business with it
        self._running_fd = os.open(running, os.O_RDWR)
        self._map = mmap.mmap(self._running_fd, RUNNING_SIZE)
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def from_env(cls) -> Watchdog | None:
        """The watchdog a supervisor asked for in the environment, else None."""
        fd, running = os.environ.get(HEARTBEAT_ENV), os.environ.get(RUNNING_ENV)
        if not fd or not running:
            return None
        return cls(int(fd), Path(running))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Beats from `loop` every HEARTBEAT_S until ``stop``."""
        self._loop = loop
        self._beat()

    def _beat(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, b".")
        self._handle = self._loop.call_later(HEARTBEAT_S, self._beat)

    def enter(self, owner: bytes) -> None:
        """The scheduler entered (or went back to) a step of `owner` (b"" between steps)."""
        data = owner[: RUNNING_SIZE - 1] + b"\0"
        self._map[: len(data)] = data

    def stop(self) -> None:
        """Stops beating (clean shutdown)."""
        if self._handle is not None:
            self._handle.cancel()
        self.enter(b"")


# Quarantine ---------------------------------------------------------------------------------


def _fingerprint_blocking(plugin_dir: Path) -> str:
    """Names, sizes and mtimes of the plugin's files: an edit changes it."""
    parts = []
    for root, dirs, files in os.walk(plugin_dir):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            with contextlib.suppress(OSError):
                st = path.stat()
                parts.append(f"{path.relative_to(plugin_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


class Quarantine:
    """Plugins that took a hub down, persisted per hub.

    Args:
        path: the JSON file (created 0600 in a 0700 directory).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_hub(cls, home: Path, hub_id: str) -> Quarantine:
        """The quarantine file of one hub under ``$BOTSTER_HOME/state``."""
        return cls(home / "state" / f"quarantine-{hub_id[:16]}.json")

    def entries_blocking(self) -> dict[str, dict[str, Any]]:
        """name -> {reason, at, fingerprint?}."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_blocking(self, data: dict[str, dict[str, Any]]) -> None:
        from botster.base.paths import ensure_private_dir

        ensure_private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def add_blocking(self, name: str, reason: str) -> None:
        """Quarantines `name`; its fingerprint is taken at the next start (``check``)."""
        data = self.entries_blocking()
        data[name] = {"reason": reason, "at": time.time()}
        self._write_blocking(data)

    def check_blocking(self, name: str, plugin_dir: Path) -> str | None:
        """The reason `name` is quarantined, or None (never was, or edited since)."""
        data = self.entries_blocking()
        entry = data.get(name)
        if entry is None:
            return None
        now = _fingerprint_blocking(plugin_dir)
        if "fingerprint" not in entry:
            entry["fingerprint"] = now
            self._write_blocking(data)
        elif entry["fingerprint"] != now:
            del data[name]
            self._write_blocking(data)
            log.info("plugin '%s' was edited: its quarantine is lifted", name)
            return None
        return str(entry.get("reason", "quarantined"))

    def remove_blocking(self, name: str) -> bool:
        """Lifts the quarantine of `name`; False if it was not quarantined."""
        data = self.entries_blocking()
        if data.pop(name, None) is None:
            return False
        self._write_blocking(data)
        return True


# The supervisor -----------------------------------------------------------------------------


def supervise(repo: Path) -> int:
    """Runs hubs for `repo` until one exits 0 or the supervisor is told to stop.

    Returns:
        The exit code of the last hub (0 after a clean stop).

    Raises:
        HubError: no repo, a broken config.json, or a hub already running for the repo
            (checked before the first hub starts, so they are not mistaken for crashes).
    """
    from botster.base.config import Config
    from botster.base.errors import HubError
    from botster.base.identity import HubLock, find_repo_root, hub_id_for
    from botster.base.paths import Paths, ensure_private_dir

    root = find_repo_root(repo)
    paths = Paths.for_repo(root)
    ensure_private_dir(paths.home)
    ensure_private_dir(paths.runtime)
    config = Config.load_blocking(paths.config_file)
    hub_id = hub_id_for(root)
    # One supervisor per repository, held for its lifetime (the kernel drops it on any exit):
    # a second one would fight the first for the hub lock at every restart.
    lock = os.open(paths.runtime / f"{hub_id[:16]}.supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise HubError(f"a supervisor is already running for {root}") from None
    try:
        probe = HubLock(paths, hub_id)
        probe.acquire()  # raises while another hub runs
        probe.release()
        return asyncio.run(_Supervisor(root, paths, hub_id, config).run())
    finally:
        os.close(lock)


class _Supervisor:
    def __init__(self, repo: Path, paths: Any, hub_id: str, config: Any) -> None:
        self.repo = repo
        self.paths = paths
        self.hub_id = hub_id
        self.watchdog_s = float(config.setting("hub_watchdog_s"))
        self.quarantine = Quarantine.for_hub(paths.home, hub_id)
        self.failures: deque[float] = deque()
        self.stopping = False
        self.child: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        from botster.base.paths import ensure_private_dir

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop, sig)
        running = ensure_private_dir(self.paths.runtime) / f"{self.hub_id[:16]}.running"
        while True:
            code, wedged = await self._run_once(running)
            if self.stopping or (code == 0 and not wedged):
                return code
            self._after_failure(code, wedged, running)
            delay = self._backoff()
            if delay:
                log.warning(
                    "crash loop: %d hub failures in %.0f s; waiting %.0f s before restarting",
                    len(self.failures),
                    LOOP_WINDOW_S,
                    delay,
                )
                await asyncio.sleep(delay)
                if self.stopping:
                    return code

    def _stop(self, sig: int) -> None:
        log.info("supervisor received %s, stopping the hub", signal.Signals(sig).name)
        self.stopping = True
        if self.child is not None and self.child.returncode is None:
            self.child.send_signal(sig)

    async def _run_once(self, running: Path) -> tuple[int, bool]:
        fd = os.open(running, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, RUNNING_SIZE)
        os.close(fd)
        beat_r, beat_w = os.pipe()
        fcntl.fcntl(beat_r, fcntl.F_SETFL, os.O_NONBLOCK)
        env = {**os.environ, HEARTBEAT_ENV: str(beat_w), RUNNING_ENV: str(running)}
        self.child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "botster.cli",
            "hub",
            "--repo",
            str(self.repo),
            pass_fds=(beat_w,),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
        os.close(beat_w)
        log.info("hub started (pid %d)", self.child.pid)
        loop = asyncio.get_running_loop()
        last = time.monotonic()

        def on_beat() -> None:
            nonlocal last
            with contextlib.suppress(BlockingIOError):
                if os.read(beat_r, 4096):
                    last = time.monotonic()

        loop.add_reader(beat_r, on_beat)
        wedged = False
        try:
            exited = asyncio.ensure_future(self.child.wait())
            while not exited.done():
                await asyncio.wait([exited], timeout=HEARTBEAT_S)
                silent = time.monotonic() - last
                if not exited.done() and silent > self.watchdog_s and not self.stopping:
                    wedged = True
                    log.error(
                        "hub (pid %d) has not answered for %.1f s (hub_watchdog_s = %g): "
                        "killing it",
                        self.child.pid,
                        silent,
                        self.watchdog_s,
                    )
                    self.child.kill()
                    await exited
            code = exited.result()
        finally:
            loop.remove_reader(beat_r)
            os.close(beat_r)
        return code, wedged

    def _after_failure(self, code: int, wedged: bool, running: Path) -> None:
        try:
            owner = running.read_bytes().split(b"\0", 1)[0].decode("utf-8", "replace")
        except OSError:
            owner = ""
        if wedged:
            what = f"the hub's loop stopped for {self.watchdog_s:g} s"
        elif code < 0:
            what = f"the hub was killed by {signal.Signals(-code).name}"
        else:
            what = f"the hub exited with code {code}"
        if owner in NOT_PLUGINS:
            log.error("%s%s; restarting it", what, f" while '{owner}' ran" if owner else "")
        else:
            reason = f"{what} while this plugin ran ({time.strftime('%Y-%m-%d %H:%M:%S')})"
            self.quarantine.add_blocking(owner, reason)
            log.error(
                "%s while plugin '%s' ran; '%s' is quarantined (edit it or run "
                "plugins.enable to load it again); restarting the hub",
                what,
                owner,
                owner,
            )
        self.failures.append(time.monotonic())

    def _backoff(self) -> float:
        now = time.monotonic()
        while self.failures and now - self.failures[0] > LOOP_WINDOW_S:
            self.failures.popleft()
        extra = len(self.failures) - LOOP_FAILURES
        return 0.0 if extra <= 0 else min(2.0 ** (extra - 1), LOOP_MAX_DELAY_S)
