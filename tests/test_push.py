"""Web push (issue 16), hub side: VAPID keys, subscriptions over the client protocol,
``push.send`` against a loopback push service that checks the VAPID JWT and decrypts every
body with the subscriber's key, 404/410, retries, restarts, storage, wrong input, and an agent
ringing its bell becoming a push."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from botster.base.config import Config
from botster.base.errors import HubError
from botster.primitives.push import MAX_PAYLOAD, fit_payload
from botster.transports.client import HubConnection, RequestFailed
from harness.push_service import push_service, unb64url
from tests.lua_prelude import PRELUDE, assert_raised, report_raised
from tests.test_pty import socket_of

# A plugin command that sends, so a test can push at a moment of its choosing.
SENDER = (
    PRELUDE
    + """
local commands = require("lib.commands")
commands.register("t.send", function(args)
  local n, err = push.send(args.msg, args.opts)
  report("sent", {n = n, err = err})
  return {n = n, err = err}
end)
"""
)


async def connect(proc) -> HubConnection:
    return await HubConnection.connect(socket_of(proc), "t")


def git_email(repo: Path, email: str | None) -> None:
    """Sets (None: unsets) the repository's git user.email."""
    args = ["user.email", email] if email else ["--unset", "user.email"]
    subprocess.run(["git", "config", *args], cwd=repo, check=email is not None)


@pytest.fixture(autouse=True)
def repo_contact(request: pytest.FixtureRequest) -> None:
    """The repository's git user.email: the VAPID sub of these tests' hubs (see the test of
    push_subject for the other sources)."""
    if "hub" in request.fixturenames:
        git_email(request.getfixturevalue("git_repo"), "tests@botster.example")


SUBJECT_SENDER = (
    SENDER
    + """
commands.register("t.config", function(args) return config.set(args.key, args.value) end)
"""
)


async def test_push_subject_is_the_users_own_contact(hub, git_repo, isolated_env) -> None:
    """The VAPID sub: push_subject; unset, mailto: git user.email; else the relay's https
    origin; else push.send refuses, naming the setting and the file."""
    config_file = Path(isolated_env["BOTSTER_HOME"]) / "config.json"
    git_email(git_repo, None)
    async with push_service() as svc:
        phone = svc.subscriber("phone")
        proc = await hub(plugins={"sender": SUBJECT_SENDER}, config={"embedded_relay": False})
        conn = await connect(proc)
        await conn.request("push.subscribe", {"subscription": phone.subscription})
        send = {"msg": {"title": "hi"}}

        # Nothing to go by: refused, and nothing is sent.
        refused = await conn.request("t.send", send)
        assert refused == {
            "err": "push.send: push_subject is not set: push services want a contact for this "
            "hub's pushes (the VAPID sub claim). Set it in "
            f'{config_file}: "push_subject": "mailto:you@example.com" (or '
            '"https://your.site"; from Lua: config.set("push_subject", '
            '"mailto:you@example.com")), or give the repository a git user.email, or use a '
            "relay with an https URL"
        }

        # The repository's git user.email.
        git_email(git_repo, "dev@repo.example")
        assert await conn.request("t.send", send) == {"n": 1}
        assert (await svc.wait(1))[0].claims["sub"] == "mailto:dev@repo.example"

        # The setting wins, at once (the signed JWT is not reused for another subject).
        assert await conn.request("t.config", {"key": "push_subject", "value": "https://me.dev"})
        assert await conn.request("t.send", send) == {"n": 1}
        assert (await svc.wait(2))[1].claims["sub"] == "https://me.dev"
        assert svc.problems == []
        await conn.close()
        await proc.stop_and_verify()

        # No setting, no git address, an https relay: its origin (no port, no path).
        git_email(git_repo, None)
        relay = {"server_url": "https://relay.example.org:8443/botster"}
        proc = await hub(plugins={"sender": SUBJECT_SENDER}, config=relay)
        conn = await connect(proc)
        assert await conn.request("t.send", send) == {"n": 1}
        assert (await svc.wait(3))[2].claims["sub"] == "https://relay.example.org"
        await conn.close()

        # An http relay is no contact.
        await proc.stop_and_verify()
        proc = await hub(
            plugins={"sender": SUBJECT_SENDER}, config={"server_url": "http://relay.example.org"}
        )
        conn = await connect(proc)
        assert "push_subject is not set" in (await conn.request("t.send", send))["err"]
        assert len(svc.requests) == 3
        await conn.close()


@pytest.mark.parametrize(
    "value", ["me@example.org", "mailto:me@host", "https://x.org/path", "http://x.org", 42]
)
def test_a_bad_push_subject_in_the_config_file_is_a_clear_error(tmp_path, value) -> None:
    file = tmp_path / "config.json"
    file.write_text(json.dumps({"push_subject": value}))
    with pytest.raises(HubError) as e:
        Config.load_blocking(file)
    assert str(e.value) == (
        f"{file}: push_subject must be the contact push services see in VAPID's sub claim "
        f"(mailto:you@host or https://host), got {value!r}"
    )


async def test_round_trip_keys_survive_restart_nothing_in_plaintext(
    hub, isolated_env, git_repo
) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    async with push_service() as svc:
        a, b = svc.subscriber("a"), svc.subscriber("b")
        proc = await hub(plugins={"sender": SENDER}, config={"push_subject": "mailto:me@x.org"})
        conn = await connect(proc)
        key = (await conn.request("push.vapid_public_key"))["public_key"]
        raw = unb64url(key)
        assert len(raw) == 65 and raw[0] == 4 and "=" not in key
        assert await conn.request("push.subscribe", {"subscription": a.subscription}) == {
            "subscribed": True
        }
        assert (await conn.request("push.subscribe", {"subscription": b.subscription}))[
            "subscribed"
        ]
        msg = {
            "title": "Ünïcode ✓",
            "body": "line\nbreak \0 nul",
            "url": "https://relay.example/hubs/1?agent=x",
            "agent_key": "feature-x",
            "extra": {"n": 3, "list": [1, 2]},
        }
        sent = await conn.request("t.send", {"msg": msg, "opts": {"ttl": 60, "urgency": "high"}})
        assert sent == {"n": 2}
        deliveries = await svc.wait(2)
        assert svc.problems == []
        assert sorted(d.name for d in deliveries) == ["a", "b"]
        for d in deliveries:
            assert d.json == msg
            assert d.vapid_key == key
            assert d.claims["sub"] == "mailto:me@x.org"
            assert d.headers["ttl"] == "60" and d.headers["urgency"] == "high"
        await conn.close()
        await proc.stop_and_verify()

        # Nothing of a subscription is readable on disk; every file is private.
        files = [p for p in home.rglob("*") if p.is_file()]
        for p in files:
            data = p.read_bytes()
            for secret in (a.endpoint, "/push/a", a.subscription["keys"]["p256dh"], "127.0.0.1"):
                assert secret.encode() not in data, f"{secret} in plaintext in {p}"
        push_dir = home / "push"
        assert stat.S_IMODE(push_dir.stat().st_mode) == 0o700
        for p in push_dir.iterdir():
            if p.suffix == ".enc":
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p

        # A new hub: same key, same subscriptions; the defaults for TTL, Urgency and subject.
        git_email(git_repo, "dev@repo.example")
        proc2 = await hub(plugins={"sender": SENDER}, config={})
        conn = await connect(proc2)
        assert (await conn.request("push.vapid_public_key"))["public_key"] == key
        assert await conn.request("t.send", {"msg": {"title": "again"}}) == {"n": 2}
        deliveries = (await svc.wait(4))[2:]
        assert svc.problems == []
        for d in deliveries:
            assert d.json == {"title": "again"} and d.vapid_key == key
            assert d.headers["ttl"] == "86400" and d.headers["urgency"] == "normal"
            assert d.claims["sub"] == "mailto:dev@repo.example"
        # Unsubscribing forgets; twice is fine.
        assert await conn.request("push.unsubscribe", {"endpoint": a.endpoint}) == {
            "unsubscribed": True
        }
        assert await conn.request("push.unsubscribe", {"endpoint": a.endpoint}) == {
            "unsubscribed": False
        }
        assert await conn.request("t.send", {"msg": {"title": "only b"}}) == {"n": 1}
        await svc.wait(5)
        assert svc.delivered()[4].name == "b"
        await conn.close()


async def test_no_subscriptions_sends_nothing_and_makes_no_key(hub, isolated_env) -> None:
    proc = await hub(plugins={"sender": SENDER})
    conn = await connect(proc)
    assert await conn.request("t.send", {"msg": {"title": "nobody"}}) == {"n": 0}
    assert not (Path(isolated_env["BOTSTER_HOME"]) / "push" / "vapid.enc").exists()
    await conn.close()


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_subscription_is_dropped(hub, status: int) -> None:
    async with push_service() as svc:
        a, b = svc.subscriber("a"), svc.subscriber("b")
        svc.plan("a", [status])
        proc = await hub(plugins={"sender": SENDER})
        conn = await connect(proc)
        for s in (a, b):
            await conn.request("push.subscribe", {"subscription": s.subscription})
        mark = proc.mark()
        assert await conn.request("t.send", {"msg": {"title": "one"}}) == {"n": 2}
        await proc.wait_for(rf"HTTP {status}, the subscription is gone; dropped it", since=mark)
        await svc.wait(1)
        assert await conn.request("t.send", {"msg": {"title": "two"}}) == {"n": 1}
        await svc.wait(2)
        assert sorted((d.name, d.status) for d in svc.requests) == [
            ("a", status),
            ("b", 201),
            ("b", 201),
        ]
        await conn.close()


async def test_failures_are_retried_with_backoff_and_logged_once(hub) -> None:
    async with push_service() as svc:
        flaky, broken = svc.subscriber("flaky"), svc.subscriber("broken")
        refused = svc.subscriber("refused")
        svc.plan("flaky", [500, 503])
        svc.plan("broken", [502, 502, 502, 502])
        svc.plan("refused", [400])
        proc = await hub(plugins={"sender": SENDER})
        conn = await connect(proc)
        for s in (flaky, broken, refused):
            await conn.request("push.subscribe", {"subscription": s.subscription})
        assert await conn.request("t.send", {"msg": {"title": "retry me"}}) == {"n": 3}
        await svc.wait(1)
        assert svc.delivered()[0].json == {"title": "retry me"}
        await proc.wait_for(r"push to \S+ #\w+ failed: HTTP 502; gave up after 4 attempts")
        attempts = {n: [d.status for d in svc.requests if d.name == n] for n in svc.subscribers}
        assert attempts == {"flaky": [500, 503, 201], "broken": [502] * 4, "refused": [400]}
        log = proc.log
        assert log.count("delivered after 3 attempts (first: HTTP 500)") == 1
        assert log.count("gave up after") == 1
        assert log.count("failed: HTTP 400; not retried") == 1
        assert "/push/" not in log  # endpoints are capabilities: never logged
        # The broken subscription is kept (a 5xx is not the subscription's fault).
        assert await conn.request("t.send", {"msg": {"title": "still there"}}) == {"n": 3}
        await conn.close()


async def test_deliveries_belong_to_the_plugin_that_sent(hub) -> None:
    async with push_service() as svc:
        a = svc.subscriber("a")
        svc.plan("a", [503] * 4)
        proc = await hub(plugins={"sender": SENDER})
        conn = await connect(proc)
        await conn.request("push.subscribe", {"subscription": a.subscription})
        assert await conn.request("t.send", {"msg": {"title": "x"}}) == {"n": 1}
        await svc.wait_for(lambda: len(svc.requests) == 1, "the first attempt")
        mark = proc.mark()
        assert await conn.request("plugins.reload", {"name": "sender"}) == {"reloaded": "sender"}
        await proc.wait_for(
            r"\[sender\] push.send: deliveries still in progress were cancelled", since=mark
        )
        assert "gave up" not in proc.log
        await conn.close()


BAD_SUBSCRIPTIONS = {
    "missing": (None, "subscription: expected a table, got nil"),
    "endpoint": ({"keys": {}}, "subscription.endpoint: expected an http(s) URL, got nil"),
    "scheme": (
        {"endpoint": "ftp://push.example/x", "keys": {}},
        "subscription.endpoint: expected an http(s) URL of at most 2048 characters, "
        "got 'ftp://push.example/x'",
    ),
    "js": (
        {"endpoint": "javascript:alert(1)", "keys": {}},
        "subscription.endpoint: expected an http(s) URL",
    ),
    "keys": ({"endpoint": "https://p.example/x"}, "subscription.keys: expected a table, got nil"),
    "p256dh": (
        {"endpoint": "https://p.example/x", "keys": {"p256dh": "AAAA", "auth": "x"}},
        "subscription.keys.p256dh: expected base64url of a 65-byte uncompressed P-256 point, "
        "got 3 bytes",
    ),
    "off-curve": (
        {"endpoint": "https://p.example/x", "keys": {"p256dh": "BA" + "A" * 85, "auth": "x"}},
        "subscription.keys.p256dh: expected a 65-byte uncompressed P-256 point, got another",
    ),
    "auth": ("GOOD_P256DH", "subscription.keys.auth: expected base64url of a 16-byte secret"),
}


WRONG_USES = {
    "nothing": ("push.send()", "push.send: msg: expected table, got nil"),
    "number": ("push.send(5)", "push.send: msg: expected table, got number"),
    "no_title": (
        'push.send({body = "x"})',
        "push.send: msg.title: expected a non-empty string, got nil",
    ),
    "empty_title": (
        'push.send({title = ""})',
        "push.send: msg.title: expected a non-empty string, got ''",
    ),
    "body": ('push.send({title = "t", body = 3})', "push.send: msg.body: expected string, got 3"),
    "url": (
        'push.send({title = "t", url = "ftp://x"})',
        "push.send: msg.url: expected an http(s) URL or an absolute path of at most 2048 "
        "characters, got 'ftp://x'",
    ),
    "ttl": (
        'push.send({title = "t"}, {ttl = -1})',
        "push.send: opts.ttl: expected an integer 0..2419200, got -1",
    ),
    "urgency": (
        'push.send({title = "t"}, {urgency = "asap"})',
        "push.send: opts.urgency: expected one of very-low, low, normal, high, got 'asap'",
    ),
    "option": (
        'push.send({title = "t"}, {priority = 1})',
        "push.send: opts: unknown key 'priority' (known: ttl, urgency)",
    ),
    "unsubscribe": (
        "push.unsubscribe(42)",
        "push.unsubscribe: endpoint: expected string, got number",
    ),
    "wrong_door": ("push.notify", "push.notify does not exist; use push.send({title, body, url})"),
    "subject": (
        'config.set("push_subject", "https://x.example/contact")',
        "config.set: val: push_subject must be the contact push services see in VAPID's sub "
        "claim (mailto:you@host or https://host), got string",
    ),
}


async def test_bad_input_is_refused_naming_the_field(hub) -> None:
    async with push_service() as svc:
        good = svc.subscriber("good").subscription
        proc = await hub(plugins={"sender": SENDER + report_raised(WRONG_USES)})
        await assert_raised(proc, WRONG_USES)
        conn = await connect(proc)
        for name, (sub, message) in BAD_SUBSCRIPTIONS.items():
            if sub == "GOOD_P256DH":
                sub = {"endpoint": good["endpoint"], "keys": {**good["keys"], "auth": "AAAA"}}
            with pytest.raises(RequestFailed) as e:
                await conn.request("push.subscribe", {"subscription": sub})
            assert str(e.value).startswith("push.subscribe: " + message), (name, str(e.value))
        huge = {"endpoint": "https://p.example/" + "x" * 5000, "keys": good["keys"]}
        with pytest.raises(RequestFailed, match="at most 2048 characters, got 'https://p.ex"):
            await conn.request("push.subscribe", {"subscription": huge})
        with pytest.raises(RequestFailed, match="push.unsubscribe: endpoint: expected string"):
            await conn.request("push.unsubscribe", {})
        # Nothing was stored by the refusals.
        assert await conn.request("t.send", {"msg": {"title": "none"}}) == {"n": 0}
        await conn.close()


async def test_oversize_payload_is_shortened_not_refused(hub) -> None:
    async with push_service() as svc:
        a = svc.subscriber("a")
        proc = await hub(plugins={"sender": SENDER})
        conn = await connect(proc)
        await conn.request("push.subscribe", {"subscription": a.subscription})
        body = "é✓ long words " * 600
        msg = {"title": "Big", "body": body, "url": "/hubs/1?agent=k", "agent_key": "k"}
        assert await conn.request("t.send", {"msg": msg}) == {"n": 1}
        (d,) = await svc.wait(1)
        assert svc.problems == [] and len(d.body) <= 4096
        got = d.json
        assert len(d.payload) <= MAX_PAYLOAD
        assert len(d.payload) > MAX_PAYLOAD - 8  # shortened to the limit, not far below
        assert got["title"] == "Big" and got["url"] == msg["url"] and got["agent_key"] == "k"
        assert got["body"].endswith("…") and body.startswith(got["body"][:-1])
        await conn.close()


def test_fit_payload_order() -> None:
    small = {"title": "t", "body": "b"}
    assert json.loads(fit_payload(small)) == small
    big = {"title": "T" * 3000, "body": "B" * 3000, "url": "/u", "x": "X" * 100, "y": "Y" * 900}
    fitted = json.loads(fit_payload(big))
    assert fitted["body"] == "…" and fitted["url"] == "/u"
    assert fitted["title"].startswith("TTT") and fitted["x"] == big["x"]
    assert len(fit_payload(big)) <= MAX_PAYLOAD
    # Extras go, largest first, only when title and body are already cut to the bone.
    huge = {"title": "t", "body": "b", "url": "/u", "x": "X" * 100, "y": "Y" * 5000}
    fitted = json.loads(fit_payload(huge))
    assert "y" not in fitted and fitted["x"] == huge["x"] and fitted["title"] == "…"
    for n in (0, 1, 100, 3990, 3993, 4000, 20000):
        assert len(fit_payload({"title": "t", "body": "ü" * n})) <= MAX_PAYLOAD


# Agent attention -> push ------------------------------------------------------------------

AGENT = """#!/usr/bin/env bash
echo ready
read line
printf '\\a'
read line
printf '\\033]777;notify;Tests;all green\\007'
read line
printf '\\a'; printf '\\033]9;burst one\\007'; printf '\\033]9;burst two\\007'
read line
printf '\\033]9;while off\\007'
read line
printf '\\033]9;back on\\007'
read line
"""

WATCHER = (
    PRELUDE
    + """
local commands = require("lib.commands")
hub.hooks.on("attention_push", "t", function(d) report("decision", d) end)
events.on("pty_notification", function(d) report("notified", d) end)
commands.register("t.write", function(args)
  local h = pty.get(args.session_id)
  return h:write(args.data)
end)
commands.register("t.config", function(args)
  return config.set(args.key, args.value)
end)
"""
)


def define_agent(repo: Path) -> None:
    d = repo / ".botster" / "agents" / "shell"
    d.mkdir(parents=True)
    (d / "initialization").write_text(AGENT)
    subprocess.run(["git", "add", ".botster"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "agents"], cwd=repo, check=True)


async def test_agent_attention_becomes_a_push_when_nobody_looks(hub, git_repo, tmp_path) -> None:
    from tests.test_agents import wait_status

    define_agent(git_repo)
    async with push_service() as svc:
        phone = svc.subscriber("phone")
        proc = await hub(
            plugins={"watcher": WATCHER},
            # No relay, so no server id: the payload has no url (see the assert below).
            config={
                "push_attention_delay_ms": 400,
                "push_attention_interval_s": 0,
                "embedded_relay": False,
            },
            env={"BOTSTER_WORKTREE_BASE": str(tmp_path / "wt")},
        )
        conn = await connect(proc)
        await conn.request("push.subscribe", {"subscription": phone.subscription})
        await conn.request("create_agent", {"branch": "feature/bell"})
        agent = await wait_status(conn, "feature-bell", "running")
        sid = agent["session_id"]

        async def step(data: str = "go\n") -> dict:
            mark = proc.mark()
            await conn.request("t.write", {"session_id": sid, "data": data})
            return await proc.result("decision", since=mark, timeout=20)

        # 1. A client watches the agent's terminal: the bell is no push.
        conn.subscribe("terminal", {"session_id": sid, "rows": 24, "cols": 80})
        await conn.request("ping")  # the subscription is in place once this answers
        assert await step() == {"agent_key": "feature-bell", "skipped": "viewed"}
        conn.send({"type": "unsubscribe", "channel": "terminal", "params": {"session_id": sid}})
        await conn.request("ping")

        # 2. Nobody looks: OSC 777 becomes a push carrying its words and the agent.
        assert await step() == {"agent_key": "feature-bell", "queued": 1}
        (d,) = await svc.wait(1)
        assert svc.problems == []
        assert d.json == {
            "title": "Tests",
            "body": "all green",
            "agent_key": "feature-bell",
            "hub_id": d.json["hub_id"],
            "kind": "osc777",
        }  # no url: this hub has no relay server id
        assert d.headers["urgency"] == "high"

        # 3. A burst (bell + two OSC 9) is one push, with the latest words.
        assert await step() == {"agent_key": "feature-bell", "queued": 1}
        await svc.wait(2)
        assert svc.delivered()[1].json["body"] == "burst two"

        # 4. Off with a setting: nothing; back on: the next one is pushed.
        assert await conn.request("t.config", {"key": "push_attention", "value": False})
        mark = proc.mark()
        await conn.request("t.write", {"session_id": sid, "data": "go\n"})
        assert (await proc.result("notified", since=mark))["body"] == "while off"
        assert await conn.request("t.config", {"key": "push_attention", "value": True})
        assert await step() == {"agent_key": "feature-bell", "queued": 1}
        await svc.wait(3)
        assert [d.json["body"] for d in svc.delivered()] == ["all green", "burst two", "back on"]
        assert sum("RESULT decision" in line for line in proc.lines[mark:]) == 1
        await conn.close()


async def test_agent_url_builds_the_browser_link(hub, git_repo) -> None:
    # Plugins cannot replace hub.server_id (shared tables are read-only to them); a core
    # override module, trusted like the hub's own code, can.
    stub = git_repo / ".botster" / "lua" / "stub_server_id.lua"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text('hub.server_id = function() return "srv 1" end\nreturn true\n')
    proc = await hub(
        plugins={
            "url": PRELUDE
            + """
local attention = require("lib.attention")
report("none", attention.agent_url("k") or "nil")
require("stub_server_id")
report("path", attention.agent_url("feature/x"))
assert(config.set("server_url", "https://relay.example/"))
report("full", attention.agent_url("feature/x"))
"""
        }
    )
    assert await proc.result("none") == "nil"
    assert await proc.result("path") == "/hubs/srv%201?agent=feature%2Fx"
    assert await proc.result("full") == "https://relay.example/hubs/srv%201?agent=feature%2Fx"


def test_no_pywebpush_at_import() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, botster.primitives.push; print('pywebpush' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
