import { describe, expect, it } from "vitest";
import { HubClient } from "../src/client";
import { decodeFrame, FrameType, type Decoded } from "../src/frames";
import { applyModifiers, ctrlOf } from "../src/keys";

class FakeTransport {
  isOpen = false;
  sent: Decoded[] = [];
  raw: Uint8Array[] = [];
  async send(f: Uint8Array) {
    this.raw.push(f);
    this.sent.push(f[0] === FrameType.PTY_INPUT ? { kind: "binary", data: f } : decodeFrame({ type: f[0], payload: f.subarray(1) }));
  }
  json() {
    return this.sent.filter((d) => d.kind === "json").map((d) => (d as { msg: Record<string, unknown> }).msg);
  }
}

const json = (msg: Record<string, unknown>): Decoded => ({ kind: "json", msg });

describe("HubClient", () => {
  it("says hello first and subscribes on every open; re-attaches the terminal it had", async () => {
    const t = new FakeTransport();
    const c = new HubClient(t);
    c.attach("sess-1", 24, 80);
    expect(t.sent).toEqual([]); // nothing while closed
    t.isOpen = true;
    c.opened();
    await Promise.resolve();
    expect(t.json().map((m) => m.type + ":" + (m.channel ?? ""))).toEqual(["hello:", "subscribe:hub", "subscribe:mcp", "subscribe:terminal"]);
    expect(t.json()[0]).toEqual({ type: "hello", protocol: 1, client: "browser" });
    expect(t.json()[3].params).toEqual({ session_id: "sess-1", rows: 24, cols: 80 });
    // The link drops and comes back: the same again, with the size the window has now.
    c.closed();
    c.resize(30, 100);
    t.sent = [];
    c.opened();
    expect(t.json()[3].params).toEqual({ session_id: "sess-1", rows: 30, cols: 100 });
  });

  it("matches responses to requests by id and fails them on disconnect", async () => {
    const t = new FakeTransport();
    t.isOpen = true;
    const c = new HubClient(t);
    const a = c.request("ping", { echo: 1 });
    const b = c.request("nope");
    const [ra, rb] = t.json();
    c.handle(json({ type: "response", id: rb.id, ok: false, error: "unknown command 'nope'" }));
    c.handle(json({ type: "response", id: ra.id, ok: true, result: { pong: true } }));
    await expect(a).resolves.toEqual({ pong: true });
    await expect(b).rejects.toThrow("unknown command 'nope'");
    const d = c.request("slow");
    c.closed();
    await expect(d).rejects.toThrow(/disconnected/);
    t.isOpen = false;
    await expect(c.request("x")).rejects.toThrow(/not connected/);
  });

  it("keeps keys typed while detached and sends them once the terminal is subscribed again", async () => {
    const t = new FakeTransport();
    const c = new HubClient(t);
    c.attach("s", 24, 80);
    c.input(new Uint8Array([104, 105]));
    t.isOpen = true;
    c.opened();
    expect(t.raw.filter((f) => f[0] === FrameType.PTY_INPUT)).toHaveLength(0);
    c.handle(json({ type: "subscribed", channel: "terminal", session_id: "s" }));
    const inputs = t.raw.filter((f) => f[0] === FrameType.PTY_INPUT);
    expect(inputs).toHaveLength(1);
    expect(Array.from(inputs[0])).toEqual([3, 1, 0, 115, 104, 105]);
    c.input(new Uint8Array([0]));
    expect(t.raw.filter((f) => f[0] === FrameType.PTY_INPUT)).toHaveLength(2);
  });

  it("routes terminal frames of the attached session only", () => {
    const t = new FakeTransport();
    const seen: string[] = [];
    const c = new HubClient(t, {
      onSnapshot: (s, r, co) => seen.push(`snap ${s} ${r}x${co}`),
      onOutput: (s, d) => seen.push(`out ${s} ${d.length}`),
      onExited: (s, code) => seen.push(`exit ${s} ${code}`),
    });
    c.attach("a", 24, 80);
    c.handle({ kind: "snapshot", sessionId: "a", rows: 24, cols: 80, data: new Uint8Array(3) });
    c.handle({ kind: "output", sessionId: "b", data: new Uint8Array(1) });
    c.handle({ kind: "output", sessionId: "a", data: new Uint8Array(2) });
    c.handle({ kind: "exited", sessionId: "a", code: 3 });
    expect(seen).toEqual(["snap a 24x80", "out a 2", "exit a 3"]);
  });
});

describe("key bar modifiers", () => {
  it("Ctrl maps letters to control codes, Alt prefixes ESC", () => {
    expect(ctrlOf("c")).toBe("\x03");
    expect(ctrlOf("C")).toBe("\x03");
    expect(ctrlOf("[")).toBe("\x1b");
    expect(applyModifiers("x", { ctrl: false, alt: true })).toBe("\x1bx");
    expect(applyModifiers("d", { ctrl: true, alt: true })).toBe("\x1b\x04");
    expect(applyModifiers("abc", { ctrl: true, alt: false })).toBe("abc");
  });
});
