import { describe, expect, it } from "vitest";
import { TermFeed } from "../src/termfeed";

/** A terminal that parses only when told to, on a clock the test moves. */
function setup(maxInflight = 10, maxLagMs = 100) {
  const writes: { text: string; parsed: () => void }[] = [];
  let clock = 0;
  let resyncs = 0;
  const feed = new TermFeed(
    { write: (d, parsed) => writes.push({ text: new TextDecoder().decode(d), parsed }) },
    { resync: () => resyncs++, maxInflight, maxLagMs, now: () => clock },
  );
  const b = (s: string) => new TextEncoder().encode(s);
  const parseAll = () => {
    while (writes.some((w) => w.parsed)) {
      const w = writes.find((x) => x.parsed)!;
      const p = w.parsed;
      w.parsed = undefined as unknown as () => void;
      p();
    }
  };
  return { feed, writes, b, parseAll, tick: (ms: number) => (clock += ms), resyncs: () => resyncs };
}

describe("TermFeed", () => {
  it("hands the terminal more only while under maxInflight is unparsed; what waits is joined into one write", () => {
    const { feed, writes, b } = setup(10);
    feed.output(b("aaaa"));
    feed.output(b("bbbbbbbb")); // 4 in flight: goes
    feed.output(b("cc")); // 12 in flight: waits
    feed.output(b("dd"));
    feed.output(b("ee"));
    expect(writes.map((w) => w.text)).toEqual(["aaaa", "bbbbbbbb"]);
    writes[0].parsed();
    expect(writes.map((w) => w.text)).toEqual(["aaaa", "bbbbbbbb", "ccddee"]);
  });

  it("a frame larger than maxInflight still goes, alone", () => {
    const { feed, writes, b } = setup(4);
    feed.output(b("0123456789"));
    expect(writes.map((w) => w.text)).toEqual(["0123456789"]);
  });

  it("output that waited past maxLagMs is dropped, a resync is asked once, later output dropped until the snapshot", () => {
    const { feed, writes, b, tick, resyncs, parseAll } = setup(4, 100);
    feed.output(b("1111")); // in flight, never parsed: the terminal is stuck
    feed.output(b("2222"));
    tick(50);
    feed.output(b("3333"));
    expect(resyncs()).toBe(0);
    tick(51);
    feed.output(b("4444"));
    expect(resyncs()).toBe(1);
    expect(feed.waitingForSnapshot).toBe(true);
    feed.output(b("5555"));
    expect(resyncs()).toBe(1);
    expect(feed.stats).toEqual({ resyncs: 1, droppedBytes: 16 });
    feed.snapshot(b("SNAP"));
    expect(feed.waitingForSnapshot).toBe(false);
    feed.output(b("6"));
    parseAll();
    // The snapshot comes after what the terminal already had, with a reset in the stream.
    expect(writes.map((w) => w.text).join("|")).toBe("1111|\x1bcSNAP|6");
  });

  it("a snapshot replaces output still waiting; reset and text keep their order", () => {
    const { feed, writes, b, parseAll } = setup(4);
    feed.output(b("old1"));
    feed.output(b("old2"));
    feed.snapshot(b("S"));
    feed.text("bye");
    parseAll();
    expect(writes.map((w) => w.text).join("|")).toBe("old1|\x1bcS|bye");
    feed.reset();
    parseAll();
    expect(writes.at(-1)!.text).toBe("\x1bc");
  });

  it("keeps up: output parsed in time never resyncs", () => {
    const { feed, b, tick, parseAll, resyncs } = setup(8, 100);
    for (let i = 0; i < 1000; i++) {
      feed.output(b("xxxx"));
      tick(30);
      parseAll();
    }
    expect(resyncs()).toBe(0);
  });
});
