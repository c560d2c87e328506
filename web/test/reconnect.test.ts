import { describe, expect, it } from "vitest";
import { Backoff, FakeClock, Watchdog } from "../src/reconnect";

describe("Backoff", () => {
  it("doubles up to the cap with jitter in [ceiling/2, ceiling], and resets", () => {
    const b = new Backoff(250, 10_000, () => 1);
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(() => b.next())).toEqual([250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    b.reset();
    expect(b.next()).toBe(250);
    const low = new Backoff(250, 10_000, () => 0);
    expect(low.next()).toBe(125);
  });
});

describe("Watchdog", () => {
  it("fires after a silence, not while fed", () => {
    const clock = new FakeClock();
    let dead = 0;
    const w = new Watchdog(30_000, () => dead++, clock);
    w.feed();
    for (let i = 0; i < 10; i++) {
      clock.advance(10_000); // a dc_ping every 10 s keeps it alive
      w.feed();
    }
    expect(dead).toBe(0);
    clock.advance(29_999);
    expect(dead).toBe(0);
    clock.advance(1);
    expect(dead).toBe(1);
    expect(w.running).toBe(false);
    clock.advance(100_000);
    expect(dead).toBe(1);
  });

  it("stop cancels it", () => {
    const clock = new FakeClock();
    let dead = 0;
    const w = new Watchdog(1000, () => dead++, clock);
    w.feed();
    w.stop();
    w.stop();
    clock.advance(5000);
    expect(dead).toBe(0);
  });
});
