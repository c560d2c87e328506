/**
 * Receiver acks for the data channel (botster/remote/rtc_process.py, "Receiver acks").
 *
 * The browser's SCTP stack accepts whatever the hub sends and queues it for this tab's main
 * thread; nothing pushes back. On a slow CPU (a phone; bench/browser.py throttles Chromium 4x)
 * a terminal flood then piled up hundreds of MB of undelivered messages in the renderer until
 * the tab crashed. So the page tells the hub how many bytes it has processed, and the hub counts
 * what is sent but not acknowledged as buffered: its hold-and-resync (docs/protocol.md) then
 * keeps what waits in the tab to a few hundred KiB, however slow the CPU.
 *
 * An ack is `[0x03][u32 bytes, big-endian]`, sent unencrypted (a count; DTLS protects it).
 */

export const ACK_PREFIX = 0x03;
/** Bytes processed before an ack goes out: below the hub's low-water mark (16 KiB), so a page
 * that has caught up always looks drained to the hub. */
export const ACK_EVERY = 8 * 1024;

export function ackMessage(bytes: number): Uint8Array<ArrayBuffer> {
  const m = new Uint8Array(5);
  m[0] = ACK_PREFIX;
  new DataView(m.buffer).setUint32(1, bytes >>> 0, false);
  return m;
}

/** Counts processed bytes; `consumed` returns the ack to send once `every` bytes piled up. */
export class RecvAck {
  private pending = 0;

  constructor(private readonly every = ACK_EVERY) {}

  /** The ack that opens the hub's accounting for a new channel (nothing processed yet). */
  start(): Uint8Array<ArrayBuffer> {
    this.pending = 0;
    return ackMessage(0);
  }

  consumed(bytes: number): Uint8Array<ArrayBuffer> | null {
    this.pending += bytes;
    if (this.pending < this.every) return null;
    // Large counts go in pieces: one u32 field per ack.
    const n = Math.min(this.pending, 0xffffffff);
    this.pending -= n;
    return ackMessage(n);
  }
}
