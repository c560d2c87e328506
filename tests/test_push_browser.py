"""Web push (issue 16), browser side, in real Chromium: the switch, the notification, the click.

Debian's /usr/bin/chromium driven by Playwright for Python, inside the ``netns`` fixture's
loopback-only network namespace, paired through a real ``botster relay`` with a real hub, as
``tests/test_web_e2e.py`` does (helpers in ``tests/browser.py``). The path, and what is stubbed:

1. The hub panel's switch: Notifications are allowed with Playwright's context permissions
   (the browser's own prompt answers "granted"); the page asks the hub for its VAPID key and
   calls ``PushManager.subscribe``, which is **stubbed** in the page (an init script): headless
   Chromium's real one needs a vendor push service (FCM) it cannot reach offline. The stub
   records the ``applicationServerKey`` it was given and returns a subscription whose endpoint
   is the loopback push service of ``harness/push_service.py``, with real P-256 ``p256dh`` and
   ``auth`` keys that service holds. The page hands it to the hub (``push.subscribe``).
2. An agent nobody is looking at rings its bell: the hub's ``lib/attention.lua`` calls
   ``push.send``, which encrypts and POSTs to the loopback service; the service checks the
   VAPID JWT and decrypts the body with the subscription's private key (so the hub really
   stored that subscription).
3. Chromium receives the push: the **decrypted** payload is delivered to the service worker by
   the DevTools protocol's ``ServiceWorker.deliverPushMessage`` (what the vendor service and
   Chromium's push client would do after decrypting): a trusted ``push`` event, and the service
   worker shows the notification, read back with ``registration.getNotifications()``.
4. The click: neither Playwright nor CDP can click a notification, so the test dispatches a
   ``notificationclick`` carrying that real notification in the service worker
   (``context.service_workers``). A script-made event may not ``waitUntil`` (Chromium refuses),
   so the test takes the promise the handler gives it and awaits it. The window already open
   on this hub is told to show the agent: the page selects it. Not covered: ``focus()`` and
   ``openWindow()`` need the real click's user activation; without it Chromium refuses both
   (the handler has told the window by then), so the no-window-open path is only in Vitest.
5. The switch off: the hub forgets the subscription (the next bell reaches nobody).
"""

from __future__ import annotations

import json

import playwright.async_api as playwright_api

from botster.transports.client import HubConnection
from harness.push_service import push_service
from tests.browser import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Relay,
    mint_token,
    pairing_url,
    until,
)
from tests.test_push import WATCHER
from tests.test_socket import socket_of

pytestmark = BROWSER_MARKS

SHELL_AGENT = "PS1='demo$ ' exec sh\n"

# PushManager without a vendor push service: the subscription the test made (see docstring).
STUB = """
(() => {
  const sub = %s;
  const calls = (window.__pushCalls = []);
  const b64url = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    calls.push({ userVisibleOnly: options.userVisibleOnly, key: b64url(options.applicationServerKey) });
    current = {
      endpoint: sub.endpoint,
      expirationTime: null,
      toJSON: () => JSON.parse(JSON.stringify(sub)),
      unsubscribe: async () => ((current = null), true),
    };
    return current;
  };
  PushManager.prototype.getSubscription = async function () {
    return current;
  };
})();
"""

# In the service worker: click the notification of `tag`; resolves to the window it used.
CLICK = """
async (tag) => {
  const [n] = await self.registration.getNotifications({ tag });
  if (!n) return { error: "no notification " + tag };
  let done = null;
  const event = new NotificationEvent("notificationclick", { notification: n });
  Object.defineProperty(event, "waitUntil", { value: (p) => (done = p) });
  self.dispatchEvent(event);
  if (!done) return { error: "the handler called no waitUntil" };
  const win = await done;
  return { url: win && win.url };
}
"""

NOTIFICATIONS = """
async () => (await (await navigator.serviceWorker.ready).getNotifications())
  .map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }))
"""


async def test_switch_subscribes_push_shows_notification_click_opens_agent(
    hub, git_repo, isolated_env, tmp_path, netns
):
    if netns:
        return
    agents = git_repo / ".botster" / "agents" / "shell"
    agents.mkdir(parents=True)
    (agents / "initialization").write_text(SHELL_AGENT)
    relay = await Relay.start(tmp_path / "relay")
    env = {"BOTSTER_SERVER_URL": relay.url, "BOTSTER_TOKEN": mint_token(tmp_path / "relay")}
    config = {
        "push_attention_delay_ms": 200,
        "push_attention_interval_s": 0,
        "push_subject": "mailto:tests@botster.example",
    }
    async with push_service() as svc:
        device = svc.subscriber("device")
        proc = await hub(env=env, plugins={"watcher": WATCHER}, config=config)
        conn = await HubConnection.connect(socket_of(proc), "test")
        for key in ("alpha", "beta"):
            await conn.request("create_agent", {"agent": "shell", "branch": key})
        vapid = (await conn.request("push.vapid_public_key"))["public_key"]
        url = await pairing_url(conn, relay.url)

        async def ring(key: str) -> dict:
            """The agent's shell rings the bell; returns lib.attention's decision."""
            sessions = {a["agent_key"]: a["session_id"] for a in await conn.request("list_agents")}
            mark = proc.mark()
            await conn.request("t.write", {"session_id": sessions[key], "data": "printf '\\a'\n"})
            return await proc.result("decision", since=mark, timeout=30)

        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                ctx = await browser.new_context(viewport={"width": 1280, "height": 800})
                await ctx.grant_permissions(["notifications"], origin=relay.url)
                await ctx.add_init_script(STUB % json.dumps(device.subscription))
                page = await ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                cdp = await ctx.new_cdp_session(page)
                registrations: list[dict] = []
                cdp.on(
                    "ServiceWorker.workerRegistrationUpdated",
                    lambda e: registrations.extend(e["registrations"]),
                )
                await cdp.send("ServiceWorker.enable")
                await page.goto(url)
                alpha = page.locator('[data-testid="agent"][data-agent-key="alpha"]')
                beta = page.locator('[data-testid="agent"][data-agent-key="beta"]')
                await beta.wait_for(timeout=30_000)
                await alpha.click()
                await page.wait_for_selector(
                    '[data-testid="agent"][data-agent-key="alpha"].selected'
                )

                # 1. The switch: the permission is granted, the stub subscribed with the hub's
                # VAPID key, the hub stored the subscription.
                await page.click('[data-testid="hub-panel"]')
                switch = page.locator('[data-testid="push-switch"]')
                await page.wait_for_selector('[data-testid="push-switch"]:not([disabled])')
                assert not await switch.is_checked()
                await switch.click()
                await page.wait_for_selector('[data-testid="push-switch"][data-state="on"]')
                assert await switch.is_checked()
                assert await page.evaluate("Notification.permission") == "granted"
                assert await page.evaluate("window.__pushCalls") == [
                    {"userVisibleOnly": True, "key": vapid}
                ]
                await page.keyboard.press("Escape")

                # 2. beta (nobody looks at it) rings: the hub pushes to the stored subscription.
                assert await ring("beta") == {"agent_key": "beta", "queued": 1}
                (delivery,) = await svc.wait(1)
                assert svc.problems == []
                _, _, sid = url.partition("/hubs/")
                sid = sid.split("/")[0]
                assert delivery.json["url"] == f"{relay.url}/hubs/{sid}?agent=beta"
                assert delivery.json["agent_key"] == "beta"
                assert delivery.claims["sub"] == "mailto:tests@botster.example"

                # 3. Chromium gets the decrypted payload: the service worker shows it.
                assert registrations, "no service worker registration seen"
                await cdp.send(
                    "ServiceWorker.deliverPushMessage",
                    {
                        "origin": relay.url + "/",
                        "registrationId": registrations[-1]["registrationId"],
                        "data": delivery.payload.decode(),
                    },
                )

                async def shown():
                    return await page.evaluate(NOTIFICATIONS)

                (note,) = await until(shown, "the service worker's notification")
                assert note["title"] == "beta needs you"
                assert note["body"] == "Agent beta rang the bell"
                assert note["tag"] == "agent:beta"
                assert note["data"] == delivery.json

                # 4. The click: this window shows beta; no other window opens.
                (sw,) = ctx.service_workers
                clicked = await sw.evaluate(CLICK, "agent:beta")
                # (The service worker's view of the window's url keeps the pairing fragment the
                # page removed with history.replaceState.)
                assert clicked["url"].split("#")[0] == page.url, clicked
                await page.wait_for_selector(
                    '[data-testid="agent"][data-agent-key="beta"].selected', timeout=20_000
                )
                assert await page.locator(".term-title").inner_text() == "beta"
                assert await page.evaluate(NOTIFICATIONS) == []  # the click closed it
                assert ctx.pages == [page]

                # 5. The switch off: the hub forgets this device; alpha's bell reaches nobody.
                await page.click('[data-testid="hub-panel"]')
                await page.wait_for_selector('[data-testid="push-switch"]:not([disabled])')
                assert await switch.is_checked()
                await switch.click()
                await page.wait_for_selector('[data-testid="push-switch"][data-state="off"]')
                await page.keyboard.press("Escape")
                assert await ring("alpha") == {"agent_key": "alpha", "queued": 0}
                assert len(svc.requests) == 1
                assert errors == []
            finally:
                await browser.close()
                await conn.close()
                await relay.stop()
