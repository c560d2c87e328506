/**
 * Frames of the hub socket protocol (docs/protocol.md) as the data channel carries them:
 * `[type u8][payload]` without the socket's u32 length, plus the two carrier types of the
 * WebRTC carrier — GZIP (0x07) and PART (0x08) — and the DC message prefixes 0x00/0x01/0x02.
 * Pure functions; the Olm and WebRTC parts live in carrier.ts.
 */

export const FrameType = {
  JSON: 0x01,
  PTY_OUTPUT: 0x02,
  PTY_INPUT: 0x03,
  SNAPSHOT: 0x04,
  PROCESS_EXITED: 0x05,
  BINARY: 0x06,
  GZIP: 0x07,
  PART: 0x08,
} as const;

export const DcPrefix = { PREKEY: 0x00, NORMAL: 0x01, BUNDLE: 0x02 } as const;

/** Chromium refuses data channel messages over 256 KiB. */
export const MAX_DC_MESSAGE = 256 * 1024;
/** Room for the DC prefix, sender key, Olm headers, padding and MAC. */
export const OLM_OVERHEAD = 512;
export const MAX_PLAINTEXT = MAX_DC_MESSAGE - OLM_OVERHEAD;
/** Frames at least this large are gzipped when that makes them smaller. */
export const GZIP_THRESHOLD = 4096;
/** The hub refuses frames over 16 MiB; a reassembly never grows past this. */
export const MAX_FRAME = 16 * 1024 * 1024 + 16;

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

const te = new TextEncoder();
const td = new TextDecoder();

export interface Frame {
  type: number;
  payload: Uint8Array;
}

export function frame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.length);
  out[0] = type;
  out.set(payload, 1);
  return out;
}

export function jsonFrame(msg: unknown): Uint8Array {
  return frame(FrameType.JSON, te.encode(JSON.stringify(msg)));
}

function sessionIdBytes(sessionId: string): Uint8Array {
  const id = te.encode(sessionId);
  if (id.length > 0xffff) throw new FrameError("session id too long");
  const out = new Uint8Array(2 + id.length);
  new DataView(out.buffer).setUint16(0, id.length, true);
  out.set(id, 2);
  return out;
}

export function ptyInputFrame(sessionId: string, data: Uint8Array): Uint8Array {
  const sid = sessionIdBytes(sessionId);
  const out = new Uint8Array(1 + sid.length + data.length);
  out[0] = FrameType.PTY_INPUT;
  out.set(sid, 1);
  out.set(data, 1 + sid.length);
  return out;
}

function readSessionId(p: Uint8Array): [string, number] {
  if (p.length < 2) throw new FrameError("frame too short for a session id");
  const n = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint16(0, true);
  if (p.length < 2 + n) throw new FrameError("session id runs past the frame");
  return [td.decode(p.subarray(2, 2 + n)), 2 + n];
}

export type Decoded =
  | { kind: "json"; msg: Record<string, unknown> }
  | { kind: "output"; sessionId: string; data: Uint8Array }
  | { kind: "snapshot"; sessionId: string; rows: number; cols: number; data: Uint8Array }
  | { kind: "exited"; sessionId: string; code: number }
  | { kind: "binary"; data: Uint8Array };

/** Interprets one complete (already un-gzipped, reassembled) frame. */
export function decodeFrame(f: Frame): Decoded {
  const p = f.payload;
  switch (f.type) {
    case FrameType.JSON: {
      const msg = JSON.parse(td.decode(p));
      if (typeof msg !== "object" || msg === null || Array.isArray(msg))
        throw new FrameError("JSON frame is not an object");
      return { kind: "json", msg };
    }
    case FrameType.PTY_OUTPUT: {
      const [sessionId, o] = readSessionId(p);
      return { kind: "output", sessionId, data: p.subarray(o) };
    }
    case FrameType.SNAPSHOT: {
      const [sessionId, o] = readSessionId(p);
      if (p.length < o + 4) throw new FrameError("snapshot frame too short");
      const dv = new DataView(p.buffer, p.byteOffset + o, 4);
      return { kind: "snapshot", sessionId, rows: dv.getUint16(0, true), cols: dv.getUint16(2, true), data: p.subarray(o + 4) };
    }
    case FrameType.PROCESS_EXITED: {
      const [sessionId, o] = readSessionId(p);
      if (p.length < o + 4) throw new FrameError("process-exited frame too short");
      return { kind: "exited", sessionId, code: new DataView(p.buffer, p.byteOffset + o, 4).getInt32(0, true) };
    }
    case FrameType.BINARY:
      return { kind: "binary", data: p };
    default:
      throw new FrameError(`unknown frame type 0x${f.type.toString(16)}`);
  }
}

/**
 * Runs bytes through a (de)compression stream. Written straight into the stream, not through a
 * Blob: a Blob's stream is read back through the browser's blob storage, several tasks per
 * frame, which made a flood's frames queue up behind each other (bench/browser.py).
 */
async function pipeThrough(data: Uint8Array, stream: GenerateTransformStream): Promise<Uint8Array> {
  const writer = stream.writable.getWriter();
  // Errors surface on the reading side; these promises only must not go unhandled.
  writer.write(data).catch(() => {});
  writer.close().catch(() => {});
  const reader = stream.readable.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
type GenerateTransformStream = ReadableWritablePair<Uint8Array, Uint8Array>;

export function gzip(data: Uint8Array): Promise<Uint8Array> {
  return pipeThrough(data, new CompressionStream("gzip") as unknown as GenerateTransformStream);
}

export function gunzip(data: Uint8Array): Promise<Uint8Array> {
  return pipeThrough(data, new DecompressionStream("gzip") as unknown as GenerateTransformStream);
}

/**
 * Turns one frame into the plaintexts to encrypt, one per DC message: gzipped when that helps,
 * split into PART frames when it would not fit in one message.
 */
export async function encodeForDc(f: Uint8Array, maxPlain = MAX_PLAINTEXT): Promise<Uint8Array[]> {
  let out = f;
  if (f.length >= GZIP_THRESHOLD) {
    const z = await gzip(f);
    if (z.length + 1 < f.length) out = frame(FrameType.GZIP, z);
  }
  if (out.length <= maxPlain) return [out];
  const parts: Uint8Array[] = [];
  const step = maxPlain - 2;
  for (let o = 0; o < out.length; o += step) {
    const chunk = out.subarray(o, Math.min(out.length, o + step));
    const p = new Uint8Array(2 + chunk.length);
    p[0] = FrameType.PART;
    p[1] = o + step >= out.length ? 1 : 0;
    p.set(chunk, 2);
    parts.push(p);
  }
  return parts;
}

/**
 * Reassembles decrypted DC plaintexts into complete frames, in order: PART payloads are joined,
 * GZIP frames inflated. Feed plaintexts in arrival order; `push` resolves to the complete
 * frames (zero or more) that plaintext finished.
 */
export class Reassembler {
  private parts: Uint8Array[] = [];
  private size = 0;

  async push(plain: Uint8Array): Promise<Frame[]> {
    if (plain.length === 0) throw new FrameError("empty frame");
    if (plain[0] === FrameType.PART) {
      if (plain.length < 2) throw new FrameError("PART frame too short");
      this.size += plain.length - 2;
      if (this.size > MAX_FRAME) {
        this.parts = [];
        this.size = 0;
        throw new FrameError("reassembled frame over the limit");
      }
      this.parts.push(plain.slice(2));
      if (plain[1] !== 1) return [];
      const whole = new Uint8Array(this.size);
      let o = 0;
      for (const p of this.parts) {
        whole.set(p, o);
        o += p.length;
      }
      this.parts = [];
      this.size = 0;
      return this.unwrap(whole, 0);
    }
    if (this.parts.length) throw new FrameError("a PART sequence was interrupted");
    return this.unwrap(plain, 0);
  }

  private async unwrap(f: Uint8Array, depth: number): Promise<Frame[]> {
    if (f.length === 0) throw new FrameError("empty frame");
    if (f[0] === FrameType.GZIP) {
      if (depth > 0) throw new FrameError("nested GZIP frame");
      const inner = await gunzip(f.subarray(1));
      if (inner.length > MAX_FRAME) throw new FrameError("inflated frame over the limit");
      return this.unwrap(inner, depth + 1);
    }
    if (f[0] === FrameType.PART) throw new FrameError("PART inside a frame");
    return [{ type: f[0], payload: f.subarray(1) }];
  }
}
