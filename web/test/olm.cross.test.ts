// Cross-tests of src/olm.ts against Python vodozemac 0.10 (test/vodozemac_peer.py), both directions.
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { Account, b64decode, b64encode, OlmError, parseBundle, Session } from "../src/olm";

const PYTHON = process.env.BOTSTER_PYTHON ?? resolve(__dirname, "../../.venv/bin/python");

class Peer {
  private proc: ChildProcessWithoutNullStreams;
  private waiting: ((line: string) => void)[] = [];
  private stderr = "";

  constructor() {
    if (!existsSync(PYTHON)) throw new Error(`no Python at ${PYTHON} (run make .venv/.installed)`);
    this.proc = spawn(PYTHON, [resolve(__dirname, "vodozemac_peer.py")]);
    this.proc.stderr.on("data", (d) => (this.stderr += d));
    createInterface({ input: this.proc.stdout }).on("line", (l) => this.waiting.shift()?.(l));
  }

  async call(req: Record<string, unknown>): Promise<any> {
    const line = await new Promise<string>((res, rej) => {
      this.waiting.push(res);
      this.proc.once("exit", () => rej(new Error(`peer exited: ${this.stderr}`)));
      this.proc.stdin.write(JSON.stringify(req) + "\n");
    });
    return JSON.parse(line);
  }

  async ok(req: Record<string, unknown>): Promise<any> {
    const a = await this.call(req);
    if (!a.ok) throw new Error(`peer: ${a.error}`);
    return a;
  }

  close() {
    this.proc.stdin.end();
  }
}

const peers: Peer[] = [];
afterEach(() => peers.splice(0).forEach((p) => p.close()));

async function pair(version: 1 | 2) {
  const peer = new Peer();
  peers.push(peer);
  const bundle = parseBundle(b64decode((await peer.ok({ op: "bundle" })).bundle));
  const account = Account.create();
  const session = Session.outbound(account, bundle.identityKey, bundle.oneTimeKey, { version });
  const toHub = async (pt: Uint8Array) => {
    const m = session.encrypt(pt);
    return { m, res: await peer.call({ op: "decrypt", type: m.type, body: b64encode(m.body), sender: account.identityKeyBase64 }) };
  };
  const fromHub = async (pt: Uint8Array) => {
    const r = await peer.ok({ op: "encrypt", plaintext: b64encode(pt) });
    return { type: r.type as number, body: b64decode(r.body) };
  };
  return { peer, account, session, toHub, fromHub };
}

const binary = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) % 256);
const withNuls = new Uint8Array([0, 0xff, 0x80, 0, 0x01, 0, 0]);

describe.each([1] as const)("olm v%i against vodozemac", (version) => {
  it("browser PreKey opens the hub's inbound session, binary-safe, and the hub replies", async () => {
    const { session, toHub, fromHub } = await pair(version);
    const { m, res } = await toHub(withNuls);
    expect(m.type).toBe(0);
    expect(res.ok, res.error).toBe(true);
    expect(b64decode(res.plaintext)).toEqual(withNuls);

    const reply = await fromHub(withNuls);
    expect(reply.type).toBe(1);
    expect(session.hasReceivedMessage).toBe(false);
    expect(session.decrypt(reply.type, reply.body)).toEqual(withNuls);
    expect(session.hasReceivedMessage).toBe(true);

    // After the first inbound message the browser switches to Normal messages.
    const next = await toHub(binary(1000));
    expect(next.m.type).toBe(1);
    expect(b64decode(next.res.plaintext)).toEqual(binary(1000));
  });

  it("keeps sending PreKey messages until the hub's first message decrypts", async () => {
    const { session, toHub, fromHub } = await pair(version);
    for (let i = 0; i < 3; i++) {
      const { m, res } = await toHub(binary(10, i));
      expect(m.type).toBe(0);
      expect(b64decode(res.plaintext)).toEqual(binary(10, i));
    }
    const r = await fromHub(new Uint8Array([1]));
    session.decrypt(r.type, r.body);
    expect((await toHub(new Uint8Array([2]))).m.type).toBe(1);
  });

  it("ratchets back and forth many turns with empty and large payloads", async () => {
    const { session, toHub, fromHub } = await pair(version);
    for (let turn = 0; turn < 6; turn++) {
      const a = binary(turn * 4000, turn);
      const { res } = await toHub(a);
      expect(b64decode(res.plaintext)).toEqual(a);
      for (let k = 0; k < 2; k++) {
        const b = binary(turn * 3000 + k, k);
        const r = await fromHub(b);
        expect(session.decrypt(r.type, r.body)).toEqual(b);
      }
    }
  });

  it("decrypts out-of-order and skipped hub messages, refuses replays", async () => {
    const { session, toHub, fromHub } = await pair(version);
    await toHub(new Uint8Array([0]));
    const msgs: { type: number; body: Uint8Array }[] = [];
    for (let i = 0; i < 6; i++) msgs.push(await fromHub(new Uint8Array([i, 0, i])));
    // 5 first (skips 0..4), then 2, 0, then 4; 1 and 3 never arrive.
    for (const i of [5, 2, 0, 4]) expect(session.decrypt(1, msgs[i].body)).toEqual(new Uint8Array([i, 0, i]));
    expect(() => session.decrypt(1, msgs[2].body)).toThrow(OlmError);
    expect(() => session.decrypt(1, msgs[5].body)).toThrow(OlmError);
    // A later chain after the browser answered, while an old-chain message is still pending.
    await toHub(new Uint8Array([9]));
    const late = await fromHub(new Uint8Array([42]));
    expect(session.decrypt(1, late.body)).toEqual(new Uint8Array([42]));
    expect(session.decrypt(1, msgs[3].body)).toEqual(new Uint8Array([3, 0, 3]));
  });

  it("hub decrypts the browser's messages out of order", async () => {
    const { peer, account, session, fromHub } = await pair(version);
    const first = session.encrypt(new Uint8Array([0]));
    await peer.ok({ op: "decrypt", type: first.type, body: b64encode(first.body), sender: account.identityKeyBase64 });
    const r = await fromHub(new Uint8Array([1]));
    session.decrypt(r.type, r.body);
    const ms = [1, 2, 3].map((i) => session.encrypt(new Uint8Array([i])));
    for (const i of [2, 0, 1]) {
      const a = await peer.ok({ op: "decrypt", type: ms[i].type, body: b64encode(ms[i].body) });
      expect(b64decode(a.plaintext)).toEqual(new Uint8Array([i + 1]));
    }
  });

  it("a tampered hub message fails the MAC check and leaves the session usable", async () => {
    const { session, toHub, fromHub } = await pair(version);
    await toHub(new Uint8Array([0]));
    const r = await fromHub(new Uint8Array([7, 7]));
    const bad = r.body.slice();
    bad[bad.length - 1] ^= 1;
    expect(() => session.decrypt(1, bad)).toThrow(/MAC/);
    expect(session.hasReceivedMessage).toBe(false);
    expect(session.decrypt(1, r.body)).toEqual(new Uint8Array([7, 7]));
  });
});

it("the hub refuses a tampered browser message", async () => {
  // Flip a byte inside the ciphertext of a PreKey message: vodozemac must reject it.
  const { peer, session, account } = await pair(1);
  const m = session.encrypt(new Uint8Array([5]));
  m.body[m.body.length - 40] ^= 1;
  const res = await peer.call({ op: "decrypt", type: 0, body: b64encode(m.body), sender: account.identityKeyBase64 });
  expect(res.ok).toBe(false);
});

it("bundle signatures made by vodozemac verify; a flipped bit does not", async () => {
  const peer = new Peer();
  peers.push(peer);
  const good = b64decode((await peer.ok({ op: "bundle" })).bundle);
  const bad = b64decode((await peer.ok({ op: "bundle", corrupt: true })).bundle);
  expect(() => parseBundle(good)).not.toThrow();
  expect(() => parseBundle(bad)).toThrow(/signature/);
});

it("vodozemac 0.10 (the hub's Olm) refuses v2 sessions, so the browser must default to v1", async () => {
  const peer = new Peer();
  peers.push(peer);
  const bundle = parseBundle(b64decode((await peer.ok({ op: "bundle" })).bundle));
  const account = Account.create();
  expect(Session.outbound(account, bundle.identityKey, bundle.oneTimeKey).version).toBe(1);
  const v2 = Session.outbound(account, bundle.identityKey, bundle.oneTimeKey, { version: 2 });
  const m = v2.encrypt(new Uint8Array([1]));
  const res = await peer.call({ op: "decrypt", type: m.type, body: b64encode(m.body), sender: account.identityKeyBase64 });
  expect(res.ok).toBe(false);
  expect(res.error).toMatch(/session config/i);
});

it("keeps at most 40 skipped keys per chain and refuses a gap over 2000", async () => {
  const { peer, session, toHub } = await pair(1);
  await toHub(new Uint8Array([0]));
  const bodies: Uint8Array[] = (await peer.ok({ op: "encrypt_many", count: 2003 })).bodies.map(b64decode);
  // Index 2001 is 2001 ahead of the fresh chain: too far.
  expect(() => session.decrypt(1, bodies[2001])).toThrow(/gap/);
  expect(session.hasReceivedMessage).toBe(false);
  // Index 2000 is exactly the limit; only the 40 keys just below it are kept.
  expect(session.decrypt(1, bodies[2000])).toEqual(new Uint8Array([0x07, 0xd0]));
  expect(session.decrypt(1, bodies[1960])).toEqual(new Uint8Array([0x07, 0xa8]));
  expect(() => session.decrypt(1, bodies[1959])).toThrow(/no message key/);
  expect(session.decrypt(1, bodies[2002])).toEqual(new Uint8Array([0x07, 0xd2]));
  expect(session.decrypt(1, bodies[1999])).toEqual(new Uint8Array([0x07, 0xcf]));
});
