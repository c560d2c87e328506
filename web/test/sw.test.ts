// The service worker's push handling, run against a stand-in for its global scope.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { expect, it } from "vitest";

function loadWorker(location?: { origin: string }) {
  const handlers: Record<string, (e: unknown) => void> = {};
  const shown: { title: string; options: Record<string, unknown> }[] = [];
  const opened: string[] = [];
  const focused: string[] = [];
  const windows: { url: string; focus(): Promise<unknown>; postMessage(m: unknown): void }[] = [];
  const self = {
    location,
    addEventListener: (name: string, fn: (e: unknown) => void) => (handlers[name] = fn),
    skipWaiting: () => {},
    registration: {
      showNotification: async (title: string, options: Record<string, unknown>) => void shown.push({ title, options }),
    },
    clients: {
      claim: async () => {},
      matchAll: async () => windows,
      openWindow: async (url: string) => void opened.push(url),
    },
  };
  new Function("self", readFileSync(resolve(__dirname, "../public/sw.js"), "utf8"))(self);
  const fire = async (name: string, event: Record<string, unknown>) => {
    let done: Promise<unknown> = Promise.resolve();
    handlers[name]({ ...event, waitUntil: (p: Promise<unknown>) => (done = p) });
    await done;
  };
  return { fire, shown, opened, focused, windows };
}

it("a push shows the payload's title and body; a click opens its url", async () => {
  const w = loadWorker();
  const payload = { title: "demo needs you", body: "Approve the plan?", url: "https://relay.example/hubs/h1/pairing", agent_key: "demo" };
  await w.fire("push", { data: { json: () => payload, text: () => JSON.stringify(payload) } });
  expect(w.shown).toHaveLength(1);
  expect(w.shown[0].title).toBe("demo needs you");
  expect(w.shown[0].options.body).toBe("Approve the plan?");
  expect(w.shown[0].options.tag).toBe("agent:demo");
  let closed = false;
  await w.fire("notificationclick", { notification: { data: payload, close: () => (closed = true) } });
  expect(closed).toBe(true);
  expect(w.opened).toEqual([payload.url]);
});

it("a click in a window already on that hub shows the agent there instead of opening another", async () => {
  const w = loadWorker({ origin: "https://relay.example" });
  let focused = 0;
  const told: unknown[] = [];
  const other = { url: "https://relay.example/hubs/h2", focus: async () => void focused++, postMessage: (m: unknown) => told.push(["h2", m]) };
  const mine = { url: "https://relay.example/hubs/h1", focus: async () => void focused++, postMessage: (m: unknown) => told.push(["h1", m]) };
  w.windows.push(other, mine);
  await w.fire("notificationclick", { notification: { data: { url: "/hubs/h1?agent=demo", agent_key: "demo" }, close() {} } });
  expect(told).toEqual([["h1", { type: "botster.open_agent", agent_key: "demo" }]]);
  expect(focused).toBe(1);
  expect(w.opened).toEqual([]);
});

it("a window that may not be focused (no user activation) was still told", async () => {
  const w = loadWorker({ origin: "https://relay.example" });
  const told: unknown[] = [];
  w.windows.push({
    url: "https://relay.example/hubs/h1/pairing",
    focus: () => Promise.reject(new DOMException("Not allowed to focus a window.", "InvalidAccessError")),
    postMessage: (m: unknown) => told.push(m),
  });
  await w.fire("notificationclick", { notification: { data: { url: "https://relay.example/hubs/h1?agent=a%20b" }, close() {} } });
  expect(told).toEqual([{ type: "botster.open_agent", agent_key: "a b" }]);
  expect(w.opened).toEqual([]);
});

it("a relative url from the hub opens on this origin", async () => {
  const w = loadWorker({ origin: "https://relay.example" });
  await w.fire("notificationclick", { notification: { data: { url: "/hubs/h1?agent=demo" }, close() {} } });
  expect(w.opened).toEqual(["https://relay.example/hubs/h1?agent=demo"]);
});

it("a push that is not JSON still shows its text", async () => {
  const w = loadWorker();
  await w.fire("push", { data: { json: () => { throw new SyntaxError("x"); }, text: () => "plain words" } });
  expect(w.shown[0]).toMatchObject({ title: "Botster", options: { body: "plain words" } });
});
