"""The browser app in Chromium over loopback, beside the Python test browser in the same run.

* pairing to agent list: ``page.goto(pairing URL)`` to the first ``[data-testid="agent"]``
  (fragment read, bundle verified, IndexedDB, ActionCable, Olm PreKey offer through the relay,
  WebRTC, hello, ``list_agents``, render); baseline: ``TestBrowser`` (aiortc + vodozemac,
  signalling over the hub socket) from the same kind of fresh code to ``list_agents``
  answered. 3 of each, interleaved; median.
* key to echo: an agent runs ``cat``; one byte typed through the page's client (Olm encrypt,
  data channel, hub, PTY echo, back, decrypt, to the terminal's write), timed in the page with
  ``performance.now()``; 200 keys 5 ms apart, p50/p99; baseline: the same through
  ``TestBrowser``, interleaved blocks.
* key to echo under a flood: an agent (``bench._tui.FLOODER``) redraws 14 rows as fast as its
  PTY takes them and echoes each key itself on row 1; 200 keys, timed to the echo parsed into
  xterm's buffer; the final row must be exact. Baseline: the Python test browser on a second
  flooder, once the first is gone. Information: the page's receive path during the flood
  (wait behind earlier messages, resyncs), and 100 more keys with Chromium's CPU throttled 4x
  (a phone), where the page drops stale output and resyncs (``web/src/termfeed.ts``).
* app size: JS + CSS of the built app, gzipped (information beside it: xterm.js alone).

Runs inside ``unshare --net`` with only ``lo`` (re-executing itself), like the end-to-end test;
Chromium is Debian's (``/usr/bin/chromium``). Reports SKIPPED when the relay, the hub's WebRTC,
Playwright, Chromium or the built app is missing.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import Result, fmt_ms, header, median, p99, verdict

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "botster" / "relay" / "static"
CHROMIUM = "/usr/bin/chromium"
PAIRINGS = 3
KEYS = 200
BLOCKS = 4
GOAL_PAIR_S = 3.0
GOAL_ECHO_P99_MS = 30.0
GOAL_SIZE_KB = 400.0
SLOW_CPU = 4  # Chromium's CPU throttling for the phone-speed run (information)
SLOW_KEYS = 100
SLOW_BUDGET_S = 90  # the slow run stops typing after this (a build without resync took minutes)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]

ECHO_JS = """
async ([n, gap]) => {
  const b = window.botster;
  const orig = b.page.output.bind(b.page);
  let waiter = null;
  b.page.output = (d) => { orig(d); if (waiter) { const w = waiter; waiter = null; w(); } };
  const times = [];
  for (let i = 0; i < n; i++) {
    const done = new Promise((r) => (waiter = r));
    const t0 = performance.now();
    b.client.input(new Uint8Array([97 + (i % 26)]));
    await done;
    times.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, gap));
  }
  b.client.input(new Uint8Array([13]));
  b.page.output = orig;
  return times;
}
"""


FLOOD_ECHO_JS = """
async ([n, gap, off, budgetMs]) => {
  const b = window.botster;
  const term = b.page.term;
  let want = null;
  let resolve = null;
  const sub = term.onWriteParsed(() => {
    if (!want) return;
    const line = term.buffer.active.getLine(term.buffer.active.viewportY);
    if (line && line.translateToString(false, want.col, want.col + 1) === want.ch) {
      want = null;
      resolve(true);
    }
  });
  const times = [];
  const start = performance.now();
  let k = off;
  for (; k < off + n; k++) {
    const ch = String.fromCharCode(97 + (k % 26));
    const left = budgetMs - (performance.now() - start);
    if (left <= 0) break;
    const done = new Promise((r) => (resolve = r));
    want = { col: k % 60, ch };
    const t0 = performance.now();
    b.client.input(new Uint8Array([ch.charCodeAt(0)]));
    const timer = setTimeout(() => resolve(false), left);
    const ok = await done;
    clearTimeout(timer);
    times.push(performance.now() - t0);
    if (!ok) { k++; break; }
    await new Promise((r) => setTimeout(r, gap));
  }
  sub.dispose();
  want = null;
  const row = term.buffer.active.getLine(term.buffer.active.viewportY).translateToString(true);
  return { times, row, typed: k - off };
}
"""


# The page's receive path while it floods (absent in builds without the counters): how long
# data-channel messages waited for the ones before them, and how often the terminal fell
# behind and asked the hub for a fresh snapshot instead of parsing stale output.
RECV_STATS_JS = """
(restart) => {
  const c = window.botster.carrier.stats, f = window.botster.page.feed?.stats;
  if (c && restart) c.lagMaxMs = 0;
  return c ? { messages: c.messages, lag_max_ms: c.lagMaxMs, resyncs: f ? f.resyncs : null,
               dropped: f ? f.droppedBytes : null } : null;
}
"""


SAMPLE_JS = """
() => {
  const c = window.botster.carrier.stats, m = performance.memory;
  return { heap_mb: m ? m.usedJSHeapSize / 1e6 : null, messages: c.messages,
           backlog: c.backlog ?? null, backlog_max: c.backlogMax, overruns: c.overruns ?? null };
}
"""


async def _sample(page: Any) -> None:
    """Diagnostics (BOTSTER_BENCH_DIAG=1): the page's heap and receive backlog every second."""
    page.on("crash", lambda _p: print("PAGE CRASHED", flush=True))
    t0 = time.perf_counter()
    while True:
        try:
            print(f"{time.perf_counter() - t0:5.1f}s", await page.evaluate(SAMPLE_JS), flush=True)
        except Exception as e:  # noqa: BLE001 - diagnostics only
            print("sample failed:", e, flush=True)
            return
        await asyncio.sleep(1)


def _recv_text(pair: list) -> str:
    a, b = pair
    if not a or not b:
        return "no receive counters in this build"
    return (
        f"{b['messages'] - a['messages']} messages, longest wait behind earlier ones "
        f"{fmt_ms(b['lag_max_ms'])}, {b['resyncs'] - a['resyncs']} resyncs "
        f"({(b['dropped'] - a['dropped']) / 1e6:.1f} MB of stale output not parsed)"
    )


def _expected_row(n: int) -> str:
    """Row 1 of the flooder after n keys: key k at column k % 60, the latest one wins."""
    cells = [" "] * 60
    for k in range(n):
        cells[k % 60] = chr(97 + k % 26)
    return "".join(cells).rstrip()


def _missing() -> str:
    for mod in ("botster.relay.server", "botster.remote.test_browser", "playwright.async_api"):
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not available"
    if not Path(CHROMIUM).exists():
        return "no /usr/bin/chromium"
    if not (STATIC / "index.html").exists():
        return "the web app is not built (make web)"
    if shutil.which("unshare") is None:
        return "no unshare"
    return ""


def _app_size_kb() -> tuple[float, float]:
    total = sum(len(gzip.compress(p.read_bytes())) for p in (STATIC / "assets").iterdir())
    xterm = ROOT / "web" / "node_modules" / "@xterm" / "xterm" / "lib" / "xterm.mjs"
    base = len(gzip.compress(xterm.read_bytes())) if xterm.exists() else 0
    return total / 1000, base / 1000


async def _measure() -> dict[str, object]:
    import pyte
    from playwright.async_api import async_playwright

    from bench._hub import HubRun, Sandbox
    from bench._tui import flooder_argv
    from botster.base.framing import PTY_OUTPUT, SNAPSHOT, split_session
    from botster.remote.test_browser import SocketSignaller, TestBrowser

    out: dict[str, object] = {}
    with Sandbox() as sb:
        defs = sb.repo / ".botster" / "agents" / "cat"
        defs.mkdir(parents=True)
        (defs / "initialization").write_text("exec cat\n")
        flood_defs = sb.repo / ".botster" / "agents" / "flood"
        flood_defs.mkdir(parents=True)
        (flood_defs / "initialization").write_text(f"exec {' '.join(flooder_argv(sb.root))}\n")
        data = sb.root / "relay"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli = [sys.executable, "-m", "botster.cli", "relay"]
        relay = await asyncio.create_subprocess_exec(
            *cli, "--port", str(port), "--data", str(data),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=sb.env,
        )  # fmt: skip
        url0 = f"http://127.0.0.1:{port}"
        minting = await asyncio.create_subprocess_exec(
            *cli, "token", "--data", str(data), stdout=subprocess.PIPE, env=sb.env
        )
        token = (await minting.communicate())[0].decode().split()[-1]
        # The Python test browser in this process also keeps its ICE on loopback.
        os.environ["BOTSTER_WEBRTC_LOOPBACK"] = "1"
        sb.env.update(
            {"BOTSTER_SERVER_URL": url0, "BOTSTER_TOKEN": token, "BOTSTER_WEBRTC_LOOPBACK": "1"}
        )
        hub = HubRun(sb)
        try:
            await hub.start()
            await hub.wait_ready(timeout=60)
            conn = await hub.connect("bench")
            await conn.request("create_agent", {"agent": "cat", "branch": "bench"})
            session_id = ""
            for _ in range(200):
                agents = await conn.request("list_agents")
                session_id = next((a.get("session_id") for a in agents if a.get("session_id")), "")
                if session_id:
                    break
                await asyncio.sleep(0.05)

            async def fresh_url() -> str:
                for _ in range(300):
                    u = (await conn.request("connection.regenerate"))["url"]
                    if u.startswith(url0) and "/hubs/" in u:
                        return u
                    await asyncio.sleep(0.1)
                raise RuntimeError("the hub never registered with the relay")

            async with async_playwright() as pw:
                diag = bool(os.environ.get("BOTSTER_BENCH_DIAG"))
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM,
                    args=CHROMIUM_ARGS + (["--enable-logging=stderr", "--v=0"] if diag else []),
                )
                pair_web: list[float] = []
                pair_py: list[float] = []
                pys: list[TestBrowser] = []
                page = None
                for _ in range(PAIRINGS):
                    url = await fresh_url()
                    ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
                    p = await ctx.new_page()
                    t0 = time.perf_counter()
                    await p.goto(url)
                    await p.locator('[data-testid="agent"]').first.wait_for(timeout=30_000)
                    pair_web.append(time.perf_counter() - t0)
                    out["milestones"] = await p.evaluate("() => window.botster.log.slice(0, 12)")
                    page = page or p
                    url = await fresh_url()
                    t0 = time.perf_counter()
                    tb = TestBrowser(url, SocketSignaller(conn))
                    await tb.connect()
                    await tb.request("list_agents")
                    pair_py.append(time.perf_counter() - t0)
                    pys.append(tb)
                out["pair_web"], out["pair_py"] = pair_web, pair_py

                # The first page's agent and the first test browser's terminal.
                assert page is not None
                await page.locator('[data-testid="agent"]').first.click()
                await page.wait_for_function("() => window.botster.client.attachedSession")
                tb = pys[0]
                got = asyncio.Event()

                def on_frame(ftype: int, payload: bytes) -> None:
                    if ftype == PTY_OUTPUT:
                        got.set()

                tb.on_frame = on_frame
                tb.attach(session_id)
                await tb.wait_for(lambda: session_id in tb.screens)
                echo_web: list[float] = []
                echo_py: list[float] = []
                for _ in range(BLOCKS):
                    echo_web += await page.evaluate(ECHO_JS, [KEYS // BLOCKS, 5])
                    for i in range(KEYS // BLOCKS):
                        got.clear()
                        t0 = time.perf_counter()
                        tb.type(session_id, bytes([97 + i % 26]))
                        await asyncio.wait_for(got.wait(), 10)
                        echo_py.append((time.perf_counter() - t0) * 1000)
                        await asyncio.sleep(0.005)
                    tb.type(session_id, b"\r")
                out["echo_web"], out["echo_py"] = echo_web, echo_py

                # The same while an agent floods its screen and echoes keys itself on row 1.
                await conn.request("create_agent", {"agent": "flood", "branch": "flood"})
                web_flood = page.locator('[data-testid="agent"][data-agent-key="flood"]')
                await web_flood.wait_for(timeout=30_000)
                await web_flood.click()
                await page.wait_for_function(
                    "() => window.botster.page.term.buffer.active.getLine(1)"
                    ".translateToString().includes('flood')",
                    timeout=30_000,
                )
                before = await page.evaluate(RECV_STATS_JS, True)
                flood = await page.evaluate(FLOOD_ECHO_JS, [KEYS, 5, 0, 300_000])
                out["flood_web"], out["flood_row"] = flood["times"], flood["row"]
                out["flood_recv"] = [before, await page.evaluate(RECV_STATS_JS, False)]
                # Information: the same on a phone-speed CPU (Chromium's CPU throttled), where
                # the page cannot parse the whole flood and must resync instead.
                cdp = await page.context.new_cdp_session(page)
                await cdp.send("Emulation.setCPUThrottlingRate", {"rate": SLOW_CPU})
                before = await page.evaluate(RECV_STATS_JS, True)
                sampler = asyncio.create_task(_sample(page)) if diag else None
                slow = await page.evaluate(
                    FLOOD_ECHO_JS, [SLOW_KEYS, 5, KEYS, SLOW_BUDGET_S * 1000]
                )
                out["slow_web"], out["slow_row"] = slow["times"], slow["row"]
                out["slow_typed"] = slow["typed"]
                if sampler:
                    sampler.cancel()
                out["slow_recv"] = [before, await page.evaluate(RECV_STATS_JS, False)]
                await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
                # Baseline: a second flooder watched by the Python test browser, once the first
                # is gone (two flooders and their watchers would share two cores).
                await page.locator('[data-testid="agent"][data-agent-key="bench"]').click()
                await conn.request("close_agent", {"agent_key": "flood"})
                await conn.request("create_agent", {"agent": "flood", "branch": "flood2"})
                sid2 = ""
                for _ in range(200):
                    agents = await conn.request("list_agents")
                    sid2 = next(
                        (a["session_id"] for a in agents if a["agent_key"] == "flood2"
                         and a.get("session_id")), "",
                    )  # fmt: skip
                    if sid2:
                        break
                    await asyncio.sleep(0.05)
                want: list = [b"", (0, "")]
                tail = bytearray()
                seen = {"frames": 0, "snapshots": 0}

                def on_flood(ftype: int, payload: bytes) -> None:
                    seen["frames"] += 1
                    seen["snapshots"] += ftype == SNAPSHOT
                    if not want[0]:
                        return
                    if ftype == PTY_OUTPUT:
                        tail.extend(payload)
                        found = want[0] in tail
                        del tail[:-64]
                    elif ftype == SNAPSHOT:
                        # The hub resynced a client that fell behind: read row 1 of the screen.
                        _, data = split_session(payload)
                        rows, cols = struct.unpack("<HH", data[:4])
                        screen = pyte.Screen(cols, rows)
                        pyte.ByteStream(screen).feed(data[4:])
                        col, ch = want[1]
                        found = screen.display[0][col] == ch
                    else:
                        return
                    if found:
                        want[0] = b""
                        got.set()

                tb.on_frame = on_flood
                tb.attach(sid2)
                # Until the flooder draws, its terminal is not raw yet: a key typed then is
                # flushed by its tcsetattr and never echoed.
                await tb.wait_for(lambda: b"flood " in tb.screens.get(sid2, b""), within=60)
                flood_py: list[float] = []
                for k in range(KEYS):
                    got.clear()
                    tail.clear()
                    want[0] = b"\x1b[1;%dH%c" % (k % 60 + 1, 97 + k % 26)
                    want[1] = (k % 60, chr(97 + k % 26))
                    t0 = time.perf_counter()
                    tb.type(sid2, bytes([97 + k % 26]))
                    try:
                        await asyncio.wait_for(got.wait(), 10)
                    except TimeoutError:
                        out["flood_py_failed"] = (
                            f"key {k}: no echo within 10 s ({seen['frames']} frames, "
                            f"{seen['snapshots']} snapshots, "
                            f"channel {tb.dc.readyState if tb.dc else None})"
                        )
                        break
                    flood_py.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.005)
                out["flood_py"] = flood_py
                for t in pys:
                    await t.close()
                await browser.close()
            await conn.close()
        finally:
            if hub.proc and hub.proc.returncode is None:
                hub.proc.terminate()
                await hub.proc.wait()
            relay.terminate()
            await relay.wait()
    return out


def _inner(path: str) -> None:
    res = asyncio.run(_measure())
    Path(path).write_text(json.dumps(res))


def run() -> list[Result]:
    header("browser: the web app in Chromium vs the Python test browser (loopback WebRTC)")
    why = _missing()
    names = (
        "pairing to agent list",
        "key to echo p99",
        "key to echo p99 under flood",
        "app size gzipped",
    )
    if why:
        print(f"  SKIPPED: {why}")
        return [Result("browser", n, None, None, "ms", skipped=why) for n in names]
    size, xterm = _app_size_kb()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        script = 'ip link set lo up && exec "$0" -m bench.browser --inner "$1"'
        proc = subprocess.run(
            ["unshare", "--net", "--", "sh", "-c", script, sys.executable, str(out)],
            cwd=ROOT,
            env={**os.environ, "BOTSTER_IN_NETNS": "1"},
            timeout=600,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"the browser benchmark failed (exit {proc.returncode})")
        r = json.loads(out.read_text())
    pw, pp = median(r["pair_web"]) * 1000, median(r["pair_py"]) * 1000
    ew, ep = p99(r["echo_web"]), p99(r["echo_py"])
    print(f"  pairing -> agent list: Chromium {fmt_ms(pw)}, Python test browser {fmt_ms(pp)}")
    print("  last Chromium pairing (ms since navigation): " + "; ".join(r["milestones"]))
    print(
        f"  key -> echo: Chromium p50 {fmt_ms(median(r['echo_web']))} p99 {fmt_ms(ew)}; "
        f"Python p50 {fmt_ms(median(r['echo_py']))} p99 {fmt_ms(ep)}"
    )
    fw = p99(r["flood_web"])
    fp = p99(r["flood_py"]) if len(r["flood_py"]) == KEYS else None
    row_ok = r["flood_row"].rstrip() == _expected_row(KEYS)
    py_text = fmt_ms(fp) if fp is not None else f"- ({r.get('flood_py_failed')})"
    print(
        f"  key -> echo while the agent floods: Chromium p50 {fmt_ms(median(r['flood_web']))} "
        f"p99 {fmt_ms(fw)}, Python p99 {py_text}; "
        f"final echo row {'matches' if row_ok else 'DIFFERS: ' + r['flood_row']}"
    )
    print(f"  Chromium's receive path during the flood: {_recv_text(r['flood_recv'])}")
    typed = r["slow_typed"]
    slow_ok = r["slow_row"].rstrip() == _expected_row(KEYS + typed)
    cut = "" if typed == SLOW_KEYS else f" (only {typed} keys within {SLOW_BUDGET_S} s)"
    print(
        f"  the same with Chromium's CPU {SLOW_CPU}x slower (a phone; information): "
        f"p50 {fmt_ms(median(r['slow_web']))} p99 {fmt_ms(p99(r['slow_web']))}{cut}; "
        "final echo row "
        f"{'matches' if slow_ok else 'DIFFERS: ' + r['slow_row']}; {_recv_text(r['slow_recv'])}"
    )
    print(f"  app size: {size:.0f} KB gzipped (xterm.js alone {xterm:.0f} KB)")
    return [
        Result(
            "browser",
            "pairing to agent list",
            pw,
            pp,
            "ms",
            f"< {GOAL_PAIR_S:.0f} s",
            pw < GOAL_PAIR_S * 1000,
        ),
        Result("browser", "key to echo p99", ew, ep, "ms", "< 30 ms", ew < GOAL_ECHO_P99_MS),
        Result(
            "browser",
            "key to echo p99 under flood",
            fw,
            fp,
            "ms",
            "< 100 ms, exact final row",
            fw < 100 and row_ok,
        ),
        Result(
            "browser",
            "app size gzipped",
            size,
            xterm or None,
            "KB",
            "< 400 KB",
            size < GOAL_SIZE_KB,
        ),  # fmt: skip
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        _inner(sys.argv[2])
    else:
        for row in run():
            print(row.bench, row.metric, row.status, verdict(bool(row.passed)))
