"""ICE servers from the relay, TURN, and reconnecting after the path breaks (issues 14 and 15).

The relay hands out STUN/TURN servers (``GET /hubs/<id>/webrtc``, coturn REST credentials);
the hub checks them (the relay is not trusted), caches them and builds its peer connections
with them. The TURN tests run a real coturn (``harness/turn_server.py``) inside the loopback-only
network namespace, a real ``botster relay`` configured with its secret, a real hub and the
Python test browser forced to relay-only ICE; they skip, saying why, without ``turnserver``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from botster.remote.relay_link import parse_ice_servers
from botster.remote.test_browser import RelaySignaller, SocketSignaller, TestBrowser
from botster.transports.client import HubConnection
from harness import wait_until
from harness.turn_server import turn_server, turn_server_binary
from tests.relayproc import RelayProcess, mint_token
from tests.test_socket import socket_of

needs_turn = pytest.mark.skipif(
    turn_server_binary() is None,
    reason="needs coturn's turnserver (Debian: apt-get install coturn)",
)

# Checking the relay's answer ------------------------------------------------------------------


def test_ice_answers_keep_stun_and_turn_urls_in_one_shape():
    body = {
        "ice_servers": [
            {"urls": "stun:stun.example.org:3478"},
            {
                "urls": ["turn:10.0.0.1:3478?transport=udp", "turns:t.example.org:5349"],
                "username": "1700000000:42",
                "credential": "c2VjcmV0",
                "credentialType": "password",  # extra keys are dropped, not passed on
            },
            {"urls": ["stun:[2001:db8::1]:3478"]},
        ]
    }
    assert parse_ice_servers(body) == [
        {"urls": ["stun:stun.example.org:3478"]},
        {
            "urls": ["turn:10.0.0.1:3478?transport=udp", "turns:t.example.org:5349"],
            "username": "1700000000:42",
            "credential": "c2VjcmV0",
        },
        {"urls": ["stun:[2001:db8::1]:3478"]},
    ]
    assert parse_ice_servers({"ice_servers": []}) == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "expected an object"),
        ({"ice_servers": "stun:x"}, "expected an object"),
        ({"ice_servers": [{"urls": "http://evil.example/"}]}, "not a stun:"),
        ({"ice_servers": [{"urls": "javascript:alert(1)"}]}, "not a stun:"),
        ({"ice_servers": [{"urls": "stun:evil.example?transport=udp"}]}, "takes no transport"),
        ({"ice_servers": [{"urls": "stun:x.example:99999"}]}, "port out of range"),
        ({"ice_servers": [{"urls": "stun:x.example:3478\n"}]}, "not a stun:"),
        ({"ice_servers": [{"urls": "turn:t.example"}]}, "without username and credential"),
        ({"ice_servers": [{"urls": []}]}, "expected a URL"),
        ({"ice_servers": [{"urls": ["stun:a"] * 9}]}, "expected a URL"),
        ({"ice_servers": [{"urls": "stun:a"}] * 9}, "more than 8"),
        ({"ice_servers": ["stun:a"]}, "expected an object"),
        (
            {"ice_servers": [{"urls": "turn:t", "username": "u\x00", "credential": "c"}]},
            "printable",
        ),
        (
            {"ice_servers": [{"urls": "turn:t", "username": "u", "credential": 7}]},
            "printable",
        ),
        ({"ice_servers": [{"urls": "stun:" + "a" * 600}]}, "expected URL strings"),
    ],
)
def test_hostile_ice_answers_are_refused_saying_why(body: Any, why: str):
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_ice_servers(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


@given(
    st.one_of(
        _json,
        st.fixed_dictionaries({"ice_servers": st.lists(_json, max_size=3)}),
        st.fixed_dictionaries(
            {
                "ice_servers": st.lists(
                    st.fixed_dictionaries(
                        {"urls": st.one_of(st.text(max_size=60), st.lists(st.text(max_size=60)))},
                        optional={"username": _json, "credential": _json},
                    ),
                    max_size=3,
                )
            }
        ),
    )
)
def test_any_ice_answer_is_either_refused_or_safe(body: Any):
    try:
        servers = parse_ice_servers(body)
    except ValueError:
        return
    for server in servers:
        assert set(server) <= {"urls", "username", "credential"}
        for url in server["urls"]:
            assert re.fullmatch(r"(stun|turns?):[A-Za-z0-9.\-\[\]:]+(\?transport=(udp|tcp))?", url)


# A hostile relay ---------------------------------------------------------------------------

SPAWN_PLUGIN = """
require("lib.commands").register("test.spawn", function(args)
  local h = assert(pty.spawn({cmd = "sh", args = {"-c", args.script}, rows = 24, cols = 80}))
  return h:id()
end)
events.on("relay_registered", function(d) log.info("RESULT registered " .. json.encode(d.server_id)) end)
"""


class _HostileRelay:
    """Registers the hub like a relay, then answers ICE requests with whatever it is told."""

    def __init__(self) -> None:
        self.ice: list[Any] = []
        self.asked = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hubs", self._register)
        app.router.add_put("/hubs/{id}", self._put)
        app.router.add_get("/hubs/{id}/webrtc", self._webrtc)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _register(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "h1", "identifier": "x"}, status=201)

    async def _put(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    async def _webrtc(self, request: web.Request) -> web.StreamResponse:
        self.asked += 1
        answer = self.ice[min(self.asked, len(self.ice)) - 1]
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type="application/json")
        return web.json_response(answer)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_a_hostile_relays_ice_answers_are_logged_once_and_ignored(hub, netns):
    if netns:
        return
    relay = _HostileRelay()
    relay.ice = [
        {"ice_servers": [{"urls": ["http://evil.example/"]}]},
        b"x" * (100 << 10),  # too big to read
        {"ice_servers": [{"urls": "stun:evil.example", "credential": "\x1b[2J"}]},
        {"ice_servers": []},
    ]
    await relay.start()
    env = {
        "BOTSTER_SERVER_URL": relay.url,
        "BOTSTER_TOKEN": "t",
        "BOTSTER_ICE_FRESH_S": "0",  # every offer asks again
    }
    proc = await hub(plugins={"p": SPAWN_PLUGIN}, env=env)
    assert await proc.result("registered", timeout=30) == "h1"
    # Prefetched after registration: refused, logged.
    await proc.wait_for(r"ICE servers ignored: .*not a stun:, turn: or turns: URL", timeout=30)
    conn = await HubConnection.connect(socket_of(proc), "test")
    code = await conn.request("connection.code")
    browser = TestBrowser(code["url"], SocketSignaller(conn))
    # Each offer asks again; the hostile answers change nothing: the offers are answered with
    # no ICE servers at all (the hub's own addresses only), and the warning is not repeated.
    await browser.connect()
    assert "typ relay" not in browser.answer_sdp
    assert (await browser.request("ping", {"echo": 1}))["echo"] == 1
    await browser.connect()
    assert relay.asked == 3
    assert len(re.findall(r"ICE servers ignored", "\n".join(proc.lines))) == 1
    # A good answer is taken, and said so.
    await browser.connect()
    assert relay.asked == 4
    await proc.wait_for(r"ICE servers: none")
    await browser.close()
    await conn.close()
    await proc.stop_and_verify()
    await relay.stop()


# TURN ----------------------------------------------------------------------------------------


async def _relay_with_turn(tmp: Path, turn: Any) -> RelayProcess:
    data = tmp / "relay"
    data.mkdir()
    ice = {"turn": [turn.url], "turn_secret": turn.secret, "turn_ttl": 600}
    (data / "relay.json").write_text(json.dumps({"ice": ice}))
    return await RelayProcess(data).start()


async def _ice_servers(relay_url: str, server_id: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        resp = await s.get(f"{relay_url}/hubs/{server_id}/webrtc")
        return list((await resp.json())["ice_servers"])


def _screen(browser: TestBrowser, sid: str) -> bytes:
    return bytes(browser.screens.get(sid, b""))


@needs_turn
async def test_terminal_through_turn_and_back_after_the_path_breaks(hub, netns, tmp_path):
    if netns:
        return
    async with turn_server(tmp_path / "turn") as turn:
        relay = await _relay_with_turn(tmp_path, turn)
        try:
            token = await mint_token(relay.data_dir, "hub")
            env = {
                "BOTSTER_SERVER_URL": relay.url,
                "BOTSTER_TOKEN": token,
                "BOTSTER_ICE_FRESH_S": "0",
            }
            proc = await hub(plugins={"p": SPAWN_PLUGIN}, env=env)
            server_id = await proc.result("registered", timeout=30)
            await proc.wait_for(r"ICE servers: \['turn:127\.0\.0\.1:\d+\?transport=udp'\]")
            conn = await HubConnection.connect(socket_of(proc), "test")
            code = await conn.request("connection.code")
            servers = await _ice_servers(relay.url, server_id)
            assert servers[0]["username"].endswith(":" + server_id)

            # Signalling through the relay, media through TURN only (the browser gathers relay
            # candidates only; the hub, given the same TURN server, offers one too).
            signaller = RelaySignaller(relay.url, server_id)
            browser = TestBrowser(code["url"], signaller)
            await signaller.open(browser.identity)
            await wait_until(lambda: "online" in signaller.health, "the hub online at the relay")
            allocations = turn.allocations()
            await browser.connect(ice_servers=servers, relay_only=True)
            assert browser.path_kind() == "relayed"
            assert "typ relay" in browser.answer_sdp, "the hub gathered a TURN candidate"
            assert turn.allocations() >= allocations + 2, "both ends allocated on the TURN server"

            script = "while read l; do echo got:$l; done"
            sid = await browser.request("test.spawn", {"script": script})
            browser.attach(sid)
            browser.type(sid, b"one\n")
            await browser.wait_for(lambda: b"got:one" in _screen(browser, sid))

            # The path breaks: the TURN server goes away, and so does the relay (signalling now
            # runs over the hub socket, as without a relay). TURN comes back on the same port; the
            # browser restarts ICE with a new offer on the same Olm session (no new bundle), and
            # the hub, asking the relay in vain, keeps its last good TURN servers.
            await turn.stop()
            await relay.stop_and_verify()
            await signaller.close()
            await turn.start()
            browser.signaller = SocketSignaller(conn)
            bundles = browser.bundles_received
            await browser.connect(ice_servers=servers, relay_only=True)
            assert browser.bundles_received == bundles
            assert browser.path_kind() == "relayed"
            assert "typ relay" in browser.answer_sdp, "the stale TURN servers were used"
            await proc.wait_for(r"ICE servers ignored: ")
            await proc.wait_for(r"closed: replaced by a new offer")
            # Re-attached: the same screen, and the terminal goes on where it was.
            browser.attach(sid)
            await browser.wait_for(lambda: b"got:one" in _screen(browser, sid))
            browser.type(sid, b"two\n")
            await browser.wait_for(lambda: b"got:two" in _screen(browser, sid))
            await browser.close()
            await conn.close()
            await proc.stop_and_verify()
        finally:
            relay.kill()  # when the test failed before stopping it
