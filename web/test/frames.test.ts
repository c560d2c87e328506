import { describe, expect, it } from "vitest";
import {
  decodeFrame, encodeForDc, frame, FrameError, FrameType, gzip, jsonFrame, MAX_PLAINTEXT, ptyInputFrame, Reassembler,
} from "../src/frames";

const sid = (s: string) => {
  const b = new TextEncoder().encode(s);
  return Uint8Array.from([b.length & 0xff, b.length >> 8, ...b]);
};

describe("frames", () => {
  it("PTY_INPUT carries a u16 LE session id then the raw bytes", () => {
    expect(Array.from(ptyInputFrame("s1", new Uint8Array([0, 255])))).toEqual([0x03, 2, 0, 0x73, 0x31, 0, 255]);
  });

  it("decodes output, snapshot and exit frames", () => {
    const out = decodeFrame({ type: FrameType.PTY_OUTPUT, payload: Uint8Array.from([...sid("é"), 0, 1]) });
    expect(out).toEqual({ kind: "output", sessionId: "é", data: new Uint8Array([0, 1]) });
    const snap = decodeFrame({ type: FrameType.SNAPSHOT, payload: Uint8Array.from([...sid("a"), 24, 0, 80, 0, 65]) });
    expect(snap).toMatchObject({ kind: "snapshot", sessionId: "a", rows: 24, cols: 80 });
    const ex = decodeFrame({ type: FrameType.PROCESS_EXITED, payload: Uint8Array.from([...sid("a"), 0xff, 0xff, 0xff, 0xff]) });
    expect(ex).toEqual({ kind: "exited", sessionId: "a", code: -1 });
  });

  it("refuses malformed frames with a FrameError", () => {
    expect(() => decodeFrame({ type: 0x42, payload: new Uint8Array() })).toThrow(FrameError);
    expect(() => decodeFrame({ type: FrameType.PTY_OUTPUT, payload: new Uint8Array([5, 0, 1]) })).toThrow(/past the frame/);
    expect(() => decodeFrame({ type: FrameType.SNAPSHOT, payload: Uint8Array.from([...sid("a"), 1]) })).toThrow(FrameError);
    expect(() => decodeFrame({ type: FrameType.JSON, payload: new TextEncoder().encode("[1]") })).toThrow(/not an object/);
  });

  it("small frames travel as they are; large compressible ones are gzipped and come back identical", async () => {
    const small = jsonFrame({ type: "hello" });
    expect(await encodeForDc(small)).toEqual([small]);
    const big = frame(FrameType.PTY_INPUT, new Uint8Array(100_000).fill(65));
    const [enc] = await encodeForDc(big);
    expect(enc[0]).toBe(FrameType.GZIP);
    expect(enc.length).toBeLessThan(2000);
    const frames = await new Reassembler().push(enc);
    expect(frames).toHaveLength(1);
    expect(frames[0].type).toBe(FrameType.PTY_INPUT);
    expect(frames[0].payload).toEqual(big.subarray(1));
  });

  it("incompressible frames larger than a DC message are split into PARTs, each under the limit", async () => {
    const rnd = new Uint8Array(600_000);
    for (let o = 0; o < rnd.length; o += 65536) rnd.set(crypto.getRandomValues(new Uint8Array(Math.min(65536, rnd.length - o))), o);
    const f = frame(FrameType.BINARY, rnd);
    const parts = await encodeForDc(f);
    expect(parts.length).toBe(Math.ceil(f.length / (MAX_PLAINTEXT - 2)));
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(MAX_PLAINTEXT);
    expect(parts.map((p) => p[1])).toEqual([...parts.slice(1).map(() => 0), 1]);
    const r = new Reassembler();
    const got = [];
    for (const p of parts) got.push(...(await r.push(p)));
    expect(got).toHaveLength(1);
    expect(got[0].payload).toEqual(rnd);
  });

  it("reassembles PARTs whose whole is a GZIP frame (the hub's big snapshots)", async () => {
    const inner = frame(FrameType.SNAPSHOT, Uint8Array.from([...sid("s"), 24, 0, 80, 0, ...new Uint8Array(50_000).fill(32)]));
    const whole = frame(FrameType.GZIP, await gzip(inner));
    const half = Math.floor(whole.length / 2);
    const r = new Reassembler();
    expect(await r.push(Uint8Array.from([FrameType.PART, 0, ...whole.subarray(0, half)]))).toEqual([]);
    const [f] = await r.push(Uint8Array.from([FrameType.PART, 1, ...whole.subarray(half)]));
    expect(decodeFrame(f)).toMatchObject({ kind: "snapshot", sessionId: "s", rows: 24, cols: 80 });
  });

  it("a GZIP frame that does not inflate is refused, without an unhandled rejection", async () => {
    const bad = Uint8Array.from([FrameType.GZIP, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef]);
    await expect(new Reassembler().push(bad)).rejects.toThrow();
    // The next frame still decodes: nothing of the broken one is left behind.
    const ok = await new Reassembler().push(frame(FrameType.GZIP, await gzip(jsonFrame({ a: 1 }))));
    expect(ok[0].type).toBe(FrameType.JSON);
  });

  it("refuses nested GZIP, an interrupted PART sequence and empty frames", async () => {
    const g2 = frame(FrameType.GZIP, await gzip(frame(FrameType.GZIP, await gzip(jsonFrame({})))));
    await expect(new Reassembler().push(g2)).rejects.toThrow(/nested/);
    const r = new Reassembler();
    await r.push(new Uint8Array([FrameType.PART, 0, 1]));
    await expect(r.push(jsonFrame({}))).rejects.toThrow(/interrupted/);
    await expect(new Reassembler().push(new Uint8Array())).rejects.toThrow(/empty/);
  });
});
