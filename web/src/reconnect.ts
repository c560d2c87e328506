/**
 * The timing policy of reconnects, apart from any socket so it can be tested with a fake clock:
 * exponential back-off with jitter, reset by a success, and a liveness watchdog that fires when
 * nothing arrived for too long (the hub sends dc_ping every 10 s).
 */

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly base = 250,
    private readonly max = 10_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; grows until a reset. */
  next(): number {
    const ceiling = Math.min(this.max, this.base * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    // Jitter in [ceiling/2, ceiling] so many tabs do not reconnect in step.
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Calls `onDead` when `feed` was not called for `timeoutMs`. */
export class Watchdog {
  private handle: unknown = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly onDead: () => void,
    private readonly clock: Clock = realClock,
  ) {}

  feed(): void {
    this.stop();
    this.handle = this.clock.setTimeout(() => {
      this.handle = null;
      this.onDead();
    }, this.timeoutMs);
  }

  stop(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
  }

  get running(): boolean {
    return this.handle !== null;
  }
}

/** A controllable clock for tests: time moves only through `advance`. */
export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}
