"""The relay: hub → browser signal latency under idle load, across two relays on Redis, and
memory per idle connection, each against a bare aiohttp websocket echo in the same run.

* value (a): one hub performs ``signal`` on ``HubCommandChannel``; a browser subscribed on
  ``HubSignalingChannel`` receives it: time from the hub's send to the browser's receipt, one
  at a time, while the relay also holds 100 hubs (subscribed) and 1,000 idle browsers
  (subscribed, one per hub-tab). A real ``botster relay`` child process (SQLite store).
* value (b): the same with two relays sharing a ``redis-server`` (hub on A, browser on B, the
  idle load split between them). Skipped when ``redis-server`` is not installed.
* value (c): the relay's RSS growth per idle subscribed browser connection (RSS after the
  1,000 browsers minus RSS with only the hubs, / 1,000).
* baseline, same run: a bare aiohttp websocket echo server (child process, same event loop
  flavour) holding 1,000 idle connections too; latency = one message's round trip on one
  socket (the same two hops, client → server → client); memory = its RSS growth per idle
  connection. Latency blocks are interleaved with the relay's.

Goals (issue 13): (a) p99 < 5 ms, (b) p99 < 10 ms, (c) < 50 KB per idle connection.
Everything runs on loopback; RLIMIT_NOFILE is raised to its hard limit first.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import Result, bin_path, child_env, fmt_ms, header, median, p99, verdict
from harness.redis_server import redis_server, redis_server_binary

__all__ = ["run"]

HUBS = 100
BROWSERS = 1000
SIGNALS = 1000
BLOCKS = 4
WARMUP = 100
GOAL_P99_ONE = 5.0
GOAL_P99_REDIS = 10.0
GOAL_KB = 50.0
ENVELOPE_B = "A" * 200  # about the size of an Olm Normal message carrying an ICE candidate

LIMITS = {
    "limits": {
        "cable_per_connection": [100000, 100000],
        "cable_per_address": [1000000, 1000000],
        "connects_per_address": [100000, 100000],
        "connections_per_address": 100000,
        "rest_per_address": [100000, 100000],
    }
}

ECHO_SERVER = """
import asyncio, sys
from aiohttp import web
try:
    import uvloop
except ImportError:
    uvloop = None

async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        await sock.send_str(msg.data)
    return sock

async def main():
    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("port", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

(uvloop.run if uvloop else asyncio.run)(main())
"""


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class _Proc:
    """A child that prints a ready line with its port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, argv: list[str], pattern: str) -> _Proc:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=child_env(),
        )
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"{argv[0]} exited before it was ready")
                if pattern in line:
                    port = int(line.split("port", 1)[1].split()[0].strip(",)"))
                    return cls(proc, port)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _prepare_blocking(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "relay.json").write_text(json.dumps(LIMITS))


async def _relay(data: Path, redis_url: str | None = None) -> _Proc:
    _prepare_blocking(data)  # a few bytes on a temp dir; the bench loop does nothing else yet
    argv = [str(bin_path("botster")), "relay", "--port", "0", "--data", str(data)]
    if redis_url:
        argv += ["--redis", redis_url]
    return await _Proc.start(argv, "relay ready:")


async def _token(data: Path, redis_url: str | None) -> str:
    argv = [str(bin_path("botster")), "relay", "token", "--data", str(data), "--name", "bench"]
    if redis_url:
        argv += ["--redis", redis_url]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, env=child_env()
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError("botster relay token failed")
    return out.decode().strip().splitlines()[-1]


def _identity(i: int) -> str:
    return f"{'B' * 43}:tab-{i:05d}"


class _Load:
    """The hubs and idle browsers attached to one or two relays, and one measured pair."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.hub_ids: list[str] = []

    async def _ws(self, port: int, token: str | None = None) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ws = await self.session.ws_connect(
            f"ws://127.0.0.1:{port}/cable", headers=headers, protocols=("actioncable-v1-json",)
        )
        await self._expect(ws, "welcome")
        self.sockets.append(ws)
        return ws

    @staticmethod
    async def _expect(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.receive_str(), 30))
            if frame.get("type") == kind:
                return frame

    async def register(self, port: int, token: str) -> None:
        for i in range(HUBS):
            async with self.session.post(
                f"http://127.0.0.1:{port}/hubs",
                json={"identifier": f"bench-hub-{i}"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                self.hub_ids.append((await resp.json())["id"])

    async def hub(self, port: int, token: str, hub_id: str) -> tuple[Any, str]:
        ws = await self._ws(port, token)
        identifier = json.dumps({"channel": "HubCommandChannel", "hub_id": hub_id})
        await ws.send_str(json.dumps({"command": "subscribe", "identifier": identifier}))
        await self._expect(ws, "confirm_subscription")
        return ws, identifier

    async def browser(self, port: int, hub_id: str, i: int) -> aiohttp.ClientWebSocketResponse:
        ws = await self._ws(port)
        identifier = json.dumps(
            {"channel": "HubSignalingChannel", "hub_id": hub_id, "browser_identity": _identity(i)}
        )
        await ws.send_str(json.dumps({"command": "subscribe", "identifier": identifier}))
        await self._expect(ws, "confirm_subscription")
        return ws

    async def idle_browsers(self, ports: list[int], first: int) -> None:
        gate = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with gate:
                await self.browser(ports[i % len(ports)], self.hub_ids[i % HUBS], first + i)

        await asyncio.gather(*(one(i) for i in range(BROWSERS)))

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


async def _drain_until_signal(ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        msg = await ws.receive_str()
        if '"signal"' in msg:
            return


async def _signals(hub: Any, hub_ch: str, browser: Any, identity: str, n: int) -> list[float]:
    out = []
    for i in range(n):
        data = json.dumps(
            {
                "action": "signal",
                "browser_identity": identity,
                "envelope": {"t": 1, "b": ENVELOPE_B, "n": i},
            }
        )
        frame = json.dumps({"command": "message", "identifier": hub_ch, "data": data})
        t0 = time.perf_counter()
        await hub.send_str(frame)
        await _drain_until_signal(browser)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _echoes(ws: aiohttp.ClientWebSocketResponse, size: int, n: int) -> list[float]:
    payload = "x" * size
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await ws.send_str(payload)
        await ws.receive_str()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _echo_setup(session: aiohttp.ClientSession) -> tuple[_Proc, Any, list[Any], float]:
    echo = await _Proc.start([sys.executable, "-c", ECHO_SERVER], "port")
    url = f"ws://127.0.0.1:{echo.port}/ws"
    before = _rss_kb(echo.proc.pid)
    gate = asyncio.Semaphore(50)
    idle: list[Any] = []

    async def one() -> None:
        async with gate:
            idle.append(await session.ws_connect(url))

    await asyncio.gather(*(one() for _ in range(BROWSERS)))
    await asyncio.sleep(0.5)  # let the server finish accepting before reading its RSS
    per_conn = (_rss_kb(echo.proc.pid) - before) / BROWSERS
    active = await session.ws_connect(url)
    idle.append(active)
    return echo, active, idle, per_conn


async def _measure(tmp: Path, redis_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        echo, echo_ws, echo_idle, out["echo_kb"] = await _echo_setup(session)
        relays: list[_Proc] = []
        load = _Load(session)
        try:
            # (a) one relay
            relay = await _relay(tmp / "one")
            relays.append(relay)
            token = await _token(tmp / "one", None)
            await load.register(relay.port, token)
            hubs = [await load.hub(relay.port, token, h) for h in load.hub_ids]
            await asyncio.sleep(0.5)
            base_rss = _rss_kb(relay.proc.pid)
            await load.idle_browsers([relay.port], 0)
            await asyncio.sleep(0.5)
            out["relay_kb"] = (_rss_kb(relay.proc.pid) - base_rss) / BROWSERS
            hub_ws, hub_ch = hubs[0]
            me = _identity(99999)
            browser = await load.browser(relay.port, load.hub_ids[0], 99999)
            await _signals(hub_ws, hub_ch, browser, me, WARMUP)
            size = len(json.dumps({"type": "signal", "envelope": {"t": 1, "b": ENVELOPE_B}}))
            await _echoes(echo_ws, size, WARMUP)
            out["one"], out["echo"] = [], []
            for _ in range(BLOCKS):
                out["one"] += await _signals(hub_ws, hub_ch, browser, me, SIGNALS // BLOCKS)
                out["echo"] += await _echoes(echo_ws, size, SIGNALS // BLOCKS)
            await load.close()
            await relay.stop()

            # (b) two relays through Redis
            if redis_url is not None:
                load = _Load(session)
                a = await _relay(tmp / "a", redis_url)
                b = await _relay(tmp / "b", redis_url)
                relays += [a, b]
                token = await _token(tmp / "a", redis_url)
                await load.register(a.port, token)
                hubs = [
                    await load.hub((a, b)[i % 2].port, token, h) for i, h in enumerate(load.hub_ids)
                ]
                await load.idle_browsers([a.port, b.port], 0)
                hub_ws, hub_ch = hubs[0]  # on A
                browser = await load.browser(b.port, load.hub_ids[0], 99999)
                await _signals(hub_ws, hub_ch, browser, me, WARMUP)
                out["redis"], out["echo2"] = [], []
                for _ in range(BLOCKS):
                    out["redis"] += await _signals(hub_ws, hub_ch, browser, me, SIGNALS // BLOCKS)
                    out["echo2"] += await _echoes(echo_ws, size, SIGNALS // BLOCKS)
                await load.close()
        finally:
            await load.close()
            await asyncio.gather(*(ws.close() for ws in echo_idle), return_exceptions=True)
            for p in relays:
                await p.stop()
            await echo.stop()
    return out


async def _with_redis(tmp: Path) -> dict[str, Any]:
    if redis_server_binary() is None:
        return await _measure(tmp, None)
    async with redis_server(tmp) as url:
        return await _measure(tmp, url)


def _line(label: str, ms: list[float]) -> None:
    print(f"  {label:<44} p50 {fmt_ms(median(ms)):>8}  p99 {fmt_ms(p99(ms)):>8}")


def run() -> list[Result]:
    nofile = _raise_nofile()
    header(
        f"relay: hub -> browser signal latency with {HUBS} hubs and {BROWSERS} idle browsers "
        "attached, vs a bare aiohttp websocket echo"
    )
    print(f"  RLIMIT_NOFILE {nofile}")
    with tempfile.TemporaryDirectory(prefix="bt-bench-relay-") as tmp:
        out = asyncio.run(_with_redis(Path(tmp)))
    _line("bare aiohttp echo round trip (baseline)", out["echo"])
    _line("relay: hub -> browser (one relay)", out["one"])
    results = []
    one_p99, echo_p99 = p99(out["one"]), p99(out["echo"])
    passed = one_p99 < GOAL_P99_ONE
    print(
        f"  goal: p99 < {GOAL_P99_ONE:g} ms: {fmt_ms(one_p99)} "
        f"({one_p99 / echo_p99:.2f}x the echo's) {verdict(passed)}"
    )
    results.append(
        Result("relay", "signal hub->browser p50", median(out["one"]), median(out["echo"]), "ms")
    )
    results.append(
        Result(
            "relay",
            "signal hub->browser p99",
            one_p99,
            echo_p99,
            "ms",
            f"< {GOAL_P99_ONE:g} ms",
            passed,
        )
    )
    if "redis" in out:
        _line("bare aiohttp echo round trip (interleaved)", out["echo2"])
        _line("relay A -> Redis -> relay B: hub -> browser", out["redis"])
        r_p99, e_p99 = p99(out["redis"]), p99(out["echo2"])
        passed = r_p99 < GOAL_P99_REDIS
        print(
            f"  goal: p99 < {GOAL_P99_REDIS:g} ms: {fmt_ms(r_p99)} "
            f"({r_p99 / e_p99:.2f}x the echo's) {verdict(passed)}"
        )
        results.append(
            Result(
                "relay",
                "signal across 2 relays (Redis) p50",
                median(out["redis"]),
                median(out["echo2"]),
                "ms",
            )
        )
        results.append(
            Result(
                "relay",
                "signal across 2 relays (Redis) p99",
                r_p99,
                e_p99,
                "ms",
                f"< {GOAL_P99_REDIS:g} ms",
                passed,
            )
        )
    else:
        print("  two relays through Redis: SKIPPED (redis-server is not installed)")
        results.append(
            Result(
                "relay",
                "signal across 2 relays (Redis) p99",
                None,
                None,
                "ms",
                f"< {GOAL_P99_REDIS:g} ms",
                skipped="no redis-server",
            )
        )
    kb, echo_kb = out["relay_kb"], out["echo_kb"]
    passed = kb < GOAL_KB
    print(
        f"  memory per idle connection: relay {kb:.1f} KB (subscribed browser), "
        f"bare echo {echo_kb:.1f} KB; goal < {GOAL_KB:g} KB {verdict(passed)}"
    )
    results.append(
        Result(
            "relay",
            "RSS per idle connection",
            kb,
            echo_kb,
            "KB",
            f"< {GOAL_KB:g} KB",
            passed,
        )
    )
    return results


if __name__ == "__main__":
    run()
