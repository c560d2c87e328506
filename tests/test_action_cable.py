"""The hub side of the relay end to end: registration, ``hub.server_id()``, the token, the
``action_cable`` primitive and the embedded relay, against a real ``botster relay`` process
(``tests/hub_relay.py``) and real hubs.

The browser side of each conversation is ``CableClient``, a plain ActionCable client. A few
wire details the relay cannot show (the exact bytes the hub sends, re-subscribing when no
confirmation comes) are checked against ``recorder``, a loopback ActionCable endpoint that
records every frame it gets.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from botster.demo import _relay_line
from botster.primitives.action_cable import identifier_for
from tests.conftest import write_plugin
from tests.hub_relay import BROWSER, CableClient, RelayProcess
from tests.lua_prelude import assert_raised, report_raised
from tests.lua_prelude import plugin as lua_plugin
from tests.servers import free_port

# `when_registered(fn)`: fn(server_id) now if the hub is registered, else on the event.
HELPERS = """
local function when_registered(fn)
  local sid = hub.server_id()
  if sid then return fn(sid) end
  local sub
  sub = events.on("relay_registered", function(d) events.off(sub); fn(d.server_id) end)
end
"""


def plugin(body: str, **values: str) -> str:
    return lua_plugin(HELPERS + body, **values)


@pytest.fixture
async def relay(tmp_path: Path, isolated_env: dict[str, str]) -> AsyncIterator[RelayProcess]:
    proc = RelayProcess(tmp_path / "relay-data", {**os.environ, **isolated_env})
    yield proc
    await proc.stop()


async def relay_with_token(relay: RelayProcess) -> tuple[str, dict[str, str]]:
    """Mints a token, starts the relay; returns (token, the env a hub needs to use it)."""
    token = await relay.mint_token("test-hub")
    await relay.start()
    return token, {"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": token}


# Registration, server_id, the token -------------------------------------------------------


async def test_registers_reports_server_id_and_unregisters_at_shutdown(
    relay: RelayProcess, hub: Any
) -> None:
    token, env = await relay_with_token(relay)
    proc = await hub(
        {
            "reg": plugin(
                """
report("at_load", {sid = hub.server_id() or "nil"})
when_registered(function(sid)
  report("registered", {sid = sid, now = hub.server_id()})
  report("config", config.all())
end)
"""
            )
        },
        env=env,
    )
    assert await proc.result("at_load") == {"sid": "nil"}
    got = await proc.result("registered", timeout=20)
    sid = got["sid"]
    assert re.fullmatch(r"[0-9a-f]{16}", sid) and got["now"] == sid
    # Same token and identifier: the relay hands out the same id (the hub sent its hub id).
    hub_id = (await proc.wait_for(r"hub id ([0-9a-f]{64})")).group(1)
    again = await relay.rest("POST", "/hubs", token, {"identifier": hub_id})
    assert again["id"] == sid
    # Mark it alive ourselves: only the hub's goodbye can make it false again.
    await relay.rest("PUT", f"/hubs/{sid}", token, {"alive": True})
    hubs = {h["id"]: h for h in await relay.rest("GET", "/hubs", token)}
    assert hubs[sid]["alive"] is True
    await proc.stop_and_verify()
    assert re.search(rf"unregistered {sid}", proc.log)
    hubs = {h["id"]: h for h in await relay.rest("GET", "/hubs", token)}
    assert hubs[sid]["alive"] is False
    # The token is in no log line and not in config.all().
    assert token not in proc.log
    assert token not in json.dumps(await proc.result("config"))


async def test_registration_retries_until_the_relay_comes_up(relay: RelayProcess, hub: Any) -> None:
    token = await relay.mint_token("late")
    relay.port = await free_port()
    proc = await hub(
        {"reg": plugin('when_registered(function(sid) report("registered", sid) end)')},
        env={"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": token},
    )
    await proc.wait_for(r"cannot register yet .*connection refused.*retrying in 1 s")
    await relay.start()
    sid = await proc.result("registered", timeout=30)
    assert re.fullmatch(r"[0-9a-f]{16}", sid)


async def test_bad_token_is_refused_and_the_hub_runs_on(relay: RelayProcess, hub: Any) -> None:
    await relay.start()
    proc = await hub(
        {"reg": plugin('report("sid", {sid = hub.server_id() or "nil"})')},
        env={"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": "btstr_not-a-real-token"},
    )
    await proc.wait_for(r"registration refused: HTTP 401")
    assert await proc.result("sid") == {"sid": "nil"}
    assert "btstr_not-a-real-token" not in proc.log


async def test_login_stores_url_and_token_and_the_hub_uses_them(
    relay: RelayProcess, hub: Any, isolated_env: dict[str, str]
) -> None:
    token, _ = await relay_with_token(relay)
    home = Path(isolated_env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps({"lua_slow_step_ms": 500}))
    env = {**os.environ, **isolated_env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botster.cli",
            "login",
            "--server",
            relay.url + "/",
            "--token",
            token,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    tokens_file = home / "relay_tokens.json"
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert json.loads(tokens_file.read_text()) == {relay.url: token}
    config = json.loads((home / "config.json").read_text())
    assert config["server_url"] == relay.url and token not in json.dumps(config)
    # No BOTSTER_TOKEN, no BOTSTER_SERVER_URL: the hub finds both where login put them.
    proc = await hub(
        {"reg": plugin('when_registered(function(sid) report("registered", sid) end)')},
        config=config,
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    assert re.fullmatch(r"[0-9a-f]{16}", await proc.result("registered", timeout=20))
    assert token not in proc.log


async def test_login_uses_the_keyring_when_it_has_a_backend(
    relay: RelayProcess, hub: Any, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    token, _ = await relay_with_token(relay)
    store = tmp_path / "keyring.json"
    env = {
        **os.environ,
        **isolated_env,
        "PYTHON_KEYRING_BACKEND": "tests.keyring_backend.FileKeyring",
        "TEST_KEYRING_FILE": str(store),
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    done = subprocess.run(
        [sys.executable, "-m", "botster.cli", "login", "--server", relay.url, "--token", token],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "token stored in keyring" in done.stdout
    assert json.loads(store.read_text()) == {f"botster-relay/{relay.url}": token}
    assert not (Path(isolated_env["BOTSTER_HOME"]) / "relay_tokens.json").exists()
    proc = await hub(
        {"reg": plugin('when_registered(function(sid) report("registered", sid) end)')},
        config={"lua_slow_step_ms": 500, "server_url": relay.url},
        env={k: env[k] for k in ("PYTHON_KEYRING_BACKEND", "TEST_KEYRING_FILE", "PYTHONPATH")},
    )
    assert re.fullmatch(r"[0-9a-f]{16}", await proc.result("registered", timeout=20))


async def test_no_relay_configured(hub: Any) -> None:
    proc = await hub(
        {
            "none": plugin(
                """
report_all("connect", action_cable.connect())
report_all("crypto", action_cable.connect({crypto = true}))
report("sid", {sid = hub.server_id() or "nil"})
"""
            )
        },
        config={"lua_slow_step_ms": 500, "embedded_relay": False},
    )
    message = "no relay configured: set server_url or BOTSTER_SERVER_URL"
    assert await proc.result("connect") == [None, message]
    assert await proc.result("crypto") == [None, message]
    assert await proc.result("sid") == {"sid": "nil"}
    await proc.wait_for(r"no relay \(no server_url, and embedded_relay is false\)")


# action_cable against the relay ------------------------------------------------------------

# The hub's side of a conversation: HubCommandChannel; every message is reported as
# RESULT cmd {msg, ch}; a bundle_request is answered with a (fake, plain) bundle envelope.
COMMAND_PLUGIN = """
when_registered(function(sid)
  local conn = assert(action_cable.connect(OPTS))
  local cmd
  cmd = action_cable.subscribe(conn, "HubCommandChannel", {hub_id = sid}, function(msg, ch)
    report("cmd", {msg = msg, ch = ch, mine = ch == cmd})
    if msg.type == "bundle_request" then
      assert(action_cable.perform(cmd, "signal",
        {browser_identity = msg.browser_identity, envelope = {t = 2, b = "bundle"}}))
    end
  end)
  report("subscribed", {sid = sid, conn = conn, cmd = cmd})
end)
"""


def cmd_messages(proc: Any, since: int) -> list[dict[str, Any]]:
    """Every message the command callback reported after `since`, in order."""
    out = []
    for line in proc.lines[since:]:
        m = re.search(r"RESULT cmd (.*)$", line)
        if m:
            out.append(json.loads(m.group(1))["msg"])
    return out


async def browser_online(relay: RelayProcess, sid: str) -> tuple[CableClient, str]:
    """A browser subscribed to the hub's signalling channel, once the hub is online."""
    browser = await CableClient(relay.url).__aenter__()
    ident = await browser.subscribe("HubSignalingChannel", hub_id=sid, browser_identity=BROWSER)
    await browser.next_message(lambda m: m == {"type": "health", "cli": "online"})
    return browser, ident


async def test_round_trip(relay: RelayProcess, hub: Any) -> None:
    _, env = await relay_with_token(relay)
    proc = await hub({"cmd": plugin(COMMAND_PLUGIN.replace("OPTS", "nil"))}, env=env)
    sub = await proc.result("subscribed", timeout=20)
    assert re.fullmatch(r"ac_conn_\d+", sub["conn"]) and re.fullmatch(r"ac_ch_\d+", sub["cmd"])
    browser, ident = await browser_online(relay, sub["sid"])
    try:
        # Browser -> hub -> browser: a bundle request, answered by a perform.
        mark = browser.mark()
        await browser.perform(ident, "request_bundle")
        got = await browser.next_message(lambda m: m.get("type") == "signal", since=mark)
        assert got == {"type": "signal", "envelope": {"t": 2, "b": "bundle"}}
        # Browser -> hub: a signal reaches the callback with (msg, channel_id).
        pos = proc.mark()
        await browser.perform(ident, "signal", envelope={"t": 1, "b": "opaque"})
        m = await proc.wait_for(r'RESULT cmd (.*"signal".*)$', since=pos)
        assert json.loads(m.group(1)) == {
            "msg": {
                "type": "signal",
                "browser_identity": BROWSER,
                "envelope": {"t": 1, "b": "opaque"},
            },
            "ch": sub["cmd"],
            "mine": True,
        }
    finally:
        await browser.__aexit__(None, None, None)


async def test_crypto_hook(relay: RelayProcess, hub: Any) -> None:
    """crypto = true hands t=0/1 envelopes to botster.remote.olm; without that module they pass
    through, said once in the log; with it, a garbage envelope is flagged decrypt_failed."""
    _, env = await relay_with_token(relay)
    proc = await hub({"cmd": plugin(COMMAND_PLUGIN.replace("OPTS", "{crypto = true}"))}, env=env)
    sub = await proc.result("subscribed", timeout=20)
    browser, ident = await browser_online(relay, sub["sid"])
    try:
        pos = proc.mark()
        await browser.perform(ident, "signal", envelope={"t": 1, "b": "bm90IG9sbQ"})
        await browser.perform(ident, "signal", envelope={"t": 2, "b": "plain"})
        await proc.wait_for(r'RESULT cmd .*"plain"', since=pos)
    finally:
        await browser.__aexit__(None, None, None)
    signals = [m for m in cmd_messages(proc, pos) if m["type"] == "signal"]
    # t = 2 (a plain bundle) is never touched.
    assert signals[1] == {
        "type": "signal",
        "browser_identity": BROWSER,
        "envelope": {"t": 2, "b": "plain"},
    }
    try:
        has_olm = importlib.util.find_spec("botster.remote.olm") is not None
    except ModuleNotFoundError:
        has_olm = False
    if not has_olm:
        assert signals[0]["envelope"] == {"t": 1, "b": "bm90IG9sbQ"}
        assert proc.log.count("botster.remote.olm.decrypt_envelope is not available") == 1
    else:
        assert signals[0].get("decrypt_failed") is True


def test_identifier_is_sorted_compact_and_ascii() -> None:
    # Sorted keys, no spaces, the channel merged in, nested data kept, non-ASCII escaped.
    got = identifier_for("Test", {"z": 1, "hub_id": "x", "a": {"n": True, "l": [1, 2]}, "é": "ü"})
    assert (
        got == '{"a":{"l":[1,2],"n":true},"channel":"Test","hub_id":"x","z":1,"\\u00e9":"\\u00fc"}'
    )


# A loopback ActionCable endpoint that records frames; `confirm_after` subscribe frames of an
# identifier are ignored before one is confirmed (1 = confirm the first).
class Recorder:
    def __init__(self, confirm_after: int = 1) -> None:
        self.frames: list[str] = []
        self.changed = asyncio.Event()
        self.confirm_after = confirm_after
        self.seen_subscribes: dict[str, int] = {}
        self.url = ""
        self.connections = 0

    async def hubs(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "0123456789abcdef"})

    async def put(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    async def cable(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str('{"type":"welcome"}')
        async for msg in ws:
            self.frames.append(msg.data)
            self.changed.set()
            frame = json.loads(msg.data)
            if frame["command"] == "subscribe":
                ident = frame["identifier"]
                n = self.seen_subscribes[ident] = self.seen_subscribes.get(ident, 0) + 1
                if n >= self.confirm_after:
                    await ws.send_str(
                        json.dumps({"identifier": ident, "type": "confirm_subscription"})
                    )
            elif frame["command"] == "message":
                data = json.loads(frame["data"])
                if data["action"] == "kick":
                    await ws.send_str('{"type":"disconnect","reason":"kicked","reconnect":true}')
                    await ws.close()
                    break
                await ws.send_str(json.dumps({"identifier": frame["identifier"], "message": data}))
        return ws

    async def wait_frames(self, n: int, timeout: float = 20.0) -> list[str]:
        async def until() -> None:
            while len(self.frames) < n:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise AssertionError(f"{len(self.frames)} frames: {self.frames}") from None
        return self.frames


async def serve(recorder: Recorder) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hubs", recorder.hubs)
    app.router.add_put("/hubs/{id}", recorder.put)
    app.router.add_get("/cable", recorder.cable)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}"
    return runner


RECORDED_PLUGIN = """
local conn = assert(action_cable.connect())
local ch = action_cable.subscribe(conn, "Test", {z = 1, hub_id = "x", a = {n = true, l = {1, 2}}},
  function(msg, id) report("echo", {msg = msg, id = id}) end)
assert(action_cable.perform(ch, "go", {k = "v", n = 2}))
"""


async def test_exact_bytes_on_the_wire(hub: Any) -> None:
    recorder = Recorder()
    runner = await serve(recorder)
    try:
        proc = await hub(
            {"rec": plugin(RECORDED_PLUGIN)},
            env={"BOTSTER_SERVER_URL": recorder.url, "BOTSTER_TOKEN": "btstr_x"},
        )
        assert (await proc.result("echo"))["msg"] == {"action": "go", "k": "v", "n": 2}
        ident = '{"a":{"l":[1,2],"n":true},"channel":"Test","hub_id":"x","z":1}'
        assert recorder.frames[:2] == [
            json.dumps({"command": "subscribe", "identifier": ident}, separators=(",", ":")),
            json.dumps(
                {
                    "command": "message",
                    "identifier": ident,
                    "data": '{"action":"go","k":"v","n":2}',
                },
                separators=(",", ":"),
            ),
        ]
        await proc.stop_and_verify()
    finally:
        await runner.cleanup()


async def test_subscribes_again_when_not_confirmed_in_5_s(hub: Any) -> None:
    recorder = Recorder(confirm_after=2)
    runner = await serve(recorder)
    try:
        proc = await hub(
            {"rec": plugin(RECORDED_PLUGIN)},
            env={"BOTSTER_SERVER_URL": recorder.url, "BOTSTER_TOKEN": "btstr_x"},
        )
        await proc.wait_for(r"not confirmed in 5 s; subscribing again", timeout=20)
        assert (await proc.result("echo", timeout=20))["msg"]["action"] == "go"
        kinds = [json.loads(f)["command"] for f in recorder.frames]
        # The perform waited for the confirmation of the second subscribe.
        assert kinds[:3] == ["subscribe", "subscribe", "message"]
        await proc.stop_and_verify()
    finally:
        await runner.cleanup()


async def test_disconnect_frame_and_silence_reconnect(hub: Any) -> None:
    """A `disconnect` frame reconnects at once (after 1 s); so does a socket silent for 15 s
    (this endpoint never pings). Each new socket gets the subscription again."""
    recorder = Recorder()
    runner = await serve(recorder)
    try:
        source = plugin(
            """
local conn = assert(action_cable.connect())
local ch = action_cable.subscribe(conn, "Test", {}, function() end)
assert(action_cable.perform(ch, "kick", {}))
"""
        )
        proc = await hub(
            {"kick": source}, env={"BOTSTER_SERVER_URL": recorder.url, "BOTSTER_TOKEN": "btstr_x"}
        )
        await proc.wait_for(r"ac_conn_1: the relay disconnected us \(kicked\)")
        await proc.wait_for(r"no frame for 15 s; the socket is dead", timeout=40)
        await proc.wait_for(r"ac_conn_1: disconnected; reconnecting in 1 s")
        subscribes = [f for f in await recorder.wait_frames(4, timeout=20) if "subscribe" in f]
        assert recorder.connections >= 3
        assert (
            subscribes[:3]
            == ['{"command":"subscribe","identifier":"{\\"channel\\":\\"Test\\"}"}'] * 3
        )
        await proc.stop_and_verify()
    finally:
        await runner.cleanup()


async def test_unsubscribe_silences_the_callback(relay: RelayProcess, hub: Any) -> None:
    """The command callback unsubscribes at the first signal; signals already on their way are
    dropped. The hub's own signalling subscription (same socket) sees the hub go offline
    after them, which flushes the socket: by then the command callback ran exactly once."""
    _, env = await relay_with_token(relay)
    source = plugin(
        """
local B2 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3:tab-2"
when_registered(function(sid)
  local conn = assert(action_cable.connect())
  local calls, cmd = 0, nil
  action_cable.subscribe(conn, "HubSignalingChannel", {hub_id = sid, browser_identity = B2},
    function(msg)
      if msg.type == "health" and msg.cli == "offline" and calls > 0 then
        report("offline_seen", {calls = calls})
      end
    end)
  cmd = action_cable.subscribe(conn, "HubCommandChannel", {hub_id = sid}, function(msg, ch)
    if msg.type ~= "signal" then return end
    calls = calls + 1
    local first, second = action_cable.unsubscribe(ch), action_cable.unsubscribe(ch)
    local ok, err = action_cable.perform(ch, "heartbeat", {})
    report("unsubscribed", {first = first, second = second, perform = ok == nil, err = err})
  end)
  report("subscribed", sid)
end)
"""
    )
    proc = await hub({"unsub": source}, env=env)
    sid = await proc.result("subscribed", timeout=20)
    browser, ident = await browser_online(relay, sid)
    try:
        for i in range(5):
            await browser.perform(ident, "signal", envelope={"t": 1, "b": f"m{i}"})
        got = await proc.result("unsubscribed")
        assert got["first"] is True and got["second"] is False
        assert got["perform"] is True and "no such channel" in got["err"]
        assert await proc.result("offline_seen") == {"calls": 1}
        await browser.next_message(lambda m: m == {"type": "health", "cli": "offline"})
    finally:
        await browser.__aexit__(None, None, None)


async def test_performs_before_confirmation_are_queued_and_flushed(
    relay: RelayProcess, hub: Any
) -> None:
    """Performs made right after connect (no socket yet) wait for the confirmation, in order."""
    _, env = await relay_with_token(relay)
    source = plugin(
        """
local B2 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3:tab-2"
when_registered(function(sid)
  local conn = assert(action_cable.connect())
  local got = {}
  action_cable.subscribe(conn, "HubSignalingChannel", {hub_id = sid, browser_identity = B2},
    function(msg)
      if msg.type == "signal" then
        got[#got + 1] = msg.envelope.b
        if #got == 3 then report("arrived", got) end
      end
    end)
  local cmd = action_cable.subscribe(conn, "HubCommandChannel", {hub_id = sid}, function() end)
  for i = 1, 3 do
    assert(action_cable.perform(cmd, "signal", {browser_identity = B2, envelope = {t = 2, b = "q" .. i}}))
  end
end)
"""
    )
    proc = await hub({"queue": source}, env=env)
    assert await proc.result("arrived", timeout=20) == ["q1", "q2", "q3"]


async def test_reconnects_after_the_relay_dies(relay: RelayProcess, hub: Any) -> None:
    _, env = await relay_with_token(relay)
    proc = await hub({"cmd": plugin(COMMAND_PLUGIN.replace("OPTS", "nil"))}, env=env)
    sub = await proc.result("subscribed", timeout=20)
    browser, _ = await browser_online(relay, sub["sid"])
    await browser.__aexit__(None, None, None)
    pos = proc.mark()
    await relay.kill()
    await proc.wait_for(r"ac_conn_\d+: disconnected; reconnecting in 1 s", since=pos)
    await relay.start()  # same port, same data
    # The hub subscribes again after the new welcome: a new browser finds it online and its
    # bundle request is answered through the re-sent subscription.
    browser, ident = await browser_online(relay, sub["sid"])
    try:
        mark = browser.mark()
        await browser.perform(ident, "request_bundle")
        got = await browser.next_message(lambda m: m.get("type") == "signal", since=mark)
        assert got == {"type": "signal", "envelope": {"t": 2, "b": "bundle"}}
    finally:
        await browser.__aexit__(None, None, None)


async def test_reload_releases_the_connection(
    relay: RelayProcess, hub: Any, git_repo: Path
) -> None:
    _, env = await relay_with_token(relay)
    proc = await hub({"cmd": plugin(COMMAND_PLUGIN.replace("OPTS", "nil"))}, env=env)
    sub = await proc.result("subscribed", timeout=20)
    browser, _ = await browser_online(relay, sub["sid"])
    try:
        mark = browser.mark()
        pos = proc.mark()
        write_plugin(git_repo, "cmd", plugin('report("reloaded", true)'))
        await proc.result("reloaded", since=pos)
        # The relay saw the socket close: the hub's command channel went, so it is offline.
        await browser.next_message(lambda m: m == {"type": "health", "cli": "offline"}, since=mark)
    finally:
        await browser.__aexit__(None, None, None)


async def test_wrong_use(hub: Any) -> None:
    cases = {
        "opts": (
            "action_cable.connect({url = 'x'})",
            "action_cable.connect: opts: unknown key 'url'",
        ),
        "crypto": (
            "action_cable.connect({crypto = 1})",
            "action_cable.connect: opts.crypto: expected boolean, got number",
        ),
        "name": (
            "action_cable.subscribe(conn, 5, {}, function() end)",
            "action_cable.subscribe: channel_name: expected string, got number",
        ),
        "empty": (
            "action_cable.subscribe(conn, '', {}, function() end)",
            "action_cable.subscribe: channel_name: expected a non-empty string",
        ),
        "channel_param": (
            "action_cable.subscribe(conn, 'C', {channel = 'D'}, function() end)",
            "action_cable.subscribe: params.channel: the channel name is the second argument",
        ),
        "callback": (
            "action_cable.subscribe(conn, 'C', {}, 'nope')",
            "action_cable.subscribe: callback: expected function, got string",
        ),
        "perform_action": (
            "action_cable.perform(ch, 'a', {action = 'b'})",
            "action_cable.perform: data.action: the action is the second argument",
        ),
        "perform_fn": (
            "action_cable.perform(ch, 'a', {f = function() end})",
            "action_cable.perform: data.f:",
        ),
        "wrong_door": (
            "action_cable.send(ch, 'x')",
            "action_cable.perform(channel_id, action, data)",
        ),
    }
    source = plugin(
        """
local conn = assert(action_cable.connect())
local ch = action_cable.subscribe(conn, "C", nil, function() end)
report_all("dup", action_cable.subscribe(conn, "C", {}, function() end))
report_all("unknown_conn", action_cable.subscribe("ac_conn_999", "C", {}, function() end))
report_all("unknown_ch", action_cable.perform("ac_ch_999", "x"))
report_all("close", action_cable.close(conn), action_cable.close(conn))
report_all("after_close", action_cable.perform(ch, "x"), action_cable.unsubscribe(ch))
conn = assert(action_cable.connect())
ch = action_cable.subscribe(conn, "C", {}, function() end)
"""
        + report_raised(cases)
    )
    other = plugin(
        """
timer.after(0, function()
  local id, err = action_cable.subscribe("ac_conn_2", "C", {x = 1}, function() end)
  report_all("foreign", id, err, action_cable.close("ac_conn_2"))
end)
"""
    )
    proc = await hub({"wrong": source, "zz_other": other})
    await assert_raised(proc, cases)
    dup = await proc.result("dup")
    assert dup[0] is None and dup[1].startswith(
        'action_cable.subscribe: {"channel":"C"} is already subscribed as ac_ch_'
    )
    assert (await proc.result("unknown_conn"))[1] == (
        "action_cable.subscribe: ac_conn_999: no such connection (closed, or not this plugin's)"
    )
    assert "no such channel" in (await proc.result("unknown_ch"))[1]
    assert await proc.result("close") == [True, False]
    after = await proc.result("after_close")
    assert after == [None, False]
    foreign = await proc.result("foreign")
    assert foreign[0] is None and "no such connection" in foreign[1] and foreign[2] is False


# The embedded relay -------------------------------------------------------------------------


async def test_embedded_relay_serves_on_loopback(hub: Any, isolated_env: dict[str, str]) -> None:
    port = await free_port()
    source = plugin(
        """
local B2 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3:tab-2"
when_registered(function(sid)
  report("sid", sid)
  local conn = assert(action_cable.connect())
  action_cable.subscribe(conn, "HubSignalingChannel", {hub_id = sid, browser_identity = B2},
    function(msg) if msg.type == "signal" then report("signal", msg.envelope) end end)
  local cmd = action_cable.subscribe(conn, "HubCommandChannel", {hub_id = sid}, function() end)
  action_cable.perform(cmd, "signal", {browser_identity = B2, envelope = {t = 2, b = "hi"}})
end)
"""
    )
    proc = await hub({"emb": source}, config={"lua_slow_step_ms": 500, "relay_port": port})
    url = (await proc.wait_for(r"embedded relay on (http://\S+)")).group(1)
    assert url == f"http://127.0.0.1:{port}"
    sid = await proc.result("sid", timeout=20)
    assert await proc.result("signal", timeout=20) == {"t": 2, "b": "hi"}
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        assert resp.status == 200
    runtime = Path(isolated_env["BOTSTER_RUNTIME_DIR"])
    info = json.loads(next(runtime.glob("relay-*.json")).read_text())
    assert info == {"url": url, "server_id": sid, "embedded": True}
    # What `make run` prints.
    line = await asyncio.to_thread(_relay_line, proc.repo)
    assert line == f"Relay: embedded relay at {url} (this hub's server id: {sid})"
    await proc.stop_and_verify()
    # Stopped with the hub, and its note is gone.
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz"):
            pass
    assert not list(runtime.glob("relay-*.json"))
    # Restarted, the hub keeps its server id (the minted token is reused).
    proc = await hub({"emb": plugin('when_registered(function(sid) report("sid", sid) end)')})
    assert await proc.result("sid", timeout=20) == sid
    assert re.search(r"embedded relay on http://127\.0\.0\.1:\d+", proc.log)


async def test_embedded_relay_port_taken(hub: Any) -> None:
    """A configured port that is taken: a warning, no relay, and the hub runs on."""
    taken = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        source = plugin(
            """
local early = action_cable.connect()
report("early", {ok = type(early) == "string"})
local t
t = timer.every(0.05, function()
  local conn, err = action_cable.connect()
  if conn then action_cable.close(conn) else timer.cancel(t); report("late", err) end
end)
"""
        )
        proc = await hub({"taken": source}, config={"lua_slow_step_ms": 500, "relay_port": port})
        # Before the relay has started, connect cannot know yet: it returns an id.
        assert await proc.result("early") == {"ok": True}
        await proc.wait_for(rf"the embedded relay could not start on port {port}: .*address")
        assert await proc.result("late") == "the embedded relay failed to start (see the hub log)"
        await proc.wait_for(r"ac_conn_1: no relay to connect to")
        await proc.stop_and_verify()
    finally:
        taken.close()
        await taken.wait_closed()


def test_login_reads_the_token_from_stdin_and_checks_its_arguments(
    isolated_env: dict[str, str],
) -> None:
    env = {**os.environ, **isolated_env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}

    def login(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "botster.cli", "login", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    done = login("--server", "https://relay.example.org/x/", stdin="btstr_from_stdin\n")
    assert done.returncode == 0, done.stderr
    home = Path(isolated_env["BOTSTER_HOME"])
    assert json.loads((home / "relay_tokens.json").read_text()) == {
        "https://relay.example.org/x": "btstr_from_stdin"
    }
    bad = login("--server", "ftp://relay.example.org", "--token", "t")
    assert bad.returncode != 0 and "expected an http:// or https:// URL" in bad.stderr
    empty = login("--server", "https://relay.example.org", stdin="\n")
    assert empty.returncode != 0 and "the token is empty" in empty.stderr


async def test_relay_url_without_a_token(hub: Any) -> None:
    """server_url set, no token anywhere: a warning saying what to do, no registration, and
    connect says so once the hub knows."""
    source = plugin(
        """
local t
t = timer.every(0.05, function()
  local conn, err = action_cable.connect()
  if conn then action_cable.close(conn) else timer.cancel(t); report("err", err) end
end)
"""
    )
    proc = await hub(
        {"notoken": source},
        config={"lua_slow_step_ms": 500, "server_url": "http://127.0.0.1:9"},
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    expected = (
        "no hub token for the relay http://127.0.0.1:9: set BOTSTER_TOKEN or run "
        "`botster login --server http://127.0.0.1:9 --token TOKEN`"
    )
    assert await proc.result("err") == expected
    assert expected in proc.log
