import { describe, expect, it } from "vitest";
import { ACK_EVERY, ACK_PREFIX, ackMessage, RecvAck } from "../src/recvack";

function count(m: Uint8Array): number {
  expect(m.length).toBe(5);
  expect(m[0]).toBe(ACK_PREFIX);
  return new DataView(m.buffer, m.byteOffset).getUint32(1, false);
}

describe("RecvAck", () => {
  it("acks only once ACK_EVERY bytes are processed, then everything pending", () => {
    const a = new RecvAck();
    expect(count(a.start())).toBe(0);
    expect(a.consumed(ACK_EVERY - 1)).toBeNull();
    expect(count(a.consumed(10)!)).toBe(ACK_EVERY + 9);
    expect(a.consumed(1)).toBeNull();
  });

  it("never leaves ACK_EVERY or more bytes unacknowledged (the hub's low-water mark is above it)", () => {
    const a = new RecvAck(1000);
    let processed = 0;
    let acked = 0;
    for (const n of [1, 999, 5000, 3, 200_000, 7, 262_144, 12]) {
      processed += n;
      const m = a.consumed(n);
      if (m) acked += count(m);
      expect(processed - acked).toBeLessThan(1000);
      expect(processed - acked).toBeGreaterThanOrEqual(0);
    }
  });

  it("start() forgets what a previous channel left pending", () => {
    const a = new RecvAck(100);
    a.consumed(99);
    a.start();
    expect(a.consumed(99)).toBeNull();
  });

  it("splits counts that do not fit a u32", () => {
    const a = new RecvAck(1);
    expect(count(a.consumed(2 ** 32 + 5)!)).toBe(0xffffffff);
    expect(count(a.consumed(0)!)).toBe(6);
    expect(count(ackMessage(2 ** 32 - 1))).toBe(0xffffffff);
  });
});
