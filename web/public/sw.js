// Botster's service worker: makes the app installable and shows the hub's push notifications.
// Payload (JSON): {title, body, url, ...extra, agent_key?}; a click shows that agent in a window
// already open on that hub, or opens `url` in a new one.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : "" };
  }
  const title = data.title || "Botster";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: data.body || "",
      icon: "/icon-192.png",
      badge: "/icon-192.png",
      tag: data.agent_key ? `agent:${data.agent_key}` : undefined,
      data,
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openFromNotification(event.notification.data || {}));
});

// The hub's server id in `/hubs/<id>`, `/hubs/<id>/pairing` (as the app's pairing.ts reads it).
function hubOf(pathname) {
  const m = /^\/hubs\/([^/]+)(?:\/|$)/.exec(pathname);
  return m ? decodeURIComponent(m[1]) : null;
}

// A window already showing that hub is told which agent to show (no reload: reloading would
// set up its encrypted link again) and brought to the front; otherwise a new window opens on
// the notification's url. Returns the window client used.
async function openFromNotification(data) {
  // The hub sends a path (`/hubs/<id>?agent=<key>`) or a full url: resolve it against this origin.
  const base = self.location ? self.location.origin : undefined;
  const url = new URL(data.url || "/", base);
  const hub = hubOf(url.pathname);
  const agent = url.searchParams.get("agent") || data.agent_key || null;
  const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = wins.find((w) => {
    const at = new URL(w.url);
    return hub ? at.origin === url.origin && hubOf(at.pathname) === hub : w.url === url.href;
  });
  if (same) {
    if (agent) same.postMessage({ type: "botster.open_agent", agent_key: agent });
    // Focusing needs the click's user activation; the window was told either way.
    return "focus" in same ? same.focus().catch(() => same) : same;
  }
  return self.clients.openWindow(url.href);
}
