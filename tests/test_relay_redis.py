"""Scale-out: two `botster relay` processes sharing a real `redis-server` act as one (issue 13).

A hub on relay A and a browser on relay B signal each other; hub records and token hashes live
in Redis (no SQLite store under --data); revoking a token closes its sockets on every relay.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.relayproc import (
    BROWSER_IDENTITY,
    CableClient,
    RelayProcess,
    ident,
    mint_token,
    redis_server,
    relay_cli,
)


async def test_hub_on_one_relay_and_browser_on_another_reach_each_other(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    async with redis_server(tmp_path) as url:
        data_a, data_b = tmp_path / "a", tmp_path / "b"
        data_a.mkdir()
        data_b.mkdir()
        relay_a = RelayProcess(data_a, redis_url=url)
        relay_b = RelayProcess(data_b, redis_url=url)
        await relay_a.start()
        try:
            await relay_b.start()
            try:
                await _scenario(url, relay_a, relay_b)
            finally:
                await relay_b.stop_and_verify()
        finally:
            await relay_a.stop_and_verify()
        assert not list(data_a.glob("*.sqlite3*")) and not list(data_b.glob("*.sqlite3*"))


async def _scenario(url: str, a: RelayProcess, b: RelayProcess) -> None:
    token = await mint_token(a.data_dir, "hub", redis_url=url)
    async with aiohttp.ClientSession() as s:
        # Registered through A, the same hub is known to B with the same id.
        resp = await s.post(
            f"{a.url}/hubs",
            json={"identifier": "scale-hub"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 201
        hub_id = (await resp.json())["id"]
        resp = await s.post(
            f"{b.url}/hubs",
            json={"identifier": "scale-hub"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 200 and (await resp.json())["id"] == hub_id

    r = aioredis.from_url(url, decode_responses=True)
    try:
        keys = [k async for k in r.scan_iter(match="botster:relay:*")]
        dump = json.dumps({k: await _value(r, k) for k in keys})
    finally:
        await r.aclose()
    assert token not in dump and hashlib.sha256(token.encode()).hexdigest() in dump
    assert f"botster:relay:hub:{hub_id}" in keys

    hub_ch = ident("HubCommandChannel", hub_id=hub_id)
    br_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    async with CableClient.connect(b.url) as browser:
        await browser.subscribe(br_ch)
        assert (await browser.recv())["message"] == {"type": "health", "cli": "offline"}
        async with CableClient.connect(a.url, token=token, protocols=()) as hub:
            assert (await hub.subscribe(hub_ch))["type"] == "confirm_subscription"
            assert (await browser.recv())["message"] == {"type": "health", "cli": "online"}
            await browser.perform(br_ch, "signal", envelope={"t": 0, "b": "cHJla2V5", "k": "a2V5"})
            assert (await hub.recv())["message"] == {
                "type": "signal",
                "browser_identity": BROWSER_IDENTITY,
                "envelope": {"t": 0, "b": "cHJla2V5", "k": "a2V5"},
            }
            await hub.perform(
                hub_ch,
                "signal",
                browser_identity=BROWSER_IDENTITY,
                envelope={"t": 1, "b": "YW5zd2Vy"},
            )
            assert await browser.recv() == {
                "identifier": br_ch,
                "message": {"type": "signal", "envelope": {"t": 1, "b": "YW5zd2Vy"}},
            }
            # A second browser, on A this time, sees the hub online at once (presence in Redis).
            other = BROWSER_IDENTITY.replace("0001", "0002")
            async with CableClient.connect(a.url) as browser2:
                await browser2.subscribe(
                    ident("HubSignalingChannel", hub_id=hub_id, browser_identity=other)
                )
                assert (await browser2.recv())["message"] == {"type": "health", "cli": "online"}
                assert (await hub.recv())["message"] == {
                    "type": "bundle_request",
                    "browser_identity": other,
                }

            # Revoked through Redis: the hub's socket on A closes, the browser on B hears offline.
            await relay_cli("token", "--data", str(a.data_dir), "--redis", url, "--revoke", "hub")
            frames, close = await hub.closed(timeout=15)
            assert frames[-1]["reason"] == "unauthorized" and close.data == 4001
            assert (await browser.recv())["message"] == {"type": "health", "cli": "offline"}


async def _value(r: aioredis.Redis, key: str) -> object:
    kind = await r.type(key)
    if kind == "string":
        return await r.get(key)
    if kind == "hash":
        return await r.hgetall(key)
    if kind == "set":
        return sorted(await r.smembers(key))
    if kind == "zset":
        return await r.zrange(key, 0, -1)
    return kind


async def test_relay_without_reachable_redis_fails_clearly(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    from tests.servers import free_port

    port = await free_port()
    code, _, err = await relay_cli(
        "--port",
        "0",
        "--data",
        str(tmp_path),
        "--redis",
        f"redis://:secretpw@127.0.0.1:{port}/0",
        check=False,
    )
    assert code != 0 and "redis at" in err and "secretpw" not in err
