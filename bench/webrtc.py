"""Remote access over WebRTC: the Python test browser against a real hub, vs bare aiortc.

Runs in a network namespace with only loopback (the module re-executes itself under
``unshare --net`` when it is not in one; aioice host candidates are forced to 127.0.0.1 on both
ends). One real hub (``bench._hub``) with a ``ticker`` plugin (10 ms timer, for loop jitter),
its embedded relay off; the browser (``botster.remote.test_browser``) pairs and signals over the
hub socket (``remote.signal``), then speaks the client protocol on the encrypted data channel.

Each measurement has a baseline measured in the same run with two bare aiortc peers in this
process (one ordered reliable channel, no Olm, no hub):

* pairing to first screen: new ``TestBrowser`` from the code URL -> offer -> answer -> channel
  open -> hello -> ``subscribe terminal`` -> first SNAPSHOT, with a fresh code once the hub's
  WebRTC process (which a code starts) is up, as when a person scans it; as information, cold:
  the first browser offering the instant the first code exists; baseline: offer to open;
* key to echo: one byte typed into ``cat``, until its echo arrives as PTY_OUTPUT; 200 keys,
  p50/p99; baseline: a 1-byte message echoed by the other bare peer;
* PTY output to the browser: a session prints 16 MB of base64 lines; MB/s to the end marker
  (with flow control a slow browser gets a fresh snapshot instead of a backlog, so the bytes
  counted are the program's); baseline: 16 MB in 64 KiB messages between the bare peers;
* hub loop jitter (``|interval - 10 ms|`` of the ticker, from the hub log) during that flood,
  against quiet windows of the same hub;
* hub start (the hub's own ``hub ready ... in N ms``) with remote access configured (a stored
  account and code, ``server_url`` set) and no peer, against the same hub without: 9 back-to-
  back pairs, which goes first alternating; the goal is read on the median of the pairs'
  differences in the hub's own start time (its ready line; the CPU it used until then, which
  the line also gives, as information), and the modules each imported until ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import Result, child_env, fmt_ms, header, median, p99, verdict
from bench._hub import SPAWNER, HubRun, Sandbox, cpu_seconds, runqueue_wait_s
from bench._jitter import TICK_LINE, TICKER, describe, inside, stamps

__all__ = ["run"]

KEYS = 200
FLOOD_MB = 16
QUIET_S = 2.0
STARTS = 9


async def _bare_pair() -> tuple[object, object, object, object, float]:
    """Two bare aiortc peers connected by one channel; returns (pc1, pc2, dc1, dc2, open s)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    t0 = time.perf_counter()
    pc1 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc2 = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    dc1 = pc1.createDataChannel("relay", ordered=True)
    got: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    pc2.on("datachannel", lambda dc: got.set_result(dc))
    opened = asyncio.Event()
    dc1.on("open", opened.set)
    await pc1.setLocalDescription(await pc1.createOffer())
    await pc2.setRemoteDescription(pc1.localDescription)
    await pc2.setLocalDescription(await pc2.createAnswer())
    await pc1.setRemoteDescription(pc2.localDescription)
    dc2 = await got
    await opened.wait()
    return pc1, pc2, dc1, dc2, time.perf_counter() - t0


def _write_config(sandbox: Sandbox, config: dict[str, object]) -> None:
    home = Path(sandbox.env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(config))


async def _bare() -> dict[str, float | list[float]]:
    pc1, pc2, dc1, dc2, open_s = await _bare_pair()
    echo = asyncio.Queue()
    dc2.on("message", lambda m: dc2.send(m))  # type: ignore[attr-defined]
    dc1.on("message", echo.put_nowait)  # type: ignore[attr-defined]
    rtts = []
    for _ in range(KEYS):
        t = time.perf_counter()
        dc1.send(b"k")  # type: ignore[attr-defined]
        await echo.get()
        rtts.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.005)
    await pc1.close()
    await pc2.close()
    pc1, pc2, dc1, dc2, _ = await _bare_pair()
    total = FLOOD_MB << 20
    got = 0
    done = asyncio.Event()

    def count(m: bytes) -> None:
        nonlocal got
        got += len(m)
        if got >= total:
            done.set()

    dc2.on("message", count)  # type: ignore[attr-defined]
    chunk = os.urandom(64 << 10)
    low = asyncio.Event()
    dc1.bufferedAmountLowThreshold = 256 << 10  # type: ignore[attr-defined]
    dc1.on("bufferedamountlow", low.set)  # type: ignore[attr-defined]
    t = time.perf_counter()
    sent = 0
    while sent < total:
        if dc1.bufferedAmount > (1 << 20):  # type: ignore[attr-defined]
            low.clear()
            await low.wait()
        dc1.send(chunk)  # type: ignore[attr-defined]
        sent += len(chunk)
    await done.wait()
    mbps = total / 1e6 / (time.perf_counter() - t)
    await pc1.close()
    await pc2.close()
    return {"open_ms": open_s * 1000, "rtts": rtts, "mbps": mbps}


async def _hub_side(sandbox: Sandbox) -> tuple[dict[str, object], list[str]]:
    from botster.remote.test_browser import SocketSignaller, TestBrowser

    sandbox.write_plugin("ticker", TICKER)
    sandbox.write_plugin("spawner", SPAWNER)
    hub = HubRun(sandbox)
    # A session of its own, as `botster` starts a hub (hub/launch.py): with scheduler
    # autogroups the hub would otherwise share one CPU share with this process, whose aiortc
    # plays the browser (on another machine in real use) and takes the flood at full tilt.
    hub.command = ["setsid", *hub.command]
    await hub.start()
    notes: list[str] = []
    out: dict[str, object] = {}
    try:
        await hub.wait_for(r"hub ready:", timeout=60)
        conn = await hub.connect()
        cat = await conn.request("bench.spawn", {"cmd": "cat"})

        async def pair() -> tuple[TestBrowser, float, float]:
            code = await conn.request("connection.regenerate")
            t0 = time.perf_counter()
            browser = TestBrowser(code["url"], SocketSignaller(conn))
            await browser.connect()
            t_open = time.perf_counter()
            browser.attach(cat)
            await browser.wait_for(lambda: cat in browser.screens)
            return browser, (t_open - t0) * 1000, (time.perf_counter() - t0) * 1000

        # Cold: the browser offers the instant the first code exists, while the hub's WebRTC
        # process (started by that code) still imports aiortc. A person scanning a code takes
        # seconds; that is the measured case: a fresh browser, a fresh code, the process up.
        browser, cold_open, out["cold_pair_ms"] = await pair()
        await hub.wait_for(r"webrtc process \d+ ready in (\d+) ms", timeout=120)
        second, warm_open, out["pair_ms"] = await pair()
        await second.close()
        started = (await hub.wait_for(r"webrtc process \d+ ready in (\d+) ms")).group(1)
        notes.append(
            f"pairing, code shown before the scan: {warm_open:.0f} ms to hello_ack, then the first "
            f"screen; cold (offer the instant the first code exists): {cold_open:.0f} ms to "
            f"hello_ack, {out['cold_pair_ms']:.0f} ms to the screen (the WebRTC process was "
            f"ready {started} ms after that code was made)"
        )
        rtts = []
        for i in range(KEYS):
            key = bytes([97 + i % 26])
            before = len(browser.screens[cat])
            t = time.perf_counter()
            browser.type(cat, key)
            await browser.wait_for(lambda b=before: len(browser.screens[cat]) > b)
            rtts.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.005)
        out["rtts"] = rtts
        # The same keys over the hub socket (information: what the WebRTC carrier adds).
        from botster.base.framing import (
            PTY_INPUT,
            PTY_OUTPUT,
            SNAPSHOT,
            Frame,
            encode_frame,
            encode_session,
        )
        from botster.transports.client import HubConnection

        echoed, screen = asyncio.Event(), asyncio.Event()

        def on_frame(frame: Frame) -> None:
            if frame.type == PTY_OUTPUT:
                echoed.set()
            elif frame.type == SNAPSHOT:
                screen.set()

        sock = await HubConnection.connect(sandbox.hub_socket(), "bench", on_frame=on_frame)
        sock.subscribe("terminal", {"session_id": cat})
        # Keys only once the screen is here: the client reads the terminal straight from the
        # session, and an echo that came before that stream began is in its snapshot.
        await asyncio.wait_for(screen.wait(), 30)
        socket_rtts = []
        for i in range(KEYS):
            echoed.clear()
            t = time.perf_counter()
            sock.send_raw(encode_frame(PTY_INPUT, encode_session(cat, bytes([97 + i % 26]))))
            await asyncio.wait_for(echoed.wait(), 30)
            socket_rtts.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(0.005)
        await sock.close()
        out["socket_rtts"] = socket_rtts
        # Flood: FLOOD_MB of base64 lines, then a marker.
        script = f"head -c {FLOOD_MB * 3 // 4 << 20} /dev/zero | base64 -w 76; echo END-OF-FLOOD"
        await conn.request("bench.mark", {"text": "QUIET start"})
        await asyncio.sleep(QUIET_S)
        await conn.request("bench.mark", {"text": "QUIET end"})
        flooder = await conn.request(
            "bench.spawn", {"cmd": "sh", "args": ["-c", f"read go; {script}; read x"]}
        )
        browser.attach(flooder)
        await browser.wait_for(lambda: flooder in browser.screens)
        rtc_pid = int((await hub.wait_for(r"webrtc process (\d+) ready")).group(1))
        session_pids = [int(r["pid"]) for r in sandbox.session_records() if r.get("pid")]

        def cpu() -> tuple[float, ...]:
            return (
                cpu_seconds(hub.pid),
                runqueue_wait_s(hub.pid),
                cpu_seconds(rtc_pid),
                sum(map(cpu_seconds, session_pids)),
                time.process_time(),
            )

        cpu0 = cpu()
        await conn.request("bench.mark", {"text": "FLOOD start"})
        t = time.perf_counter()
        browser.type(flooder, b"go\n")
        await browser.wait_for(
            lambda: b"END-OF-FLOOD" in browser.screens[flooder][-4096:], within=300
        )
        flood_s = time.perf_counter() - t
        d = [b - a for a, b in zip(cpu0, cpu(), strict=True)]
        notes.append(
            f"during the flood: CPU of the hub {d[0]:.1f} s (and {d[1]:.1f} s waiting for a "
            f"CPU), the WebRTC process {d[2]:.1f} s, the session processes (niced) {d[3]:.1f} "
            f"s, the browser (this process) {d[4]:.1f} s; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        await conn.request("bench.mark", {"text": "FLOOD end"})
        out["mbps"] = FLOOD_MB * (1 << 20) * 4 / 3 * 77 / 76 / 1e6 / flood_s
        got = len(browser.screens[flooder])
        notes.append(
            f"flood: {flood_s:.1f} s; {got / 1e6:.1f} MB reached the browser "
            f"({sum(1 for f in browser.frames if f[0] == 4)} snapshots in all: resyncs when "
            "the channel's buffer stayed high)"
        )
        await browser.close()
        await conn.close()
    finally:
        await hub.stop()
    marks = stamps(hub, r"\[spawner\] MARK (QUIET start|QUIET end|FLOOD start|FLOOD end)")
    ticks = stamps(hub, TICK_LINE)
    out["quiet"] = inside(ticks, [(marks[0], marks[1])])
    out["flood"] = inside(ticks, [(marks[2], marks[3])])
    return out, notes


async def _start_times() -> tuple[
    list[tuple[float, float]], list[tuple[float, float]], list[set[str]]
]:
    """The hub's start (wall ms, CPU ms) to ``hub ready``: with remote access configured
    (a stored account, a code made in an earlier run, ``server_url`` set) and without."""
    with_remote, without = Sandbox(), Sandbox()
    try:
        # Make the account and a code once, in the with-remote sandbox.
        _write_config(with_remote, {"embedded_relay": False, "server_url": "http://127.0.0.1:9"})
        _write_config(without, {"embedded_relay": False})
        hub = HubRun(with_remote)
        await hub.start()
        await hub.wait_for(r"hub ready:", timeout=60)
        conn = await hub.connect()
        await conn.request("connection.code")
        await conn.close()
        await hub.stop()
        a, b = [], []
        pairs = [(with_remote, a), (without, b)]
        for i in range(STARTS):
            # Alternate which starts first: the second of two back-to-back starts runs warmer.
            for sandbox, into in pairs if i % 2 == 0 else pairs[::-1]:
                run = HubRun(sandbox)
                await run.start()
                # The hub's own start time (its log line): the spawn of a Python process on
                # a loaded machine varies by more than what is measured here.
                m = await run.wait_for(r"hub ready: .* in (\d+) ms \((\d+) ms CPU", timeout=60)
                into.append((float(m.group(1)), float(m.group(2))))
                await run.stop()
        # What the time cannot show on a loaded machine: the modules each imports until ready.
        imported = []
        for sandbox in (with_remote, without):
            run = HubRun(sandbox)
            run.env["PYTHONPROFILEIMPORTTIME"] = "1"
            await run.start()
            await run.wait_for(r"hub ready:", timeout=60)
            ready = next(i for i, line in enumerate(run.lines) if "hub ready:" in line)
            imported.append(
                {x.rsplit("|", 1)[1].strip() for x in run.lines[:ready] if "import time:" in x}
            )
            await run.stop()
        return a, b, imported
    finally:
        with_remote.close()
        without.close()


async def _warm_bytecode() -> None:
    """Compiles aiortc and its dependencies into the children's bytecode cache, unmeasured
    (installed users have ``.pyc`` files; the fresh cache prefix has none)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import aiortc, botster.remote.rtc_process", env=child_env()
    )
    if await proc.wait() != 0:
        raise RuntimeError("cannot import aiortc in a child process")


async def _measure() -> tuple[dict[str, object], dict[str, object], list[str]]:
    await _warm_bytecode()
    bare = await _bare()
    with Sandbox() as sandbox:
        # The bench process plays the browser: no relay, loopback ICE.
        _write_config(sandbox, {"embedded_relay": False})
        real, notes = await _hub_side(sandbox)
    with_remote, without, imported = await _start_times()
    real["start"] = (with_remote, without)
    extra, missing = sorted(imported[0] - imported[1]), sorted(imported[1] - imported[0])
    notes.append(
        f"modules imported until hub ready: {len(imported[0])} with remote access configured, "
        f"{len(imported[1])} without; only with: {extra or 'none'}; only without: "
        f"{missing or 'none'}"
    )
    return real, bare, notes


def _in_netns() -> bool:
    return os.environ.get("BOTSTER_IN_NETNS") == "1"


def run() -> list[Result]:
    header("webrtc: the test browser over an encrypted data channel vs bare aiortc")
    if not _in_netns():
        # Re-run inside a namespace with only loopback; read the results back as JSON.
        script = 'ip link set lo up && exec "$0" -m bench.webrtc --json'
        proc = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", script, sys.executable],
            env={**os.environ, "BOTSTER_IN_NETNS": "1", "BOTSTER_WEBRTC_LOOPBACK": "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bench.webrtc in a netns failed:\n{proc.stdout}\n{proc.stderr}")
        lines = proc.stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        return [Result(**r) for r in json.loads(lines[-1])]
    os.environ["BOTSTER_WEBRTC_LOOPBACK"] = "1"
    from botster.remote.test_browser import force_loopback

    force_loopback()
    real, bare, notes = asyncio.run(_measure())
    rtts, bare_rtts = real["rtts"], bare["rtts"]
    quiet, flood = real["quiet"], real["flood"]
    with_remote, without = real["start"]
    print(
        f"  pairing to first screen: {fmt_ms(real['pair_ms'])} (cold: "
        f"{fmt_ms(real['cold_pair_ms'])}); bare offer to open: {fmt_ms(bare['open_ms'])}"
    )
    print(
        f"  key to echo: p50 {fmt_ms(median(rtts))} p99 {fmt_ms(p99(rtts))}; bare echo: "
        f"p50 {fmt_ms(median(bare_rtts))} p99 {fmt_ms(p99(bare_rtts))}"
    )
    socket_rtts = real["socket_rtts"]
    print(
        f"  key to echo over the hub socket (information): p50 {fmt_ms(median(socket_rtts))} "
        f"p99 {fmt_ms(p99(socket_rtts))}"
    )
    print(
        f"  PTY output to the browser: {real['mbps']:.1f} MB/s; bare aiortc {bare['mbps']:.1f}"
        " MB/s (both peers in one process)"
    )
    print(describe("hub quiet (baseline)", quiet))
    print(describe("hub while the browser takes the flood", flood))
    # Each round's two starts ran back to back and are compared with each other (the load
    # moves whole rounds); the CPU the hub used until ready is information: it counts the
    # interpreter's start too and varies by +-15 ms even on a quiet machine.
    wall_with, cpu_with = [w for w, _ in with_remote], [c for _, c in with_remote]
    wall_without, cpu_without = [w for w, _ in without], [c for _, c in without]
    cpu_delta = median([a - b for a, b in zip(cpu_with, cpu_without, strict=True)])
    wall_delta = median([a - b for a, b in zip(wall_with, wall_without, strict=True)])
    print(
        f"  hub start (median of {STARTS}): with remote access configured "
        f"{fmt_ms(median(wall_with))} wall, {fmt_ms(median(cpu_with))} CPU; without "
        f"{fmt_ms(median(wall_without))} wall, {fmt_ms(median(cpu_without))} CPU; median of "
        f"the rounds' differences {wall_delta:+.0f} ms wall, {cpu_delta:+.0f} ms CPU"
    )
    for line in notes:
        print(f"  {line}")
    results = [
        Result(
            "webrtc",
            "pairing to first screen",
            real["pair_ms"],
            bare["open_ms"],
            "ms",
            "< 1 s",
            real["pair_ms"] < 1000,
        ),
        Result("webrtc", "pairing, cold (info)", real["cold_pair_ms"], bare["open_ms"], "ms"),
        Result(
            "webrtc", "key to echo p99", p99(rtts), p99(bare_rtts), "ms", "< 20 ms", p99(rtts) < 20
        ),
        Result("webrtc", "key to echo p99, socket (info)", p99(socket_rtts), p99(rtts), "ms"),
        Result(
            "webrtc",
            "PTY output to the browser",
            real["mbps"],
            bare["mbps"],
            "MB/s",
            ">= 0.5x bare",
            real["mbps"] >= 0.5 * bare["mbps"],
        ),
        Result(
            "webrtc",
            "hub p99 tick jitter, browser flooded",
            p99(flood),
            p99(quiet),
            "ms",
            "< 5 ms",
            p99(flood) < 5,
        ),
        Result(
            "webrtc",
            "hub start, remote configured",
            median(wall_with),
            median(wall_without),
            "ms",
            "within 5 ms (paired)",
            wall_delta < 5,
        ),
        Result(
            "webrtc",
            "hub start CPU, remote configured (info)",
            median(cpu_with),
            median(cpu_without),
            "ms",
        ),
    ]
    for r in results:
        if r.passed is not None:
            print(f"  {r.metric}: {verdict(r.passed)}")
    if "--json" in sys.argv:
        print(json.dumps([r.__dict__ for r in results]))
    return results


if __name__ == "__main__":
    run()
