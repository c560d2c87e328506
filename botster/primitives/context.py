"""What a primitive may use of the hub that installed it: the ``HubContext`` protocol.

There is no process-wide hub. ``Hub`` installs each primitive module into its Lua state and
hands it *itself*: every ``@lua_api`` function whose first parameter is ``hub: HubContext``
gets the installing hub bound there (Lua never sees that parameter), and the module passes it
on to its helpers. Per-hub state lives in ONE object per module, made on first use by
``hub.state(_State)``, never in a module-level dict. So two hubs run side by side in one
process (``tests/test_two_hubs.py``). See "How to write a primitive" in
``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from botster.base.config import Config
    from botster.base.paths import Paths
    from botster.lua.owners import Owners
    from botster.lua.runtime import LuaHost
    from botster.remote.relay_link import RelayLink
    from botster.sessions.manager import SessionManager
    from botster.transports.channel import ClientChannel
    from botster.transports.socket_server import SocketServer

__all__ = ["HubContext"]

T = TypeVar("T")
S = TypeVar("S")


class HubContext(Protocol):
    """The narrow view of a running hub that primitives receive (``Hub`` implements it)."""

    hub_id: str
    paths: Paths
    config: Config
    loop: asyncio.AbstractEventLoop
    host: LuaHost
    owners: Owners
    sessions: SessionManager
    clients: ClientChannel
    relay: RelayLink
    socket_server: SocketServer | None
    started_at: float

    def state(self, cls: Callable[[HubContext], S]) -> S:
        """This hub's one instance of a module's state class, made as ``cls(hub)`` on first
        use. Keyed by the class, so each module owns exactly one."""
        ...

    def own(self, key: str, release: Callable[[], object]) -> str:
        """Records resource `key` against the calling owner (plugin); unloading the owner
        calls `release`. Returns the owner."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str, owner: str) -> asyncio.Task[T]:
        """Runs `coro` in the background, tracked and cancelled with `owner`."""
        ...

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """The one doorway for blocking work."""
        ...

    def on_close(self, close: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs `close()` at the end of shutdown."""
        ...

    def emit(self, event: str, data: Any = None) -> None:
        """Emits a Lua bus event from Python."""
        ...

    def notify_hook(self, name: str, data: Any = None) -> None:
        """Tells ``hub.hooks`` observers of `name` from Python."""
        ...

    def release_owner(self, owner: str) -> None:
        """Releases everything `owner` holds."""
        ...

    def quit(self) -> None:
        """Asks the hub to stop."""
        ...

    def fail(self, message: str) -> None:
        """Stops the hub with exit code 1."""
        ...
