"""`botster relay` as a real process: REST, ActionCable frames, channels, auth, revocation,
rate limits, hostile frames, ICE settings, static files (issue 13)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.relayproc import (
    BROWSER_IDENTITY,
    CableClient,
    RelayProcess,
    ident,
    mint_token,
    relay_cli,
)

HUB_IDENT = "hub-identifier-0001"


@pytest.fixture
async def relay(tmp_path: Path, isolated_env: dict[str, str]) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await relay(settings=None, *flags)`` → a started RelayProcess."""
    started: list[RelayProcess] = []

    async def start(
        *flags: str,
        settings: dict[str, Any] | None = None,
        data: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> RelayProcess:
        data_dir = data or tmp_path / f"relay{len(started)}"
        data_dir.mkdir(exist_ok=True)
        if settings is not None:
            (data_dir / "relay.json").write_text(json.dumps(settings))
        proc = RelayProcess(data_dir, *flags, env=env)
        started.append(proc)
        await proc.start()
        return proc

    yield start
    for proc in started:
        await proc.stop_and_verify()


async def register(url: str, token: str, identifier: str = HUB_IDENT) -> str:
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{url}/hubs", json={"identifier": identifier}, headers=_auth(token))
        assert r.status in (200, 201), await r.text()
        return (await r.json())["id"]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- REST --------------------------------------------------------------------------------------


async def test_rest_registration_same_id_and_owner_checks(relay: Callable[..., Any]) -> None:
    r = await relay()
    t1 = await mint_token(r.data_dir, "one")
    t2 = await mint_token(r.data_dir, "two")
    assert t1.startswith("btstr_") and t1 != t2
    async with aiohttp.ClientSession() as s:
        first = await s.post(
            f"{r.url}/hubs", json={"identifier": HUB_IDENT, "name": "x"}, headers=_auth(t1)
        )
        assert first.status == 201
        body = await first.json()
        assert body["identifier"] == HUB_IDENT and isinstance(body["id"], str)
        again = await s.post(f"{r.url}/hubs", json={"identifier": HUB_IDENT}, headers=_auth(t1))
        assert again.status == 200 and (await again.json())["id"] == body["id"]
        other = await s.post(f"{r.url}/hubs", json={"identifier": HUB_IDENT}, headers=_auth(t2))
        assert other.status == 201 and (await other.json())["id"] != body["id"]

        # No token, a wrong token, a malformed body: refused with a JSON reason.
        for headers, payload, status in (
            ({}, {"identifier": "a"}, 401),
            (_auth("btstr_" + "x" * 43), {"identifier": "a"}, 401),
            ({"Authorization": "Basic abc"}, {"identifier": "a"}, 401),
            (_auth(t1), {"identifier": ""}, 400),
            (_auth(t1), {"identifier": "x" * 257}, 400),
            (_auth(t1), {"identifier": "a\nb"}, 400),
            (_auth(t1), {"identifier": 5}, 400),
            (_auth(t1), [1, 2], 400),
        ):
            resp = await s.post(f"{r.url}/hubs", json=payload, headers=headers)
            assert resp.status == status, (headers, payload, await resp.text())
            assert "error" in await resp.json()
        for raw in (b"{not json", b"[" * 5000 + b"]" * 5000, b"\xff\xfe"):
            resp = await s.post(f"{r.url}/hubs", data=raw, headers=_auth(t1))
            assert resp.status == 400, raw[:10]
        resp = await s.post(f"{r.url}/hubs", data=b"x" * 100_000, headers=_auth(t1))
        assert resp.status == 413

        listed = await (await s.get(f"{r.url}/hubs", headers=_auth(t1))).json()
        assert [h["id"] for h in listed] == [body["id"]] and listed[0]["active"] is False

        put = await s.put(f"{r.url}/hubs/{body['id']}", json={"alive": False}, headers=_auth(t1))
        assert put.status == 200
        assert await put.json() == {"success": True, "hub_id": body["id"]}
        # Another token's hub is not yours to update, and looks like it does not exist.
        put = await s.put(f"{r.url}/hubs/{body['id']}", json={"alive": False}, headers=_auth(t2))
        assert put.status == 404
        put = await s.put(f"{r.url}/hubs/{body['id']}", json={"alive": "no"}, headers=_auth(t1))
        assert put.status == 400

        ice = await s.get(f"{r.url}/hubs/{body['id']}/webrtc")
        assert ice.status == 200 and await ice.json() == {"ice_servers": []}
        assert (await s.get(f"{r.url}/hubs/0123456789abcdef/webrtc")).status == 404
        health = await s.get(f"{r.url}/healthz")
        assert (await health.json())["ok"] is True


async def test_tokens_are_stored_hashed_and_revocable_by_name_or_value(
    relay: Callable[..., Any],
) -> None:
    r = await relay()
    token = await mint_token(r.data_dir, "laptop")
    raw = b"".join(p.read_bytes() for p in r.data_dir.glob("relay.sqlite3*"))
    assert token.encode() not in raw
    db = sqlite3.connect(r.data_dir / "relay.sqlite3")
    try:
        rows = db.execute("SELECT hash, name FROM tokens").fetchall()
    finally:
        db.close()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), "laptop")]

    code, _, err = await relay_cli(
        "token", "--data", str(r.data_dir), "--name", "laptop", check=False
    )
    assert code != 0 and "exists" in err
    _, out, _ = await relay_cli("token", "--data", str(r.data_dir), "--list")
    assert out.split() == ["laptop"]
    await relay_cli("token", "--data", str(r.data_dir), "--revoke", token)
    code, _, err = await relay_cli(
        "token", "--data", str(r.data_dir), "--revoke", "laptop", check=False
    )
    assert code != 0 and "no such token" in err
    async with aiohttp.ClientSession() as s:
        resp = await s.post(f"{r.url}/hubs", json={"identifier": "a"}, headers=_auth(token))
        assert resp.status == 401


async def test_ice_servers_from_settings_with_coturn_rest_credentials(
    relay: Callable[..., Any],
) -> None:
    secret = "coturn-static-auth-secret"
    r = await relay(
        settings={
            "ice": {
                "stun": ["stun:stun.example.org:3478"],
                "turn": ["turn:turn.example.org:3478?transport=udp"],
                "turn_secret": secret,
                "turn_ttl": 600,
            }
        }
    )
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    before = int(time.time())
    async with aiohttp.ClientSession() as s:
        servers = (await (await s.get(f"{r.url}/hubs/{hub_id}/webrtc")).json())["ice_servers"]
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp"]
    expiry, _, user = turn["username"].partition(":")
    assert user == hub_id and before + 600 <= int(expiry) <= int(time.time()) + 600
    mac = hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(mac).decode()


async def test_ice_flags_override_and_bad_settings_fail_clearly(
    relay: Callable[..., Any], tmp_path: Path
) -> None:
    r = await relay("--stun", "stun:a.example:3478", "--stun", "stun:b.example:3478")
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    async with aiohttp.ClientSession() as s:
        body = await (await s.get(f"{r.url}/hubs/{hub_id}/webrtc")).json()
    assert body == {"ice_servers": [{"urls": ["stun:a.example:3478", "stun:b.example:3478"]}]}

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "relay.json").write_text(json.dumps({"limits": {"cable_per_conection": [1, 1]}}))
    code, _, err = await relay_cli("--port", "0", "--data", str(bad), check=False)
    assert code != 0 and "limits.cable_per_conection: unknown" in err
    # Only stun: and turn:/turns: URLs: hubs and browsers would drop the whole answer.
    (bad / "relay.json").write_text(json.dumps({"ice": {"turn": ["http://evil.example/"]}}))
    code, _, err = await relay_cli("--port", "0", "--data", str(bad), check=False)
    assert code != 0 and "ice.turn: expected turn:... or turns:..." in err
    code, _, err = await relay_cli(
        "--port", "0", "--data", str(tmp_path), "--stun", "turn:x.example", check=False
    )
    assert code != 0 and "ice.stun: expected stun:..." in err


async def test_pairing_page_and_static_files_stay_in_the_static_dir(
    relay: Callable[..., Any],
) -> None:
    r = await relay()
    async with aiohttp.ClientSession() as s:
        page = await s.get(f"{r.url}/hubs/0123456789abcdef/pairing")
        assert page.status == 200
        text = await page.text()
        assert ("web app is not built" in text and "make web" in text) or "<script" in text
        for path in (
            "/../pyproject.toml",
            "/%2e%2e/%2e%2e/pyproject.toml",
            "/..%2fserver.py",
            "/nope.js",
        ):
            resp = await s.get(r.url + path)
            assert resp.status == 404, path


# -- ActionCable -----------------------------------------------------------------------------


async def test_welcome_ping_subprotocol_and_identifier_echoed_byte_for_byte(
    relay: Callable[..., Any],
) -> None:
    r = await relay()
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    # Key order, spacing and escapes that a re-serialising server would change.
    odd = '{ "hub_id":"' + hub_id + '" ,"channel" : "HubCommandChannel","x":"\\u00e9"}'
    async with CableClient.connect(r.url, token=token, protocols=()) as hub:
        assert hub.ws.protocol is None  # the hub's client offers none and is still served
        await hub.send({"command": "subscribe", "identifier": odd})
        raw = await hub.recv_raw()
        assert json.loads(raw.data) == {"identifier": odd, "type": "confirm_subscription"}
        ping = await hub.recv(pings=True, timeout=10)
        assert ping["type"] == "ping" and isinstance(ping["message"], int)
        assert abs(ping["message"] - time.time()) < 30
    async with CableClient.connect(r.url) as browser:
        assert browser.ws.protocol == "actioncable-v1-json"
    async with aiohttp.ClientSession() as s:
        # Offered permessage-deflate (as browsers do), the relay declines it.
        ws = await s.ws_connect(r.ws_url, compress=15, protocols=("actioncable-v1-json",))
        assert ws.compress == 0
        assert json.loads((await ws.receive()).data) == {"type": "welcome"}
        await ws.close()


async def test_signalling_between_browser_and_hub_and_health(relay: Callable[..., Any]) -> None:
    r = await relay(env={"BOTSTER_LOG": "debug"})
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    hub_ch = ident("HubCommandChannel", hub_id=hub_id)
    br_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    async with CableClient.connect(r.url) as browser:
        # Hub not connected yet: the browser learns it is offline.
        assert await browser.subscribe(br_ch) == {
            "identifier": br_ch,
            "type": "confirm_subscription",
        }
        assert await browser.recv() == {
            "identifier": br_ch,
            "message": {"type": "health", "cli": "offline"},
        }
        async with CableClient.connect(r.url, token=token, protocols=()) as hub:
            assert (await hub.subscribe(hub_ch))["type"] == "confirm_subscription"
            assert await browser.recv() == {
                "identifier": br_ch,
                "message": {"type": "health", "cli": "online"},
            }
            await browser.perform(br_ch, "request_bundle")
            assert await hub.recv() == {
                "identifier": hub_ch,
                "message": {"type": "bundle_request", "browser_identity": BROWSER_IDENTITY},
            }
            envelope = {"t": 0, "b": "b2xtIHByZWtleQ-ENVELOPE-MARKER", "k": "a2V5"}
            await browser.perform(br_ch, "signal", envelope=envelope)
            assert await hub.recv() == {
                "identifier": hub_ch,
                "message": {
                    "type": "signal",
                    "browser_identity": BROWSER_IDENTITY,
                    "envelope": envelope,
                },
            }
            reply = {"t": 1, "b": "bm9ybWFs-REPLY-MARKER"}
            await hub.perform(hub_ch, "signal", browser_identity=BROWSER_IDENTITY, envelope=reply)
            assert await browser.recv() == {
                "identifier": br_ch,
                "message": {"type": "signal", "envelope": reply},
            }
            await hub.perform(hub_ch, "heartbeat")
            async with aiohttp.ClientSession() as s:
                listed = await (await s.get(f"{r.url}/hubs", headers=_auth(token))).json()
            assert listed[0]["active"] is True and listed[0]["alive"] is True
            # Minting a token beside the running relay leaves its hubs' state alone.
            await mint_token(r.data_dir, "another")
            async with aiohttp.ClientSession() as s:
                listed = await (await s.get(f"{r.url}/hubs", headers=_auth(token))).json()
            assert listed[0]["alive"] is True

            # A second browser subscribing gets the health now, and the hub a bundle_request.
            other = BROWSER_IDENTITY.replace("tab-0001", "tab-0002")
            br2_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=other)
            async with CableClient.connect(r.url) as browser2:
                assert (await browser2.subscribe(br2_ch))["type"] == "confirm_subscription"
                assert (await browser2.recv())["message"] == {"type": "health", "cli": "online"}
                assert (await hub.recv())["message"] == {
                    "type": "bundle_request",
                    "browser_identity": other,
                }
                # A signal for browser 2 never reaches browser 1: browser 1's next frame is
                # the marker sent after it.
                await hub.perform(
                    hub_ch, "signal", browser_identity=other, envelope={"t": 1, "b": "two"}
                )
                assert (await browser2.recv())["message"]["envelope"] == {"t": 1, "b": "two"}
            await hub.perform(
                hub_ch, "signal", browser_identity=BROWSER_IDENTITY, envelope={"marker": 1}
            )
            assert (await browser.recv())["message"]["envelope"] == {"marker": 1}
        # The hub's socket went: offline.
        assert await browser.recv() == {
            "identifier": br_ch,
            "message": {"type": "health", "cli": "offline"},
        }

        # PUT alive=false also says offline, before the socket drops.
        async with CableClient.connect(r.url, token=token, protocols=()) as hub:
            await hub.subscribe(hub_ch)
            assert (await browser.recv())["message"]["cli"] == "online"
            async with aiohttp.ClientSession() as s:
                await s.put(f"{r.url}/hubs/{hub_id}", json={"alive": False}, headers=_auth(token))
            assert (await browser.recv())["message"]["cli"] == "offline"

    # Envelopes pass through and stay nowhere: not in the log (at debug), not in the store.
    await r.stop_and_verify()
    stored = b"".join(p.read_bytes() for p in r.data_dir.iterdir() if p.is_file())
    for marker in ("ENVELOPE-MARKER", "REPLY-MARKER"):
        assert marker not in r.log and marker.encode() not in stored
    assert f"hub {hub_id} online" in r.log  # the log was captured


async def test_unsubscribe_silences_the_identifier(relay: Callable[..., Any]) -> None:
    r = await relay()
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    hub_ch = ident("HubCommandChannel", hub_id=hub_id)
    br_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    async with (
        CableClient.connect(r.url, token=token) as hub,
        CableClient.connect(r.url) as browser,
    ):
        await hub.subscribe(hub_ch)
        await browser.subscribe(br_ch)
        await browser.recv()  # health
        await hub.recv()  # bundle_request
        await browser.send({"command": "unsubscribe", "identifier": br_ch})
        await hub.perform(
            hub_ch, "signal", browser_identity=BROWSER_IDENTITY, envelope={"t": 1, "b": "x"}
        )
        # Re-subscribe under another identifier string (same params): the first delivery it
        # sees is its own health, so nothing queued for the old identifier came before it.
        br_ch2 = json.dumps(
            {
                "browser_identity": BROWSER_IDENTITY,
                "hub_id": hub_id,
                "channel": "HubSignalingChannel",
            }
        )
        frame = await browser.subscribe(br_ch2)
        assert frame == {"identifier": br_ch2, "type": "confirm_subscription"}
        assert await browser.recv() == {
            "identifier": br_ch2,
            "message": {"type": "health", "cli": "online"},
        }


async def test_subscriptions_are_rejected_without_the_right_token_or_params(
    relay: Callable[..., Any],
) -> None:
    r = await relay()
    t1 = await mint_token(r.data_dir, "one")
    t2 = await mint_token(r.data_dir, "two")
    hub1 = await register(r.url, t1)
    rejected = [
        (None, ident("HubCommandChannel", hub_id=hub1)),  # a browser cannot be the hub
        (t2, ident("HubCommandChannel", hub_id=hub1)),  # another token's hub
        (t1, ident("HubCommandChannel", hub_id="0123456789abcdef")),
        (t1, ident("HubCommandChannel")),
        (None, ident("HubSignalingChannel", hub_id=hub1)),
        (None, ident("HubSignalingChannel", hub_id=hub1, browser_identity="no-colon")),
        (None, ident("HubSignalingChannel", hub_id=hub1, browser_identity="a:b:c:d")),
        (
            None,
            ident(
                "HubSignalingChannel", hub_id="0123456789abcdef", browser_identity=BROWSER_IDENTITY
            ),
        ),
        (None, ident("NoSuchChannel")),
        (None, "not json"),
        (None, "[1, 2]"),
    ]
    for token, identifier in rejected:
        async with CableClient.connect(r.url, token=token) as c:
            frame = await c.subscribe(identifier)
            assert frame == {"identifier": identifier, "type": "reject_subscription"}, (
                token,
                identifier,
            )
            # The socket stays usable after a rejection.
            ok = ident("HubSignalingChannel", hub_id=hub1, browser_identity=BROWSER_IDENTITY)
            assert (await c.subscribe(ok))["type"] == "confirm_subscription"
    # A wrong Bearer token is refused at the handshake.
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        async with CableClient.connect(r.url, token="btstr_" + "y" * 43):
            pass
    assert e.value.status == 401


async def test_revoking_a_token_closes_its_hub_sockets(relay: Callable[..., Any]) -> None:
    r = await relay()
    token = await mint_token(r.data_dir, "doomed")
    keep = await mint_token(r.data_dir, "kept")
    hub_id = await register(r.url, token)
    kept_id = await register(r.url, keep, "other-hub")
    hub_ch = ident("HubCommandChannel", hub_id=hub_id)
    br_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    async with (
        CableClient.connect(r.url, token=token) as hub,
        CableClient.connect(r.url, token=keep) as other,
        CableClient.connect(r.url) as browser,
    ):
        await hub.subscribe(hub_ch)
        await other.subscribe(ident("HubCommandChannel", hub_id=kept_id))
        await browser.subscribe(br_ch)
        assert (await browser.recv())["message"]["cli"] == "online"
        await relay_cli("token", "--data", str(r.data_dir), "--revoke", "doomed")
        frames, close = await hub.closed(timeout=15)
        assert frames[-1] == {
            "type": "disconnect",
            "reason": "unauthorized",
            "reconnect": False,
            "detail": "token revoked",
        }
        assert close.type == aiohttp.WSMsgType.CLOSE and close.data == 4001
        assert (await browser.recv())["message"]["cli"] == "offline"
        # The other token's hub is untouched: a round trip on it still works.
        await other.perform(ident("HubCommandChannel", hub_id=kept_id), "heartbeat")
        await other.send(
            {"command": "subscribe", "identifier": ident("HubCommandChannel", hub_id=kept_id)}
        )
        assert (await other.recv())["type"] == "confirm_subscription"
    with pytest.raises(aiohttp.WSServerHandshakeError):
        async with CableClient.connect(r.url, token=token):
            pass


# -- limits and hostile input ----------------------------------------------------------------


async def test_rate_limits_per_connection_per_address_and_rest(relay: Callable[..., Any]) -> None:
    r = await relay(
        settings={
            "limits": {
                "cable_per_connection": [1, 5],
                "rest_per_address": [1, 8],
                "connections_per_address": 3,
            }
        }
    )
    r.expect_log(r"over its rate limit")
    async with CableClient.connect(r.url) as c:
        # Far more than the limit, as fast as they go: the relay cuts the client while much of
        # it is unread, and must still close cleanly (a reset could lose the disconnect frame).
        for _ in range(300):
            try:
                await c.send({"command": "unsubscribe", "identifier": "{}"})
            except ConnectionResetError:
                break  # the relay closed the socket before the client had sent everything
        frames, close = await c.closed()
        assert frames == [
            {
                "type": "disconnect",
                "reason": "rate_limited",
                "reconnect": True,
                "detail": "too many messages",
            }
        ]
        assert close.data == 1008
    async with (
        CableClient.connect(r.url) as a,
        CableClient.connect(r.url) as b,
        CableClient.connect(r.url) as c,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            async with CableClient.connect(r.url):
                pass
        assert e.value.status == 429
        assert not (a.ws.closed or b.ws.closed or c.ws.closed)
    # A burst of 8, then one request a second: how many pass depends on how long the burst
    # took on this machine, never fewer than 8 and never unbounded.
    async with aiohttp.ClientSession() as s:
        started, statuses = time.monotonic(), []
        while 429 not in statuses and len(statuses) < 100:
            statuses.append((await s.get(f"{r.url}/healthz")).status)
        elapsed = time.monotonic() - started
    assert statuses[-1] == 429, statuses
    assert 8 <= statuses.index(429) <= 8 + int(elapsed) + 1, (statuses, elapsed)


async def test_cable_rate_limit_per_address_spans_connections(relay: Callable[..., Any]) -> None:
    r = await relay(settings={"limits": {"cable_per_address": [0.001, 6]}})
    r.expect_log(r"over its rate limit")
    async with CableClient.connect(r.url) as a, CableClient.connect(r.url) as b:
        # Four messages from a (the reply to the last proves all four were counted), then
        # three from b: b's third is the address's seventh, over a burst of six.
        for _ in range(3):
            await a.send({"command": "unsubscribe", "identifier": "{}"})
        assert (await a.subscribe("nope"))["type"] == "reject_subscription"
        for _ in range(2):
            await b.send({"command": "unsubscribe", "identifier": "{}"})
        await b.send({"command": "subscribe", "identifier": "nope"})
        frames, _ = await b.closed()
        assert frames[-1]["reason"] == "rate_limited"
        assert not a.ws.closed


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ("not json", "frame is not JSON"),
        ("[1,2]", "frame is not a JSON object"),
        ('{"command":"explode","identifier":"{}"}', "unknown command 'explode'"),
        (
            '{"command":"subscribe","identifier":{"channel":"x"}}',
            "identifier: expected a JSON string",
        ),
        ('{"command":"subscribe"}', "identifier: expected a JSON string"),
        (
            '{"command":"message","identifier":"{}","data":{"action":"x"}}',
            "data: expected a JSON string",
        ),
        ('{"command":"message","identifier":"{}","data":"{oops"}', "data is not JSON"),
        (
            '{"command":"message","identifier":"{}","data":"{\\"no\\":1}"}',
            'expected a JSON object with a string "action"',
        ),
        ('{"command":"subscribe","identifier":"' + "x" * 2000 + '"}', "longer than 1024"),
        ("[" * 5000 + "]" * 5000, "frame is not JSON"),
        (
            json.dumps({"command": "message", "identifier": "{}", "data": "[" * 5000 + "]" * 5000}),
            "data is not JSON",
        ),
    ],
)
async def test_malformed_frames_get_a_disconnect_with_a_reason(
    relay: Callable[..., Any], frame: str, detail: str
) -> None:
    r = await relay()
    async with CableClient.connect(r.url) as c:
        await c.ws.send_str(frame)
        frames, close = await c.closed()
        assert frames[-1]["type"] == "disconnect" and frames[-1]["reason"] == "invalid_request"
        assert detail in frames[-1]["detail"] and frames[-1]["reconnect"] is False
        assert close.data == 1008


async def test_huge_and_binary_frames_close_the_socket(relay: Callable[..., Any]) -> None:
    r = await relay()
    async with CableClient.connect(r.url) as c:
        await c.ws.send_str("x" * 70_000)
        _, close = await c.closed()
        assert close.data == 1009  # message too big
    async with CableClient.connect(r.url) as c:
        await c.ws.send_bytes(b"\x00\x01")
        frames, close = await c.closed()
        assert frames[-1]["detail"] == "binary frames are not part of the protocol"


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)


_json = st.recursive(
    _json_scalars,
    _containers,
    max_leaves=10,
)
_frames = st.one_of(
    st.text(max_size=200),
    _json.map(json.dumps),
    st.builds(
        lambda c, i, d: json.dumps({"command": c, "identifier": i, "data": d}),
        st.sampled_from(["subscribe", "unsubscribe", "message", "x"]),
        st.one_of(_json.map(json.dumps), st.text(max_size=40), _json),
        st.one_of(_json.map(json.dumps), _json),
    ),
    st.builds(
        lambda ch, p: json.dumps(
            {"command": "subscribe", "identifier": json.dumps({"channel": ch, **p})}
        ),
        st.sampled_from(["HubCommandChannel", "HubSignalingChannel"]),
        st.dictionaries(
            st.sampled_from(["hub_id", "browser_identity", "start_from"]), _json, max_size=3
        ),
    ),
)


async def test_hostile_frames_never_crash_the_relay(relay: Callable[..., Any]) -> None:
    r = await relay(
        settings={
            "limits": {"cable_per_connection": [1000, 1000], "connects_per_address": [1000, 1000]}
        }
    )
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    good = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    outcomes: list[str] = []

    async def one(frames: list[str]) -> None:
        async with CableClient.connect(r.url, token=token) as c:
            try:
                for f in frames:
                    await c.ws.send_str(f)
                # Either the relay closes with a reason, or the socket still works: a subscribe
                # is answered (this round trip also flushes every reply to the frames above).
                await c.ws.send_str(json.dumps({"command": "subscribe", "identifier": good}))
            except ConnectionResetError:
                pass  # the relay closed already; what it said is read below
            while True:
                msg = await c.recv_raw()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    # A clear close; or, when the client was still sending as the relay
                    # closed, a reset the client sees as CLOSED.
                    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
                    assert msg.type == aiohttp.WSMsgType.CLOSED or msg.data == 1008, msg
                    outcomes.append("closed")
                    return
                frame = json.loads(msg.data)
                if frame.get("type") == "disconnect":
                    assert frame["reason"] == "invalid_request" and frame["detail"], frame
                elif (
                    frame.get("identifier") == good and frame.get("type") == "confirm_subscription"
                ):
                    outcomes.append("open")
                    return

    loop = asyncio.get_running_loop()

    # hypothesis drives a sync function; it runs in a worker thread and hands each example to
    # this test's loop, where the sockets live.
    @settings(max_examples=80, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(_frames, min_size=1, max_size=4))
    def check(frames: list[str]) -> None:
        asyncio.run_coroutine_threadsafe(one(frames), loop).result(60)

    await loop.run_in_executor(None, check)
    assert "open" in outcomes and "closed" in outcomes
    async with aiohttp.ClientSession() as s:
        assert (await s.get(f"{r.url}/healthz")).status == 200


async def test_clients_hanging_up_mid_request_are_no_error(relay: Callable[..., Any]) -> None:
    """A phone losing its network mid-upgrade or mid-body is routine: an INFO line at most.

    The fixture's `stop_and_verify` fails on any ERROR or traceback in the relay's log.
    """
    r = await relay(env={"BOTSTER_LOG": "debug"})
    port = int(r.url.rsplit(":", 1)[1])
    upgrade = (
        b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    partial_body = (
        b"POST /hubs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer btstr_x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"identifier'
    )
    for request in (upgrade, partial_body) * 3:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
        finally:
            writer.close()
    await r.wait_for(r"went away during the WebSocket handshake")
    async with aiohttp.ClientSession() as s:
        assert (await s.get(f"{r.url}/healthz")).status == 200


# -- TLS, the in-process relay, the built web app ----------------------------------------------


async def test_tls_relay_serves_https_and_wss(relay: Callable[..., Any], tmp_path: Path) -> None:
    import ssl

    from tests.servers import _self_signed

    certs = tmp_path / "certs"
    certs.mkdir()
    _self_signed(certs)
    r = await relay("--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / "key.pem"))
    assert r.url.startswith("https://127.0.0.1:")
    client_ctx = ssl.create_default_context(cafile=str(certs / "cert.pem"))
    client_ctx.check_hostname = False
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as s:
        assert (await (await s.get(f"{r.url}/healthz")).json())["ok"] is True
        ws = await s.ws_connect(
            r.url.replace("https", "wss") + "/cable", protocols=("actioncable-v1-json",)
        )
        assert json.loads((await ws.receive()).data) == {"type": "welcome"}
        await ws.close()
    code, _, err = await relay_cli(
        "--port", "0", "--data", str(tmp_path), "--tls-cert", str(certs / "cert.pem"), check=False
    )
    assert code != 0 and "--tls-cert and --tls-key together" in err


async def test_start_relay_in_process_serves_the_built_web_app(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    from botster.relay.server import start_relay

    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><script src=/assets/app.js></script>")
    (static / "assets" / "app.js").write_text("console.log('app')")
    (tmp_path / "secret.txt").write_text("outside")
    (static / "escape.txt").symlink_to(tmp_path / "secret.txt")
    running = await start_relay("127.0.0.1", 0, tmp_path / "data", static_dir=static)
    stopped = False
    try:
        assert running.url == f"http://127.0.0.1:{running.port}"
        token = await running.create_token("embedded")
        hub_id = await register(running.url, token)
        async with aiohttp.ClientSession() as s:
            page = await s.get(f"{running.url}/hubs/{hub_id}/pairing")
            assert page.status == 200 and "/assets/app.js" in await page.text()
            assert page.headers["Cache-Control"] == "no-cache"
            asset = await s.get(f"{running.url}/assets/app.js")
            assert asset.status == 200 and await asset.text() == "console.log('app')"
            assert "immutable" in asset.headers["Cache-Control"]
            assert (await s.get(f"{running.url}/escape.txt")).status == 404
            assert (await s.get(f"{running.url}/")).status == 200
            shell = await s.get(f"{running.url}/hubs/{hub_id}")
            assert shell.status == 200 and "/assets/app.js" in await shell.text()
        async with CableClient.connect(running.url, token=token) as hub:
            assert (await hub.subscribe(ident("HubCommandChannel", hub_id=hub_id)))[
                "type"
            ] == "confirm_subscription"
            stop_task = asyncio.ensure_future(running.stop())
            frames, close = await hub.closed()
            assert frames[-1]["reason"] == "server_restart" and frames[-1]["reconnect"] is True
            assert close.data == 1012
            await stop_task
            stopped = True
    finally:
        if not stopped:
            await running.stop()


async def test_a_socket_whose_queue_overflows_is_cut_not_the_relay(
    relay: Callable[..., Any],
) -> None:
    # A bound this small makes one large signal overflow the browser's queue at once, the
    # same path a browser that stops reading takes after max_outbound bytes.
    r = await relay(settings={"limits": {"max_outbound": 2048}})
    r.expect_log(r"reads too slowly")
    token = await mint_token(r.data_dir, "h")
    hub_id = await register(r.url, token)
    hub_ch = ident("HubCommandChannel", hub_id=hub_id)
    br_ch = ident("HubSignalingChannel", hub_id=hub_id, browser_identity=BROWSER_IDENTITY)
    async with (
        CableClient.connect(r.url, token=token) as hub,
        CableClient.connect(r.url) as browser,
    ):
        await hub.subscribe(hub_ch)
        await browser.subscribe(br_ch)
        assert (await browser.recv())["message"]["cli"] == "online"
        assert (await hub.recv())["message"]["type"] == "bundle_request"
        await hub.perform(
            hub_ch, "signal", browser_identity=BROWSER_IDENTITY, envelope={"t": 1, "b": "x" * 3000}
        )
        frames, close = await browser.closed()
        assert frames == [] and close.data == 1008 and close.extra == "slow consumer"
        await hub.perform(hub_ch, "heartbeat")
        assert (await hub.subscribe(hub_ch))["type"] == "confirm_subscription"


async def test_behind_a_proxy_limits_count_the_forwarded_address(relay: Callable[..., Any]) -> None:
    r = await relay(settings={"forwarded_for": True, "limits": {"connections_per_address": 1}})

    def via(addr: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"203.0.113.9, {addr}"}  # the proxy appends the peer last

    async with aiohttp.ClientSession() as s:
        first = await s.ws_connect(r.ws_url, headers=via("198.51.100.1"))
        second = await s.ws_connect(r.ws_url, headers=via("198.51.100.2"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await s.ws_connect(r.ws_url, headers=via("198.51.100.1"))
        assert e.value.status == 429
        await first.close()
        await second.close()
