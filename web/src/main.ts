/** Entry point: pair from the URL (or the stored pairing), then run the hub page over the carrier. */
import { Carrier } from "./carrier";
import { HubClient } from "./client";
import { h, HubPage } from "./ui";
import { hubIdFromPath, pairFromLocation } from "./pairing";
import { listHubs } from "./store";
import "./style.css";

declare global {
  interface Window {
    botster?: { carrier: Carrier; client: HubClient; page: HubPage; log: string[] };
  }
}

async function main() {
  const root = document.getElementById("app")!;
  // A pairing link opened over this page changes only the fragment: start over with it.
  window.addEventListener("hashchange", () => location.reload());
  if ("serviceWorker" in navigator && location.protocol !== "file:")
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
  if (!hubIdFromPath(location.pathname)) {
    // The installed app starts at "/": offer the hubs this browser is paired with.
    const hubs = await listHubs().catch(() => [] as string[]);
    root.replaceChildren(
      h(
        "div",
        { class: "notice", "data-testid": "hub-chooser" },
        h("h1", {}, "Botster"),
        h("p", {}, hubs.length ? "Your hubs:" : "No hub paired yet. Open the pairing link or scan the QR code that `botster pair` shows."),
        h("ul", {}, ...hubs.map((id) => h("li", {}, h("a", { href: `/hubs/${encodeURIComponent(id)}/pairing` }, id)))),
      ),
    );
    return;
  }
  let result;
  try {
    result = await pairFromLocation(location, history);
  } catch (e) {
    result = { ok: false as const, reason: "invalid" as const, message: `Cannot open this browser's key store: ${(e as Error).message}` };
  }
  if (!result.ok) {
    root.replaceChildren(
      h("div", { class: `notice ${result.reason}`, "data-testid": "pairing-error", "data-reason": result.reason }, h("h1", {}, result.reason === "interception" ? "Possible interception" : "Botster"), h("p", {}, result.message)),
    );
    return;
  }
  const { record, bundle } = result;
  const log: string[] = [];
  let page: HubPage;
  let carrier: Carrier;
  const client = new HubClient(
    { send: (f) => carrier.send(f), get isOpen() { return carrier.isOpen; } },
    {
      onReady: () => {
        log.push(`${performance.now().toFixed(0)} hello_ack`);
        void page.connected();
      },
      onEvent: (ch, ev) => page.onEvent(ch, ev),
      onSnapshot: (_s, _r, _c, data) => page.snapshot(data),
      onOutput: (_s, data) => page.output(data),
      onExited: (_s, code) => page.exited(code),
      onError: (m) => log.push(`hub error: ${JSON.stringify(m)}`),
    },
  );
  page = new HubPage(root, client, record.hubId);
  carrier = new Carrier({
    relayUrl: location.origin,
    hubId: record.hubId,
    account: record.account,
    pinned: record.pinned,
    pairingBundle: bundle ?? undefined,
    onFrame: (d) => client.handle(d),
    onOpen: () => {
      page.showBanner("");
      client.opened();
    },
    onClose: () => client.closed(),
    onStatus: (s) => page.setStatus(s),
    onFatal: (msg) => page.showBanner(msg),
    log: (m) => {
      log.push(`${performance.now().toFixed(0)} ${m}`);
      if (log.length > 500) log.shift();
    },
  });
  window.botster = { carrier, client, page, log };
  // A click on a push notification for this hub (the service worker tells this window).
  navigator.serviceWorker?.addEventListener("message", (e: MessageEvent) => {
    const m = e.data as { type?: string; agent_key?: unknown } | null;
    if (m?.type === "botster.open_agent" && typeof m.agent_key === "string") page.openAgent(m.agent_key);
  });
  navigator.serviceWorker?.startMessages();
  await oneTabPerHub(record.hubId, page, () => {
    carrier.start();
    page.fitTerminal();
  }, () => carrier.stop());
}

const STEAL_KEY = "botster-steal";

/**
 * The hub keeps one link per browser key, and every tab of this browser shares that key: two
 * tabs would keep replacing each other's link. A Web Lock per hub lets one tab hold it; another
 * tab says so and offers to take over.
 */
async function oneTabPerHub(hubId: string, page: HubPage, start: () => void, stop: () => void) {
  if (!("locks" in navigator)) return start();
  const steal = sessionStorage.getItem(STEAL_KEY) === hubId;
  sessionStorage.removeItem(STEAL_KEY);
  const takeOver = () => {
    sessionStorage.setItem(STEAL_KEY, hubId);
    location.reload();
  };
  const opts: LockOptions = steal ? { steal: true } : { signal: AbortSignal.timeout(2000) };
  let started = false;
  navigator.locks
    .request(`botster-hub:${hubId}`, opts, async () => {
      started = true;
      start();
      await new Promise(() => {}); // held for the life of the page
    })
    .catch(() => {
      // Rejected after we held it: another tab took it over. Before: the wait timed out.
      const stolen = started;
      if (stolen) stop();
      page.handOver(
        stolen ? "This hub is now open in another tab of this browser." : "This hub is open in another tab of this browser.",
        { label: "Use it here", onClick: takeOver },
      );
    });
}

void main();
