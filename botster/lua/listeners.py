"""``ListenerSet``: the Lua callbacks behind a primitive's ``on_*`` functions.

Every ``on_*`` of a client-facing primitive (``socket.on_message``, ``tui.on_connected``...)
adds a listener; each is owned by the plugin that added it (released when it unloads), and a
dispatch starts every listener as its own task of its owner, so one that fails or waits
touches no other. ``MessageInbox`` hands a client's JSON messages to such a set in arrival
order, checked against the message limits first (the client-facing faces share it).
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable
from typing import Any, Protocol

from botster.lua.convert import ConversionError, check_data, check_data_steps, run_sliced

__all__ = ["ListenerSet", "MessageInbox"]

log = logging.getLogger("hub")

# A message this small (in JSON bytes, about) is checked and converted at once: well under a
# millisecond. Larger ones go through the sliced path.
_SMALL = 32 << 10

_ids = itertools.count(1)


class _Hub(Protocol):
    """What listeners need of their hub (``HubContext`` has it): ownership and the Lua host."""

    host: Any

    def own(self, key: str, release: Callable[[], object]) -> str: ...


class _InboxHub(_Hub, Protocol):
    """What an inbox needs of its hub besides listeners: settings and background tasks."""

    config: Any

    def spawn(self, coro: Any, *, name: str, owner: str) -> Any: ...


class _Client(Protocol):
    """The part of a channel client an inbox uses (``transports.channel.ChannelClient``)."""

    id: str

    def send_json(self, message: Any) -> bool: ...


class ListenerSet:
    """The listeners of one ``on_*`` function of one hub.

    Args:
        hub: the hub the listeners live in.
        prefix: listener ids read ``<prefix>_<n>`` (e.g. ``socket_message``).
    """

    def __init__(self, hub: _Hub, prefix: str) -> None:
        self._hub = hub
        self._prefix = prefix
        self._fns: dict[str, tuple[str, Any]] = {}  # id -> (owner, Lua function)

    def add(self, fn: Any) -> str:
        """Adds a listener for the calling plugin, released with it. Returns its id."""
        key = f"{self._prefix}_{next(_ids)}"
        owner = self._hub.own(key, lambda: self._fns.pop(key, None))
        self._fns[key] = (owner, fn)
        return key

    def dispatch(self, label: str, *args: Any) -> None:
        """Starts every listener with `args` (converted to Lua) as a task of its owner."""
        if not self._fns:
            return
        convert = self._hub.host.convert
        self.dispatch_lua(label, *[convert.to_lua(a) for a in args])

    def dispatch_lua(self, label: str, *lua_args: Any) -> None:
        """Like ``dispatch`` with arguments already converted (a large message, say)."""
        sched = self._hub.host.sched
        for owner, fn in list(self._fns.values()):
            sched.start(owner, label, fn, *lua_args)

    def __len__(self) -> int:
        return len(self._fns)


class MessageInbox:
    """Hands each client's JSON messages to a ``ListenerSet`` in arrival order; large ones in
    slices.

    A message too deep or too large (``socket_max_json_depth`` and ``socket_max_message_kb``,
    checked again here on the decoded value, whatever transport carried it) is never
    converted: with `answer`, the client gets an error (a failed response to a request); the
    faces that only serve plugins' own listeners pass ``answer=False`` so a client hears of it
    once. One over ``_SMALL`` that passes is measured and converted in slices between which
    the loop runs; while it is, the same client's later messages wait behind it, so Lua sees
    them in order.

    Args:
        hub: the hub (settings, tasks, the Lua host).
        listeners: who gets ``(client_id, message)``.
        label: names the Lua tasks (``"socket message"``).
        answer: whether a refused message is answered.
    """

    def __init__(
        self, hub: _InboxHub, listeners: ListenerSet, label: str, *, answer: bool = True
    ) -> None:
        self._hub = hub
        self._listeners = listeners
        self._label = label
        self._answer = answer
        self._queues: dict[str, collections.deque[dict[str, Any]]] = {}

    def _limits(self) -> tuple[int, int]:
        config = self._hub.config
        max_bytes = int(config.setting("socket_max_message_kb")) << 10
        return max_bytes, int(config.setting("socket_max_json_depth"))

    def receive(self, client: _Client, message: dict[str, Any]) -> None:
        """A message from `client`: to the listeners now, after the ones queued before it,
        or refused."""
        if not self._listeners:
            return
        queue = self._queues.get(client.id)
        if queue is not None:
            queue.append(message)
            return
        max_bytes, max_depth = self._limits()
        problem = check_data(message, max_bytes=min(_SMALL, max_bytes), max_depth=max_depth)
        if problem is None:
            self._listeners.dispatch(self._label, client.id, message)
            return
        if "deeper" in problem or max_bytes <= _SMALL:
            self._refuse(client, message, problem)
            return
        self._queues[client.id] = collections.deque([message])
        self._hub.spawn(self._drain(client), name=f"{self._label} {client.id}", owner="hub")

    async def _drain(self, client: _Client) -> None:
        queue = self._queues[client.id]
        convert = self._hub.host.convert
        try:
            while queue:
                message = queue.popleft()
                max_bytes, max_depth = self._limits()
                steps = check_data_steps(message, max_bytes=max_bytes, max_depth=max_depth)
                problem = await run_sliced(steps)
                if problem is not None:
                    self._refuse(client, message, problem)
                    continue
                try:
                    value = await run_sliced(convert.to_lua_steps(message))
                except ConversionError as e:
                    self._refuse(client, message, str(e))
                    continue
                self._listeners.dispatch_lua(self._label, client.id.encode(), value)
        finally:
            self._queues.pop(client.id, None)

    def _refuse(self, client: _Client, message: Any, problem: str) -> None:
        if not self._answer:
            return
        if problem.startswith(("nested", "larger")):
            setting = "socket_max_json_depth" if "deeper" in problem else "socket_max_message_kb"
            text = f"message is {problem} (setting {setting})"
        else:
            text = f"message refused: {problem}"
        log.warning("client %s: %s; refused", client.id, text)
        if isinstance(message, dict) and message.get("type") == "request" and "id" in message:
            msg_id = message["id"]
            if isinstance(msg_id, (str, int)) and not isinstance(msg_id, bool):
                client.send_json({"type": "response", "id": msg_id, "ok": False, "error": text})
                return
        client.send_json({"type": "error", "code": "bad_message", "message": text})


class _FaceClient(_Client, Protocol):
    name: str
    transport: str


class ClientFace:
    """The listeners of one client-facing Lua face (``socket``, ``webrtc``, the client
    protocol's view of every client): ``on_connected``, ``on_disconnected`` and ``on_message``
    sets over the clients `accepts` picks. It is an observer of the hub's client channel
    (``transports.channel.ClientObserver``): pass it to ``hub.clients.add_observer``.

    Args:
        hub: the hub the listeners live in.
        prefix: listener ids (``<prefix>_connected_<n>``) and task labels start with it.
        accepts: which clients this face serves (by transport, usually).
        answer: whether this face answers a message it refuses (``MessageInbox``).
        info: with it, connect and disconnect listeners also get ``info(client)`` (a table).
    """

    def __init__(
        self,
        hub: _InboxHub,
        prefix: str,
        accepts: Callable[[Any], bool],
        *,
        answer: bool,
        info: Callable[[Any], Any] | None = None,
    ) -> None:
        self.prefix = prefix
        self.accepts = accepts
        self.info = info
        self.on_connected = ListenerSet(hub, f"{prefix}_connected")
        self.on_disconnected = ListenerSet(hub, f"{prefix}_disconnected")
        self.on_message = ListenerSet(hub, f"{prefix}_message")
        self.inbox = MessageInbox(hub, self.on_message, f"{prefix} message", answer=answer)

    def _args(self, client: _FaceClient) -> tuple[Any, ...]:
        return (client.id,) if self.info is None else (client.id, self.info(client))

    def connected(self, client: _FaceClient) -> None:
        if self.accepts(client):
            self.on_connected.dispatch(f"{self.prefix} connected", *self._args(client))

    def disconnected(self, client: _FaceClient) -> None:
        if self.accepts(client):
            self.on_disconnected.dispatch(f"{self.prefix} disconnected", *self._args(client))

    def message(self, client: _FaceClient, message: dict[str, Any]) -> None:
        if self.accepts(client):
            self.inbox.receive(client, message)
