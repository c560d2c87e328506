"""Where the relay keeps hub records and token hashes: SQLite under ``--data``, or Redis.

Both stores implement ``Store``; ``open_store`` picks one. What is stored, and nothing else:

* tokens: name, SHA-256 of the token, creation time (never the token);
* hubs: server id, owning token name, the hub's local identifier, creation and last-seen
  times, alive;
* presence: which sockets hold a hub's command channel now (in memory for SQLite, which serves
  one process; a sorted set per hub in Redis, refreshed by each relay, so a relay that dies
  stops counting after ``PRESENCE_TTL``).

A hub's server id is keyed by (token name, identifier): the same hub registering again with
the same token, or with a re-minted token of the same name, gets the same id, so its pairing
URLs survive. Signalling envelopes never reach a store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botster.base.errors import BotsterError
from botster.relay.tokens import hash_token, looks_like_token, mint_token, same_hash

__all__ = [
    "PRESENCE_TTL",
    "HubRecord",
    "RedisStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
]

PRESENCE_TTL = 90.0  # seconds a relay's presence entry counts without a refresh
_DB_NAME = "relay.sqlite3"


class StoreError(BotsterError):
    """A store request the caller can fix (a taken token name, an unknown token)."""


@dataclass(frozen=True, slots=True)
class HubRecord:
    id: str
    token_name: str
    identifier: str
    created: float
    last_seen: float
    alive: bool

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identifier": self.identifier,
            "alive": self.alive,
            "last_seen": self.last_seen,
        }


class Store(Protocol):
    """What the relay asks of a store. Every method is a coroutine safe on the loop."""

    async def create_token(self, name: str | None = None) -> tuple[str, str]:
        """Mints a token; returns (name, token). Raises StoreError when the name is taken."""
        ...

    async def revoke_token(self, name_or_token: str) -> list[str]:
        """Deletes the token; returns the revoked hashes (empty when none matched)."""
        ...

    async def list_tokens(self) -> list[dict[str, Any]]: ...

    async def token_name(self, token_hash: str) -> str | None:
        """The name of a live token, or None."""
        ...

    async def register_hub(self, token_name: str, identifier: str) -> tuple[HubRecord, bool]:
        """The hub record for (token, identifier), made now if new; (record, created)."""
        ...

    async def get_hub(self, hub_id: str) -> HubRecord | None: ...

    async def hubs_of(self, token_name: str) -> list[HubRecord]: ...

    async def set_alive(self, hub_id: str, alive: bool) -> None: ...

    async def presence_add(self, hub_id: str, member: str) -> int:
        """Counts `member` (one socket) as holding the hub's channel; returns the count."""
        ...

    async def presence_remove(self, hub_id: str, member: str) -> int:
        """Stops counting `member`; returns how many remain."""
        ...

    async def presence_clear(self, hub_id: str) -> None: ...

    async def presence_count(self, hub_id: str) -> int: ...

    async def presence_refresh(self, members: dict[str, set[str]]) -> None:
        """Re-stamps this relay's live members ({hub id: members}) so they keep counting."""
        ...

    async def relay_started(self) -> None:
        """Called once when a relay starts serving from this store."""
        ...

    async def close(self) -> None: ...


def redacted(url: str) -> str:
    """`url` without a password, for messages and logs."""
    from yarl import URL

    try:
        u = URL(url)
    except ValueError:
        return "<unparsable url>"
    return str(u.with_password("***")) if u.password else url


def _new_hub_id() -> str:
    return secrets.token_hex(8)


def _default_name() -> str:
    return "token-" + secrets.token_hex(4)


def _check_name(name: str | None) -> str:
    name = name or _default_name()
    if len(name) > 64 or not name.isprintable() or looks_like_token(name):
        raise StoreError("token name: expected 1..64 printable characters, not a token")
    return name


# -- SQLite ---------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hubs (
    id TEXT PRIMARY KEY,
    token_name TEXT NOT NULL,
    identifier TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    alive INTEGER NOT NULL DEFAULT 0,
    UNIQUE (token_name, identifier)
);
"""


class SqliteStore:
    """One SQLite file, used from one worker thread so the loop never waits on the disk."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / _DB_NAME
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-sqlite")
        self._db: sqlite3.Connection | None = None
        self._presence: dict[str, set[str]] = {}

    def _open_blocking(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        self.path.chmod(0o600)
        self._db = db

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self._db is None:
            self._open_blocking()
        assert self._db is not None
        return self._db.execute(sql, args).fetchall()

    async def open(self) -> None:
        await self._run(self._open_blocking)

    async def relay_started(self) -> None:
        # A relay that starts serves no sockets yet: every hub is offline until it subscribes.
        # (Not in open(): `botster relay token` opens the store beside a running relay.)
        await self._run(self._q, "UPDATE hubs SET alive = 0")

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._pool.shutdown(wait=False)

    async def create_token(self, name: str | None = None) -> tuple[str, str]:
        name = _check_name(name)
        token = mint_token()
        try:
            await self._run(
                self._q,
                "INSERT INTO tokens (hash, name, created) VALUES (?, ?, ?)",
                hash_token(token),
                name,
                time.time(),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"a token named {name!r} exists; revoke it first") from None
        return name, token

    async def revoke_token(self, name_or_token: str) -> list[str]:
        def revoke() -> list[str]:
            if looks_like_token(name_or_token):
                rows = self._q("SELECT hash FROM tokens WHERE hash = ?", hash_token(name_or_token))
            else:
                rows = self._q("SELECT hash FROM tokens WHERE name = ?", name_or_token)
            hashes = [r[0] for r in rows]
            for h in hashes:
                self._q("DELETE FROM tokens WHERE hash = ?", h)
            return hashes

        return await self._run(revoke)

    async def list_tokens(self) -> list[dict[str, Any]]:
        rows = await self._run(self._q, "SELECT name, created FROM tokens ORDER BY created")
        return [{"name": n, "created": c} for n, c in rows]

    async def token_name(self, token_hash: str) -> str | None:
        rows = await self._run(self._q, "SELECT hash, name FROM tokens WHERE hash = ?", token_hash)
        if rows and same_hash(rows[0][0], token_hash):
            return rows[0][1]
        return None

    @staticmethod
    def _record(row: tuple[Any, ...]) -> HubRecord:
        return HubRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    _COLS = "id, token_name, identifier, created, last_seen, alive"

    async def register_hub(self, token_name: str, identifier: str) -> tuple[HubRecord, bool]:
        def register() -> tuple[HubRecord, bool]:
            now = time.time()
            rows = self._q(
                f"SELECT {self._COLS} FROM hubs WHERE token_name = ? AND identifier = ?",
                token_name,
                identifier,
            )
            if rows:
                self._q("UPDATE hubs SET last_seen = ? WHERE id = ?", now, rows[0][0])
                return self._record(rows[0]), False
            hub_id = _new_hub_id()
            self._q(
                "INSERT INTO hubs (id, token_name, identifier, created, last_seen, alive)"
                " VALUES (?, ?, ?, ?, ?, 0)",
                hub_id,
                token_name,
                identifier,
                now,
                now,
            )
            return HubRecord(hub_id, token_name, identifier, now, now, False), True

        return await self._run(register)

    async def get_hub(self, hub_id: str) -> HubRecord | None:
        rows = await self._run(self._q, f"SELECT {self._COLS} FROM hubs WHERE id = ?", hub_id)
        return self._record(rows[0]) if rows else None

    async def hubs_of(self, token_name: str) -> list[HubRecord]:
        rows = await self._run(
            self._q,
            f"SELECT {self._COLS} FROM hubs WHERE token_name = ? ORDER BY created",
            token_name,
        )
        return [self._record(r) for r in rows]

    async def set_alive(self, hub_id: str, alive: bool) -> None:
        await self._run(
            self._q,
            "UPDATE hubs SET alive = ?, last_seen = ? WHERE id = ?",
            int(alive),
            time.time(),
            hub_id,
        )

    # Presence stays in memory: a SQLite relay is one process.
    async def presence_add(self, hub_id: str, member: str) -> int:
        members = self._presence.setdefault(hub_id, set())
        members.add(member)
        return len(members)

    async def presence_remove(self, hub_id: str, member: str) -> int:
        members = self._presence.get(hub_id)
        if members is None:
            return 0
        members.discard(member)
        if not members:
            del self._presence[hub_id]
            return 0
        return len(members)

    async def presence_clear(self, hub_id: str) -> None:
        self._presence.pop(hub_id, None)

    async def presence_count(self, hub_id: str) -> int:
        return len(self._presence.get(hub_id, ()))

    async def presence_refresh(self, members: dict[str, set[str]]) -> None:
        return None


# -- Redis ----------------------------------------------------------------------------------

KEY_PREFIX = "botster:relay:"
CONTROL_CHANNEL = KEY_PREFIX + "control"


class RedisStore:
    """Hub records and token hashes in Redis, shared by every relay on the same server."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis  # lazy: only relays given --redis pay for it

        self.url = url
        self.redis = aioredis.from_url(url, decode_responses=True)
        self._p = KEY_PREFIX

    async def open(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    async def relay_started(self) -> None:
        return None  # presence entries of relays that died expire on their own

    async def create_token(self, name: str | None = None) -> tuple[str, str]:
        name = _check_name(name)
        token = mint_token()
        digest = hash_token(token)
        if not await self.redis.set(self._p + "tokname:" + name, digest, nx=True):
            raise StoreError(f"a token named {name!r} exists; revoke it first")
        await self.redis.hset(
            self._p + "token:" + digest, mapping={"name": name, "created": time.time()}
        )
        return name, token

    async def revoke_token(self, name_or_token: str) -> list[str]:
        if looks_like_token(name_or_token):
            digest = hash_token(name_or_token)
            name = await self.redis.hget(self._p + "token:" + digest, "name")
            if name is None:
                return []
        else:
            name = name_or_token
            digest = await self.redis.get(self._p + "tokname:" + name)
            if digest is None:
                return []
        await self.redis.delete(self._p + "token:" + digest, self._p + "tokname:" + name)
        await self.redis.publish(
            CONTROL_CHANNEL, json.dumps({"type": "revoked", "token_hash": digest})
        )
        return [digest]

    async def list_tokens(self) -> list[dict[str, Any]]:
        out = []
        async for key in self.redis.scan_iter(match=self._p + "token:*"):
            fields = await self.redis.hgetall(key)
            if fields:
                out.append({"name": fields["name"], "created": float(fields["created"])})
        return sorted(out, key=lambda t: t["created"])

    async def token_name(self, token_hash: str) -> str | None:
        if len(token_hash) != 64:
            return None
        name = await self.redis.hget(self._p + "token:" + token_hash, "name")
        if name is None:
            return None
        # The key is the hash itself; the constant-time check covers a backend that matched
        # loosely (it never should, but costs nothing).
        digest = await self.redis.get(self._p + "tokname:" + name)
        if digest is None or not same_hash(digest, token_hash):
            return None
        return name

    def _hubkey(self, token_name: str, identifier: str) -> str:
        key = hashlib.sha256(f"{token_name}\0{identifier}".encode()).hexdigest()
        return self._p + "hubkey:" + key

    async def register_hub(self, token_name: str, identifier: str) -> tuple[HubRecord, bool]:
        now = time.time()
        key = self._hubkey(token_name, identifier)
        hub_id = _new_hub_id()
        # The record goes in before the key that finds it, so a relay racing us on the same
        # (token, identifier) never finds a key without its record; the loser drops its own.
        record = HubRecord(hub_id, token_name, identifier, now, now, False)
        await self.redis.hset(
            self._p + "hub:" + hub_id,
            mapping={
                "token_name": token_name,
                "identifier": identifier,
                "created": now,
                "last_seen": now,
                "alive": 0,
            },
        )
        if await self.redis.set(key, hub_id, nx=True):
            await self.redis.sadd(self._p + "hubsof:" + token_name, hub_id)
            return record, True
        await self.redis.delete(self._p + "hub:" + hub_id)
        hub_id = await self.redis.get(key)
        await self.redis.hset(self._p + "hub:" + hub_id, "last_seen", now)
        existing = await self.get_hub(hub_id)
        if existing is None:
            raise StoreError(f"hub {hub_id} has a key but no record in redis")
        return existing, False

    async def get_hub(self, hub_id: str) -> HubRecord | None:
        f = await self.redis.hgetall(self._p + "hub:" + hub_id)
        if not f:
            return None
        return HubRecord(
            hub_id,
            f["token_name"],
            f["identifier"],
            float(f["created"]),
            float(f["last_seen"]),
            f.get("alive") == "1",
        )

    async def hubs_of(self, token_name: str) -> list[HubRecord]:
        ids = await self.redis.smembers(self._p + "hubsof:" + token_name)
        records = [await self.get_hub(i) for i in ids]
        return sorted((r for r in records if r), key=lambda r: r.created)

    async def set_alive(self, hub_id: str, alive: bool) -> None:
        await self.redis.hset(
            self._p + "hub:" + hub_id, mapping={"alive": int(alive), "last_seen": time.time()}
        )

    def _pkey(self, hub_id: str) -> str:
        return self._p + "presence:" + hub_id

    async def presence_count(self, hub_id: str) -> int:
        return await self.redis.zcount(self._pkey(hub_id), time.time() - PRESENCE_TTL, "+inf")

    async def presence_add(self, hub_id: str, member: str) -> int:
        await self.redis.zadd(self._pkey(hub_id), {member: time.time()})
        return await self.presence_count(hub_id)

    async def presence_remove(self, hub_id: str, member: str) -> int:
        await self.redis.zrem(self._pkey(hub_id), member)
        return await self.presence_count(hub_id)

    async def presence_clear(self, hub_id: str) -> None:
        await self.redis.delete(self._pkey(hub_id))

    async def presence_refresh(self, members: dict[str, set[str]]) -> None:
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for hub_id, ms in members.items():
                if ms:
                    pipe.zadd(self._pkey(hub_id), dict.fromkeys(ms, now))
                pipe.zremrangebyscore(self._pkey(hub_id), "-inf", now - PRESENCE_TTL)
            await pipe.execute()


async def open_store(data_dir: Path | None, redis_url: str | None) -> SqliteStore | RedisStore:
    """The store for these options: Redis when a URL is given, else SQLite under `data_dir`.

    Raises:
        StoreError: neither is given, or Redis does not answer.
    """
    if redis_url:
        store = RedisStore(redis_url)
        try:
            await store.open()
        except Exception as e:
            await store.close()
            raise StoreError(f"redis at {redacted(redis_url)}: {e}") from None
        return store
    if data_dir is None:
        raise StoreError("the relay needs --data DIR (or --redis URL) to keep its hubs")
    sqlite_store = SqliteStore(data_dir)
    await sqlite_store.open()
    return sqlite_store
