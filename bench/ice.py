"""TURN and ICE restarts: the Python test browser through a real coturn vs the direct path.

Runs in a network namespace with only loopback (re-executes itself under ``unshare --net``);
skipped without coturn's ``turnserver``. One real hub whose embedded relay hands out the TURN
server's credentials (``relay.json`` in its data directory); the browser
(``botster.remote.test_browser``) pairs and signals over the hub socket. Interleaved rounds,
each measured twice, TURN only (``iceTransportPolicy: "relay"``) and direct (host candidates):

* ICE restart to the same screen: a new offer on the same Olm session (what the web app does
  when ICE fails, docs/protocol.md "ICE restart") -> answer -> channel open -> hello ->
  ``subscribe terminal`` -> the SNAPSHOT showing what was on the screen;
* key to echo: one byte typed into ``cat`` until its echo arrives, 100 keys per round, p99.

The direct path is the baseline of the TURN numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Result, fmt_ms, header, median, p99, verdict
from bench._hub import HubRun, Sandbox

__all__ = ["run"]

ROUNDS = 5
KEYS = 100
SPAWN = """
require("lib.commands").register("bench.spawn", function(args)
  local h = assert(pty.spawn({cmd = "sh", args = {"-c", args.script}, rows = 24, cols = 80}))
  return h:id()
end)
"""


async def _measure() -> dict[str, Any]:
    from botster.base.identity import hub_id_for
    from botster.remote.test_browser import SocketSignaller, TestBrowser
    from harness.turn_server import turn_server

    out: dict[str, Any] = {
        "restart": {"turn": [], "direct": []},
        "echo": {"turn": [], "direct": []},
    }
    with Sandbox() as sandbox:
        async with turn_server(sandbox.root / "turn") as turn:
            home = Path(sandbox.env["BOTSTER_HOME"])
            relay_dir = home / "relay" / hub_id_for(sandbox.repo)[:16]
            relay_dir.mkdir(parents=True)
            ice = {"turn": [turn.url], "turn_secret": turn.secret, "turn_ttl": 600}
            (relay_dir / "relay.json").write_text(json.dumps({"ice": ice}))
            sandbox.write_plugin("spawn", SPAWN)
            hub = HubRun(sandbox)
            await hub.start()
            try:
                await hub.wait_ready()
                await hub.wait_for(r"ICE servers: \['turn:", timeout=30)
                conn = await hub.connect()
                code = await conn.request("connection.code")
                browser = TestBrowser(code["url"], SocketSignaller(conn))
                await browser.connect()
                sid = await browser.request("bench.spawn", {"script": "echo MARK; exec cat"})
                servers = [
                    {"urls": [turn.url], **_credentials(turn.secret, code["url"])},
                ]
                for _ in range(ROUNDS):
                    for path in ("turn", "direct"):
                        relay_only = path == "turn"
                        t = time.perf_counter()
                        await browser.connect(ice_servers=servers, relay_only=relay_only)
                        browser.attach(sid)
                        await browser.wait_for(lambda: b"MARK" in browser.screens.get(sid, b""))
                        out["restart"][path].append((time.perf_counter() - t) * 1000)
                        assert browser.path_kind() == ("relayed" if relay_only else "direct")
                        for i in range(KEYS):
                            key = bytes([97 + i % 26])
                            seen = len(browser.screens[sid])
                            t = time.perf_counter()
                            browser.type(sid, key)
                            await browser.wait_for(
                                lambda seen=seen: len(browser.screens[sid]) > seen
                            )
                            out["echo"][path].append((time.perf_counter() - t) * 1000)
                            await asyncio.sleep(0.005)
                out["allocations"] = turn.allocations()
                await browser.close()
                await conn.close()
            finally:
                await hub.stop()
    return out


def _credentials(secret: str, url: str) -> dict[str, str]:
    """coturn REST credentials as the relay makes them (the test browser asks no relay)."""
    import base64
    import hashlib
    import hmac

    from botster.remote.bundle import parse_pairing_url

    _, server_id, _ = parse_pairing_url(url)
    username = f"{int(time.time()) + 600}:{server_id}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {"username": username, "credential": base64.b64encode(mac).decode()}


def run() -> list[Result]:
    header("ice: through TURN (coturn) vs the direct path, ICE restarts")
    from harness.turn_server import turn_server_binary

    if turn_server_binary() is None:
        why = "no turnserver (apt-get install coturn)"
        print(f"  skipped: {why}")
        return [Result("ice", "ICE restart to the same screen", None, None, "ms", skipped=why)]
    if os.environ.get("BOTSTER_IN_NETNS") != "1":
        script = 'ip link set lo up && exec "$0" -m bench.ice --json'
        proc = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", script, sys.executable],
            env={**os.environ, "BOTSTER_IN_NETNS": "1", "BOTSTER_WEBRTC_LOOPBACK": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bench.ice in a netns failed:\n{proc.stdout}\n{proc.stderr}")
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        return [Result(**r) for r in json.loads(lines[-1])]
    os.environ["BOTSTER_WEBRTC_LOOPBACK"] = "1"
    from botster.remote.test_browser import force_loopback

    force_loopback()
    m = asyncio.run(_measure())
    restart, echo = m["restart"], m["echo"]
    for path in ("turn", "direct"):
        print(
            f"  {path:6}: ICE restart to the same screen median {fmt_ms(median(restart[path]))} "
            f"(of {ROUNDS}); key to echo p50 {fmt_ms(median(echo[path]))} "
            f"p99 {fmt_ms(p99(echo[path]))} ({len(echo[path])} keys)"
        )
    print(f"  TURN allocations logged by coturn: {m['allocations']}")
    results = [
        Result(
            "ice",
            "ICE restart to the same screen, TURN",
            median(restart["turn"]),
            median(restart["direct"]),
            "ms",
            "< 1 s",
            median(restart["turn"]) < 1000,
        ),
        Result(
            "ice",
            "key to echo p99, TURN",
            p99(echo["turn"]),
            p99(echo["direct"]),
            "ms",
            "< 20 ms",
            p99(echo["turn"]) < 20,
        ),
    ]
    for r in results:
        print(f"  {r.metric}: {verdict(bool(r.passed))}")
    if "--json" in sys.argv:
        print(json.dumps([r.__dict__ for r in results]))
    return results


if __name__ == "__main__":
    run()
