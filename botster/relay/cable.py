"""ActionCable on ``/cable``: the frames, one ``Connection`` per socket, and the two channels.

Frames (server → client): ``{"type":"welcome"}`` first, ``{"type":"ping","message":<unix ts>}``
every 3 s (one ticker for all sockets, in ``server``), ``confirm_subscription`` /
``reject_subscription`` echoing the client's identifier string byte for byte, data as
``{"identifier":<id>,"message":{...}}``, and ``{"type":"disconnect","reason":...,
"reconnect":bool}`` before the relay closes a socket. Client → server: ``subscribe``,
``unsubscribe``, ``message`` (``data`` is a JSON string of ``{"action":..., ...}``).

Channels (the identifier is JSON ``{"channel": NAME, ...params}``):

* ``HubCommandChannel {hub_id}``: the hub that owns ``hub_id`` (its socket's Bearer token is
  the one the hub registered with). Receives ``signal`` and ``bundle_request`` from browsers;
  performs ``signal {browser_identity, envelope}`` and ``heartbeat {}``. Holding it is the
  hub's presence: online while any relay has such a subscription.
* ``HubSignalingChannel {hub_id, browser_identity}``: a browser. Receives ``health`` and
  ``signal``; performs ``signal {envelope}`` and ``request_bundle {}``.

Hostile input never raises out of here: a frame that is not a JSON object, an unknown command,
an identifier that is not a string, or a rate over the limit closes the socket with a
``disconnect`` frame whose ``reason`` says why (``invalid_request`` or ``rate_limited``); a
frame over the size limit is closed by aiohttp with 1009. Envelopes are passed on as they came
and appear in no log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from botster.relay.server import Relay

__all__ = [
    "CHANNELS",
    "PROTOCOL",
    "Connection",
    "TokenBucket",
    "command_stream",
    "health_stream",
    "signal_stream",
]

log = logging.getLogger("botster.relay")

PROTOCOL = "actioncable-v1-json"
MAX_IDENTIFIER = 1024
WELCOME = '{"type":"welcome"}'
_HUB_ID = re.compile(r"^[0-9a-f]{16}$")
# "<browser curve25519 key, base64 unpadded>:<tab id>"; kept to characters that cannot break
# the ":"-separated stream names.
_BROWSER_IDENTITY = re.compile(r"^[A-Za-z0-9+/=_-]{16,128}:[A-Za-z0-9._-]{1,64}$")


def command_stream(hub_id: str) -> str:
    return f"hub:{hub_id}:command"


def health_stream(hub_id: str) -> str:
    return f"hub:{hub_id}:health"


def signal_stream(hub_id: str, browser_identity: str) -> str:
    return f"hub:{hub_id}:signal:{browser_identity}"


def health_message(online: bool) -> str:
    return '{"type":"health","cli":"online"}' if online else '{"type":"health","cli":"offline"}'


class TokenBucket:
    """`rate` events per second on average, `burst` at once."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate_burst: tuple[float, float]) -> None:
        self.rate, self.burst = rate_burst
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.stamp) * self.rate >= self.burst


class _Reject(Exception):
    """Subscription refused; the reason goes to the log, the client gets reject_subscription."""


class _Invalid(Exception):
    """A frame that breaks the protocol; the socket is closed with this reason."""


def parse_json(text: str) -> Any:
    """``json.loads`` that raises ValueError for nesting too deep to parse, too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Subscription:
    """One confirmed identifier on one socket."""

    __slots__ = ("conn", "hub_id", "identifier", "prefix", "streams")
    channel = ""

    def __init__(self, conn: Connection, identifier: str, params: dict[str, Any]) -> None:
        self.conn = conn
        self.identifier = identifier
        # Each delivery splices the publisher's already-serialised message into this prefix,
        # so the identifier goes out exactly as the client sent it.
        self.prefix = '{"identifier":' + json.dumps(identifier) + ',"message":'
        self.streams: list[str] = []
        hub_id = params.get("hub_id")
        if not isinstance(hub_id, str) or not _HUB_ID.match(hub_id):
            raise _Reject(f"hub_id: expected a relay hub id, got {_short(hub_id)}")
        self.hub_id = hub_id

    def deliver(self, text: str) -> None:
        self.conn.send_text(self.prefix + text + "}")

    def send(self, message: str) -> None:
        self.deliver(message)

    async def listen(self, stream: str) -> None:
        await self.conn.relay.broker.subscribe(stream, self.deliver)
        self.streams.append(stream)

    async def start(self) -> None:
        """Checks and side effects of subscribing; raises _Reject to refuse."""

    async def confirmed(self) -> None:
        """What happens right after the confirm frame went out."""

    async def perform(self, action: str, data: dict[str, Any]) -> None:
        log.info("relay: %s: unknown action %s ignored", self.channel, _short(action))

    async def stop(self) -> None:
        for stream in self.streams:
            await self.conn.relay.broker.unsubscribe(stream, self.deliver)
        self.streams.clear()


class HubCommandSubscription(Subscription):
    __slots__ = ("member",)
    channel = "HubCommandChannel"

    def __init__(self, conn: Connection, identifier: str, params: dict[str, Any]) -> None:
        super().__init__(conn, identifier, params)
        self.member = ""  # set once presence is taken, so stop() knows whether to give it back

    async def start(self) -> None:
        conn, relay = self.conn, self.conn.relay
        if conn.token_name is None:
            raise _Reject("HubCommandChannel needs a hub token (Authorization: Bearer)")
        hub = await relay.store.get_hub(self.hub_id)
        if hub is None or hub.token_name != conn.token_name:
            raise _Reject(f"hub {self.hub_id} is not this token's hub")
        await self.listen(command_stream(self.hub_id))
        self.member = f"{relay.instance}:{conn.id}:{id(self):x}"
        relay.presence_local.setdefault(self.hub_id, set()).add(self.member)
        await relay.store.presence_add(self.hub_id, self.member)
        await relay.store.set_alive(self.hub_id, True)
        log.info("relay: hub %s online (connection %s)", self.hub_id, conn.id)

    async def confirmed(self) -> None:
        await self.conn.relay.broker.publish(health_stream(self.hub_id), health_message(True))

    async def perform(self, action: str, data: dict[str, Any]) -> None:
        relay = self.conn.relay
        if action == "signal":
            browser = data.get("browser_identity")
            envelope = data.get("envelope")
            if not isinstance(browser, str) or not _BROWSER_IDENTITY.match(browser):
                log.info("relay: hub %s: signal with a bad browser_identity dropped", self.hub_id)
                return
            if not isinstance(envelope, dict):
                log.info("relay: hub %s: signal without an envelope object dropped", self.hub_id)
                return
            message = json.dumps({"type": "signal", "envelope": envelope}, separators=(",", ":"))
            await relay.broker.publish(signal_stream(self.hub_id, browser), message)
        elif action == "heartbeat":
            await relay.store.presence_add(self.hub_id, self.member)
            await relay.store.set_alive(self.hub_id, True)
        else:
            await super().perform(action, data)

    async def stop(self) -> None:
        await super().stop()
        if not self.member:
            return
        relay = self.conn.relay
        members = relay.presence_local.get(self.hub_id)
        if members is not None:
            members.discard(self.member)
            if not members:
                del relay.presence_local[self.hub_id]
        remaining = await relay.store.presence_remove(self.hub_id, self.member)
        self.member = ""
        if remaining == 0:
            await relay.store.set_alive(self.hub_id, False)
            await relay.broker.publish(health_stream(self.hub_id), health_message(False))
            log.info("relay: hub %s offline", self.hub_id)


class HubSignalingSubscription(Subscription):
    __slots__ = ("browser",)
    channel = "HubSignalingChannel"

    def __init__(self, conn: Connection, identifier: str, params: dict[str, Any]) -> None:
        super().__init__(conn, identifier, params)
        browser = params.get("browser_identity")
        if not isinstance(browser, str) or not _BROWSER_IDENTITY.match(browser):
            raise _Reject("browser_identity: expected '<curve25519 key base64>:<tab id>'")
        self.browser = browser

    async def start(self) -> None:
        relay = self.conn.relay
        if await relay.store.get_hub(self.hub_id) is None:
            raise _Reject(f"no hub {self.hub_id}")
        await self.listen(signal_stream(self.hub_id, self.browser))
        await self.listen(health_stream(self.hub_id))

    async def confirmed(self) -> None:
        relay = self.conn.relay
        online = await relay.store.presence_count(self.hub_id) > 0
        self.send(health_message(online))
        await self._to_hub({"type": "bundle_request", "browser_identity": self.browser})

    async def _to_hub(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"))
        await self.conn.relay.broker.publish(command_stream(self.hub_id), text)

    async def perform(self, action: str, data: dict[str, Any]) -> None:
        if action == "signal":
            envelope = data.get("envelope")
            if not isinstance(envelope, dict):
                log.info("relay: browser signal without an envelope object dropped")
                return
            await self._to_hub(
                {"type": "signal", "browser_identity": self.browser, "envelope": envelope}
            )
        elif action == "request_bundle":
            await self._to_hub({"type": "bundle_request", "browser_identity": self.browser})
        else:
            await super().perform(action, data)


CHANNELS: dict[str, type[Subscription]] = {
    "HubCommandChannel": HubCommandSubscription,
    "HubSignalingChannel": HubSignalingSubscription,
}

_CLOSE = object()


class Connection:
    """One ``/cable`` socket: its subscriptions, its outbound queue, its rate bucket."""

    __slots__ = (
        "addr",
        "bucket",
        "closing",
        "flusher",
        "flushing",
        "id",
        "out",
        "out_bytes",
        "relay",
        "subs",
        "token_hash",
        "token_name",
        "ws",
    )

    def __init__(
        self,
        relay: Relay,
        ws: web.WebSocketResponse,
        conn_id: str,
        addr: str,
        token_hash: str | None,
        token_name: str | None,
    ) -> None:
        self.relay = relay
        self.ws = ws
        self.id = conn_id
        self.addr = addr
        self.token_hash = token_hash
        self.token_name = token_name
        self.subs: dict[str, Subscription] = {}
        self.out: deque[Any] = deque()
        self.out_bytes = 0
        self.flushing = False
        self.flusher: asyncio.Task[Any] | None = None
        self.closing = False
        self.bucket = TokenBucket(relay.settings.limits.cable_per_connection)

    # -- outbound: one queue per socket keeps frames in order without a task per idle socket

    def send_text(self, text: str) -> None:
        if self.closing:
            return
        self.out.append(text)
        self.out_bytes += len(text)
        if self.out_bytes > self.relay.settings.limits.max_outbound:
            log.warning("relay: connection %s cut: it reads too slowly", self.id)
            self.out.clear()
            self.out_bytes = 0
            self._close_soon(1008, "slow consumer")
            return
        self._kick()

    def _kick(self) -> None:
        if not self.flushing:
            self.flushing = True
            self.flusher = self.relay.spawn(self._flush(), name="relay-send")

    async def closed(self) -> None:
        """Waits for the close this client's own frame caused (the socket's reader calls it).

        While the reader waits here, aiohttp's close reads on, dropping what the client still
        sends, until the client's close frame: a socket closed with unread input is reset,
        and the client may never read the ``disconnect`` frame that says why.
        """
        if self.flusher is not None:
            await asyncio.wait([self.flusher])

    async def _flush(self) -> None:
        try:
            while self.out:
                item = self.out.popleft()
                if item is _CLOSE:
                    code, message = self.out.popleft()
                    self.out.clear()
                    await self.ws.close(code=code, message=message.encode())
                    return
                self.out_bytes -= len(item)
                await self.ws.send_str(item)
        except Exception as e:  # the peer went away mid-send; the handler cleans up
            log.debug("relay: connection %s send failed: %s", self.id, e)
            self.out.clear()
        finally:
            self.flushing = False

    def _close_soon(self, code: int, message: str) -> None:
        self.closing = True
        self.out.append(_CLOSE)
        self.out.append((code, message[:120]))
        self._kick()

    def disconnect(
        self, reason: str, *, reconnect: bool, code: int = 1008, detail: str = ""
    ) -> None:
        """Sends the ActionCable ``disconnect`` frame, then closes the socket."""
        if self.closing:
            return
        frame: dict[str, Any] = {"type": "disconnect", "reason": reason, "reconnect": reconnect}
        if detail:
            frame["detail"] = detail
        self.send_text(json.dumps(frame))
        self._close_soon(code, f"{reason}: {detail}" if detail else reason)

    # -- inbound

    async def receive(self, text: str) -> None:
        """Handles one text frame from the client."""
        if self.closing:
            return
        if not self.bucket.take() or not self.relay.address_take(self.addr):
            log.warning("relay: connection %s from %s over its rate limit", self.id, self.addr)
            self.disconnect("rate_limited", reconnect=True, detail="too many messages")
            return
        try:
            await self._dispatch(text)
        except _Invalid as e:
            log.info("relay: connection %s closed: %s", self.id, e)
            self.disconnect("invalid_request", reconnect=False, detail=str(e))
        except Exception as e:
            # The store or Redis failed under us: this socket goes, the relay stays; the
            # client reconnects (to another relay, behind a load balancer).
            log.error("relay: connection %s: %s: %s", self.id, type(e).__name__, e)
            self.disconnect("server_error", reconnect=True, code=1011)

    def invalid(self, detail: str) -> None:
        log.info("relay: connection %s closed: %s", self.id, detail)
        self.disconnect("invalid_request", reconnect=False, detail=detail)

    async def _dispatch(self, text: str) -> None:
        try:
            frame = parse_json(text)
        except ValueError:
            raise _Invalid("frame is not JSON") from None
        if not isinstance(frame, dict):
            raise _Invalid("frame is not a JSON object")
        command = frame.get("command")
        identifier = frame.get("identifier")
        if command not in ("subscribe", "unsubscribe", "message"):
            raise _Invalid(f"unknown command {_short(command)}")
        if not isinstance(identifier, str):
            raise _Invalid("identifier: expected a JSON string")
        if len(identifier) > MAX_IDENTIFIER:
            raise _Invalid(f"identifier: longer than {MAX_IDENTIFIER} characters")
        if command == "subscribe":
            await self._subscribe(identifier)
        elif command == "unsubscribe":
            sub = self.subs.pop(identifier, None)
            if sub is not None:
                await sub.stop()
        else:
            await self._message(identifier, frame.get("data"))

    async def _subscribe(self, identifier: str) -> None:
        if identifier in self.subs:
            # A client that saw no confirm in time asks again; confirm again, change nothing.
            self.send_text(self._frame(identifier, "confirm_subscription"))
            return
        if len(self.subs) >= self.relay.settings.limits.subscriptions_per_connection:
            raise _Invalid("too many subscriptions on one connection")
        try:
            params = parse_json(identifier)
        except ValueError:
            params = None
        sub: Subscription | None = None
        try:
            if not isinstance(params, dict):
                raise _Reject("identifier is not a JSON object")
            kind = CHANNELS.get(params.get("channel"))  # type: ignore[arg-type]
            if kind is None:
                raise _Reject(f"unknown channel {_short(params.get('channel'))}")
            sub = kind(self, identifier, params)
            self.subs[identifier] = sub
            await sub.start()
        except _Reject as e:
            log.info("relay: connection %s: subscription rejected: %s", self.id, e)
            await self._drop(identifier, sub)
            self.send_text(self._frame(identifier, "reject_subscription"))
            return
        except Exception:
            log.exception("relay: connection %s: subscription failed", self.id)
            await self._drop(identifier, sub)
            self.send_text(self._frame(identifier, "reject_subscription"))
            return
        if self.closing or self.subs.get(identifier) is not sub:
            await self._drop(identifier, sub)  # the socket went while we were subscribing
            return
        self.send_text(self._frame(identifier, "confirm_subscription"))
        await sub.confirmed()

    async def _drop(self, identifier: str, sub: Subscription | None) -> None:
        if sub is not None and self.subs.get(identifier) is sub:
            del self.subs[identifier]
        if sub is not None:
            try:
                await sub.stop()
            except Exception:
                log.exception("relay: connection %s: cleanup failed", self.id)

    @staticmethod
    def _frame(identifier: str, kind: str) -> str:
        return '{"identifier":' + json.dumps(identifier) + ',"type":"' + kind + '"}'

    async def _message(self, identifier: str, data: Any) -> None:
        if not isinstance(data, str):
            raise _Invalid("data: expected a JSON string")
        try:
            payload = parse_json(data)
        except ValueError:
            raise _Invalid("data is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
            raise _Invalid('data: expected a JSON object with a string "action"')
        sub = self.subs.get(identifier)
        if sub is None:
            log.info(
                "relay: connection %s: message for an identifier it has not subscribed", self.id
            )
            return
        await sub.perform(payload["action"], payload)

    async def close_subscriptions(self) -> None:
        """Ends every subscription (the socket is gone); never raises."""
        self.closing = True
        subs, self.subs = list(self.subs.values()), {}
        for sub in subs:
            try:
                await sub.stop()
            except Exception:
                log.exception("relay: connection %s: cleanup failed", self.id)
