"""The hub process: one asyncio loop, one Lua state, plugins, clean start and stop.

Owns the hub's lifetime: taking the repo lock, creating the Lua host, installing primitives,
booting the embedded Lua (``hub/init.lua``), tracking background work by owner, and shutting
down in stages on ``hub.quit()``, SIGINT or SIGTERM. What each primitive does lives in
``botster/primitives``; how plugins load and reload lives in the embedded Lua.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from botster.base import blocking
from botster.base.config import Config
from botster.base.identity import HubLock, socket_path_for
from botster.base.loop import loop_only, set_loop_thread
from botster.base.paths import Paths
from botster.hub.supervisor import Watchdog
from botster.lua.owners import Owners
from botster.lua.runtime import LuaHost
from botster.remote.relay_link import RelayLink
from botster.sessions.manager import SessionManager
from botster.transports.channel import ClientChannel
from botster.transports.socket_server import SocketLimits, SocketServer

__all__ = ["Hub", "PRIMITIVES"]

log = logging.getLogger("hub")

T = TypeVar("T")
S = TypeVar("S")

# Lua global -> module under botster.primitives, installed in this order.
PRIMITIVES: tuple[str, ...] = (
    "log",
    "json",
    "fs",
    "config",
    "secrets",
    "events",
    "timer",
    "watch",
    "http",
    "websocket",
    "socket",
    "tui",
    "pty",
    "hub_discovery",
    "worktree",
    "hub_client",
    "update",
    "push",
    "webrtc",
    "connection",
    "action_cable",
    "hub",
)

SHUTDOWN_GRACE_S = 2.0


class Hub:
    """A running hub for one repository; implements ``HubContext`` for its primitives.

    Args:
        paths: where everything lives.
        config: the device configuration.
        hub_id: hex SHA-256 of the repo path.
        handle_signals: stop on SIGINT/SIGTERM (off for a second hub in one process: the
            loop has one handler per signal).
    """

    def __init__(
        self, paths: Paths, config: Config, hub_id: str, *, handle_signals: bool = True
    ) -> None:
        self.paths = paths
        self.config = config
        self.hub_id = hub_id
        self.owners = Owners()
        self.lock = HubLock(paths, hub_id)
        self.started_at = time.monotonic()
        self.host: LuaHost
        self.socket_server: SocketServer | None = None
        self.clients = ClientChannel()
        self.sessions = SessionManager(self)
        self.relay = RelayLink(self)  # started once the hub is ready (hub/internals.py)
        self.loop: asyncio.AbstractEventLoop
        self._quit: asyncio.Event
        self._background: dict[asyncio.Task[Any], str] = {}
        self._io_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="botster-io")
        self._closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._exit_code = 0
        self._handle_signals = handle_signals
        self._states: dict[Any, Any] = {}

    # Lifetime -----------------------------------------------------------------------------

    async def run(self) -> int:
        """Runs the hub until it is asked to quit. Returns the process exit code."""
        set_loop_thread()
        self.loop = asyncio.get_running_loop()
        self._quit = asyncio.Event()
        if self._handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self._on_signal, sig)
        watchdog = Watchdog.from_env()  # set when a supervisor runs this hub
        if watchdog is not None:
            watchdog.start(self.loop)
        guarded = bool(os.environ.get("BOTSTER_DEBUG")) or self.config.setting(
            "debug_blocking_calls"
        )
        try:
            # Start-up reads the embedded Lua before anything is served; then the guard.
            with blocking.allowed():
                self.host = LuaHost(
                    budget_s=float(self.config.setting("lua_step_budget")),
                    memory_limit=int(self.config.setting("lua_memory_limit_mb")) << 20,
                    slow_s=int(self.config.setting("lua_slow_step_ms")) / 1000,
                    override_dirs=self.paths.override_dirs(),
                )
                if watchdog is not None:
                    self.host.sched_py[b"on_enter"] = watchdog.enter
                for name in PRIMITIVES:
                    module = importlib.import_module(f"botster.primitives.{name}")
                    extras = getattr(module, "lua_extras", None)
                    self.host.install(name, module, extras(self) if extras else None, hub=self)
                internals = importlib.import_module("botster.hub.internals")
                self.host.install("_botster", internals, hub=self)
            if guarded:
                blocking.guard()
            await self._start_socket()
            # Sessions kept running while no hub was here: adopt them before Lua boots so
            # the agent lifecycle finds them in pty.list().
            await self.sessions.adopt_all()
            boot = self.host.lua.eval(_BOOT)
            self.host.sched.start(
                "hub",
                "hub start-up",
                boot,
                on_lost=lambda why: self.fail(
                    f"hub start-up failed: the boot task was lost: {why}"
                ),
            )
            await self._quit.wait()
            await self._shutdown()
        finally:
            if watchdog is not None:
                watchdog.stop()
            if guarded:
                blocking.unguard()
            with blocking.allowed():  # the loop is done serving; releasing the lock reads files
                self.lock.release()
            self._io_pool.shutdown(wait=False, cancel_futures=True)
            if self._handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.loop.remove_signal_handler(sig)
        return self._exit_code

    async def _start_socket(self) -> None:
        self.socket_server = SocketServer(
            socket_path_for(self.paths, self.hub_id),
            self.hub_id,
            on_connect=self.clients.connected,
            on_message=self.clients.message,
            on_disconnect=self.clients.disconnected,
            on_pty_input=self.clients.pty_input,
            limits=SocketLimits.from_config(self.config.setting),
        )
        await self.socket_server.start()

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s, shutting down", signal.Signals(sig).name)
        self.quit()

    @loop_only
    def fail(self, message: str) -> None:
        """Stops the hub with exit code 1 after a fault it cannot run without."""
        log.critical("%s", message)
        self._exit_code = 1
        self.quit()

    @loop_only
    def quit(self) -> None:
        """Asks the hub to stop after the current Lua step returns."""
        self._quit.set()

    async def _shutdown(self) -> None:
        # Stage 1: tell Lua, and give handlers that wait (a last HTTP call) a moment.
        notify = self.host.lua.eval("function() require('hub.init').shutdown() end")
        self.host.sched.start("hub", "shutdown", notify)
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await self.host.sched.wait_idle()
        except TimeoutError:
            log.warning(
                "shutdown: %d Lua tasks still waiting after %.0f s; cancelling them",
                self.host.sched.pending_count(),
                SHUTDOWN_GRACE_S,
            )
        if self.socket_server is not None:
            await self.socket_server.stop()
        await self.sessions.detach_all()  # sessions keep running for the next hub
        # Stage 2: release everything every owner holds, then background work.
        self.host.sched.cancel_all()
        for owner in self.owners.owners():
            self.owners.release(owner)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(list(self._background), timeout=SHUTDOWN_GRACE_S)
        # Stage 3: tell the relay this hub is gone, and stop the embedded one (after every
        # plugin's connection to it is closed).
        await self.relay.stop(SHUTDOWN_GRACE_S)
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        log.info("hub stopped")

    # Shared machinery for primitives (the HubContext protocol) -----------------------------

    def state(self, cls: Callable[[Any], S]) -> S:
        """This hub's one instance of a module's state class, made as ``cls(hub)`` on first
        use (see ``botster.primitives.context``)."""
        found = self._states.get(cls)
        if found is None:
            found = self._states[cls] = cls(self)
        return cast(S, found)

    @loop_only
    def own(self, key: str, release: Callable[[], object]) -> str:
        """Records resource `key` against the calling owner; returns that owner."""
        owner = self.host.current_owner()
        self.owners.add(owner, key, release)
        return owner

    @loop_only
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str, owner: str) -> asyncio.Task[T]:
        """Runs `coro` in the background; a failure is logged with its owner; tracked."""
        task = self.loop.create_task(coro, name=name)
        self._background[task] = owner
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        owner = self._background.pop(task, "hub")
        if not task.cancelled() and task.exception() is not None:
            log.error("[%s] %s failed", owner, task.get_name(), exc_info=task.exception())

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """The one doorway for blocking work: runs fn(*args) on the I/O pool."""
        return await self.loop.run_in_executor(self._io_pool, fn, *args)

    def on_close(self, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Registers a coroutine function to run at the end of shutdown (e.g. close a pool)."""
        self._closers.append(close)

    @loop_only
    def release_owner(self, owner: str) -> None:
        """Releases everything `owner` holds: suspended tasks, resources, background work."""
        self.host.sched.cancel_owner(owner)
        self.owners.release(owner)
        for task, task_owner in list(self._background.items()):
            if task_owner == owner:
                task.cancel()

    @loop_only
    def notify_hook(self, name: str, data: Any = None) -> None:
        """Tells `hub.hooks` observers of `name` from Python; each runs as its own task."""
        try:
            notify = self.host.get(self.host.require("hub.hooks"), b"notify")
            notify(name.encode(), self.host.convert.to_lua(data))
        except Exception:
            log.exception("notifying hook %s failed", name)

    @loop_only
    def emit(self, event: str, data: Any = None) -> None:
        """Emits an event into the Lua bus from Python; listeners run as their own tasks."""
        emit = self.host.get(self.host.get(self.host.globals, b"events"), b"emit")
        try:
            emit(event.encode(), self.host.convert.to_lua(data))
        except Exception:
            log.exception("emitting %s failed", event)


# Boot errors are fatal: a hub whose core Lua failed to start would only pretend to run.
_BOOT = """
function()
  local ok, err = xpcall(function() require('hub.init').boot() end, debug.traceback)
  if not ok then _botster.fatal('hub start-up failed: ' .. tostring(err)) end
end
"""
