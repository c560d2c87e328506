"""Stream pub/sub between sockets: in-process, or across relays through Redis.

A stream is a name such as ``hub:<id>:command``; a message is JSON text, serialised once by
the publisher and spliced into each subscriber's frame by ``cable``. ``LocalBroker`` hands a
message to this process's subscribers directly. ``RedisBroker`` publishes to Redis and keeps
ONE pub/sub connection per relay process: it subscribes to a Redis channel when the first
local socket wants the stream and unsubscribes when the last one leaves, so Redis fans out to
relays, and each relay fans out to its own sockets. The relay control channel (token
revocations) rides on the same connection.

Leaves to ``cable`` what a message means; a broker never parses one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from botster.relay.store import CONTROL_CHANNEL, KEY_PREFIX, redacted

__all__ = ["Broker", "LocalBroker", "RedisBroker"]

log = logging.getLogger("botster.relay")

Deliver = Callable[[str], None]


class Broker:
    """In-process fan-out; the base of the Redis broker (which adds the network hop)."""

    def __init__(self) -> None:
        self._streams: dict[str, set[Deliver]] = {}
        self.on_control: Callable[[dict[str, Any]], None] | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._streams.clear()

    async def subscribe(self, stream: str, deliver: Deliver) -> None:
        """Calls `deliver(text)` for each message on `stream` until unsubscribed."""
        self._streams.setdefault(stream, set()).add(deliver)

    async def unsubscribe(self, stream: str, deliver: Deliver) -> None:
        subs = self._streams.get(stream)
        if subs is None:
            return
        subs.discard(deliver)
        if not subs:
            del self._streams[stream]

    async def publish(self, stream: str, text: str) -> None:
        self._dispatch(stream, text)

    def _dispatch(self, stream: str, text: str) -> None:
        for deliver in tuple(self._streams.get(stream, ())):
            try:
                deliver(text)
            except Exception:
                log.exception("relay: delivery on %s failed", stream.split(":", 2)[0])

    def local_streams(self) -> int:
        return len(self._streams)


LocalBroker = Broker


class RedisBroker(Broker):
    """Redis pub/sub with one subscriber connection for the whole process."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis.asyncio as aioredis  # lazy: only relays given --redis pay for it

        self.url = url
        self._redis = aioredis.from_url(url, decode_responses=True)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=False)
        self._reader: asyncio.Task[None] | None = None
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._lock = asyncio.Lock()
        self._ready: dict[str, asyncio.Future[None]] = {}

    @staticmethod
    def _channel(stream: str) -> str:
        return KEY_PREFIX + "s:" + stream

    async def start(self) -> None:
        await self._subscribe_channel(CONTROL_CHANNEL, wait=False)
        self._reader = asyncio.create_task(self._read(), name="relay-redis-reader")
        await self._wait_ack(CONTROL_CHANNEL)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        await self._pubsub.aclose()
        await self._redis.aclose()
        await super().close()

    async def _subscribe_channel(self, channel: str, *, wait: bool = True) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.setdefault(channel, []).append(fut)
        await self._pubsub.subscribe(channel)
        if wait:
            await self._wait_ack(channel, fut)

    async def _wait_ack(self, channel: str, fut: asyncio.Future[None] | None = None) -> None:
        if fut is None:
            pending = self._acks.get(channel)
            if not pending:
                return
            fut = pending[-1]
        # Redis confirms a SUBSCRIBE on the pub/sub connection; waiting for it means a message
        # published after this returns reaches us (a browser's bundle_request, answered from
        # another relay, cannot outrun our subscription).
        await asyncio.wait_for(asyncio.shield(fut), 10.0)

    async def subscribe(self, stream: str, deliver: Deliver) -> None:
        first = stream not in self._streams
        await super().subscribe(stream, deliver)
        if first:
            ready = asyncio.get_running_loop().create_future()
            self._ready[stream] = ready
            try:
                async with self._lock:
                    await self._subscribe_channel(self._channel(stream))
            finally:
                if self._ready.get(stream) is ready:
                    del self._ready[stream]
                ready.set_result(None)
        elif (ready := self._ready.get(stream)) is not None:
            # Another socket's SUBSCRIBE for this stream is in flight: ours is live when it is.
            await asyncio.shield(ready)

    async def unsubscribe(self, stream: str, deliver: Deliver) -> None:
        await super().unsubscribe(stream, deliver)
        if stream not in self._streams:
            async with self._lock:
                if stream not in self._streams:  # nobody came back while we waited
                    await self._pubsub.unsubscribe(self._channel(stream))

    async def publish(self, stream: str, text: str) -> None:
        await self._redis.publish(self._channel(stream), text)

    async def _read(self) -> None:
        prefix = KEY_PREFIX + "s:"
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("relay: redis pub/sub at %s failed: %s", redacted(self.url), e)
                await asyncio.sleep(1.0)
                continue
            if msg is None:
                continue
            kind, channel = msg["type"], msg["channel"]
            if kind == "subscribe":
                for fut in self._acks.pop(channel, []):
                    if not fut.done():
                        fut.set_result(None)
            elif kind == "message":
                if channel.startswith(prefix):
                    self._dispatch(channel[len(prefix) :], msg["data"])
                elif channel == CONTROL_CHANNEL and self.on_control is not None:
                    try:
                        self.on_control(json.loads(msg["data"]))
                    except Exception:
                        log.exception("relay: bad control message")
