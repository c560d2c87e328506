/**
 * What stands between the hub's terminal frames and xterm.js: it keeps xterm's own write
 * buffer short and drops stale output instead of parsing it late.
 *
 * xterm.js accepts any amount of writes and parses them later, 12 ms slices at a time; under a
 * flood on a slow device that buffer grew to megabytes, and a keystroke's echo waited seconds
 * behind it (bench/browser.py, CPU throttled 4x). So more is handed to xterm only while less
 * than `maxInflight` bytes of it are unparsed (queued frames are joined into one write); the
 * rest waits here. When the oldest
 * waiting frame is older than `maxLagMs`, everything waiting is dropped and `resync()` asks the
 * hub for a fresh SNAPSHOT; output until it arrives is dropped too (it is older than the
 * snapshot). This is the hub's hold-and-resync (docs/protocol.md) done for the stretch the hub
 * cannot see: it may skip intermediate states of a flood, never the final screen.
 *
 * Resets travel in the stream (RIS, `ESC c`) rather than through `Terminal.reset()`, which acts
 * at once while writes already handed over are still to be parsed (they would land on the
 * fresh screen).
 */

export interface TermSink {
  write(data: Uint8Array, parsed: () => void): void;
}

export interface TermFeedOptions {
  /** Asks the hub for a fresh snapshot of the attached terminal. */
  resync(): void;
  /** More is handed to the terminal only while fewer bytes than this are unparsed. */
  maxInflight?: number;
  /** Output that waited longer than this is dropped for a resync. */
  maxLagMs?: number;
  now?: () => number;
}

const RIS = new Uint8Array([0x1b, 0x63]);
const te = new TextEncoder();

export class TermFeed {
  private queue: { data: Uint8Array; at: number }[] = [];
  private inflight = 0;
  private resyncing = false;
  private readonly maxInflight: number;
  private readonly maxLagMs: number;
  private readonly now: () => number;
  /** Counters for diagnostics (read by the benchmark). */
  readonly stats = { resyncs: 0, droppedBytes: 0 };

  constructor(
    private readonly sink: TermSink,
    private readonly opts: TermFeedOptions,
  ) {
    this.maxInflight = opts.maxInflight ?? 64 * 1024;
    this.maxLagMs = opts.maxLagMs ?? 100;
    this.now = opts.now ?? (() => performance.now());
  }

  /** True while output is dropped until the hub's snapshot arrives. */
  get waitingForSnapshot(): boolean {
    return this.resyncing;
  }

  /** Live output of the attached terminal. */
  output(data: Uint8Array): void {
    if (this.resyncing) {
      this.stats.droppedBytes += data.length;
      return;
    }
    const now = this.now();
    if (this.queue.length && now - this.queue[0].at > this.maxLagMs) {
      this.stats.droppedBytes += data.length + this.queue.reduce((n, q) => n + q.data.length, 0);
      this.queue = [];
      this.resyncing = true;
      this.stats.resyncs++;
      this.opts.resync();
      return;
    }
    this.queue.push({ data, at: now });
    this.pump();
  }

  /** The exact screen: replaces whatever waits, after what xterm already has. */
  snapshot(data: Uint8Array): void {
    this.queue = [];
    this.resyncing = false;
    const out = new Uint8Array(RIS.length + data.length);
    out.set(RIS);
    out.set(data, RIS.length);
    this.queue.push({ data: out, at: this.now() });
    this.pump();
  }

  /** Clears the screen (another terminal is being attached): nothing waiting is shown. */
  reset(): void {
    this.queue = [];
    this.resyncing = false;
    this.queue.push({ data: RIS, at: this.now() });
    this.pump();
  }

  /** Text of our own (e.g. "process exited"), in order with the output. */
  text(s: string): void {
    this.queue.push({ data: te.encode(s), at: this.now() });
    this.pump();
  }

  private pump(): void {
    while (this.inflight < this.maxInflight && this.queue.length) {
      const parts: Uint8Array[] = [];
      let n = 0;
      while (this.queue.length && (!parts.length || n + this.queue[0].data.length <= this.maxInflight)) {
        const d = this.queue.shift()!.data;
        parts.push(d);
        n += d.length;
      }
      let chunk = parts[0];
      if (parts.length > 1) {
        chunk = new Uint8Array(n);
        let o = 0;
        for (const p of parts) {
          chunk.set(p, o);
          o += p.length;
        }
      }
      this.inflight += n;
      this.sink.write(chunk, () => {
        this.inflight -= n;
        this.pump();
      });
    }
  }
}
