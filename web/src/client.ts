/**
 * The client protocol (docs/protocol.md — exactly the hub socket's) spoken over any carrier:
 * hello, requests with ids, the `hub`/`mcp`/`terminal` subscriptions, PTY input. Every time the
 * carrier opens it says hello again, re-subscribes and re-attaches the terminal it had (the hub
 * then sends a SNAPSHOT: the exact screen). Keys typed while the link is down are kept (up to
 * 64 KiB) and sent once the terminal is attached again.
 */
import { FrameType, frame, jsonFrame, ptyInputFrame, type Decoded } from "./frames";

export interface Transport {
  send(frame: Uint8Array): Promise<void>;
  readonly isOpen: boolean;
}

export interface ClientHandlers {
  onReady?(ack: Record<string, unknown>): void;
  onEvent?(channel: string, event: string, data: unknown): void;
  onSnapshot?(sessionId: string, rows: number, cols: number, data: Uint8Array): void;
  onOutput?(sessionId: string, data: Uint8Array): void;
  onExited?(sessionId: string, code: number): void;
  onError?(msg: Record<string, unknown>): void;
}

export class RequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RequestError";
  }
}

const MAX_PENDING_INPUT = 64 * 1024;

export class HubClient {
  private nextId = 1;
  private pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void; timer: ReturnType<typeof setTimeout> }>();
  private terminal: { sessionId: string; rows: number; cols: number } | null = null;
  private attached = false;
  private pendingInput: Uint8Array[] = [];
  private pendingInputSize = 0;
  ready = false;

  constructor(
    private readonly transport: Transport,
    private readonly handlers: ClientHandlers = {},
    private readonly clientName = "browser",
  ) {}

  get attachedSession(): string | null {
    return this.terminal?.sessionId ?? null;
  }

  /** The carrier opened: handshake and restore subscriptions. */
  opened(): void {
    this.ready = false;
    this.attached = false;
    void this.sendJson({ type: "hello", protocol: 1, client: this.clientName });
    void this.sendJson({ type: "subscribe", channel: "hub" });
    void this.sendJson({ type: "subscribe", channel: "mcp", params: {} });
    if (this.terminal) this.subscribeTerminal();
  }

  /** The carrier closed: requests in flight fail; the terminal will re-attach on open. */
  closed(): void {
    this.ready = false;
    this.attached = false;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError("disconnected from the hub"));
      this.pending.delete(id);
    }
  }

  handle(d: Decoded): void {
    switch (d.kind) {
      case "json":
        return this.handleJson(d.msg);
      case "snapshot":
        if (d.sessionId === this.terminal?.sessionId) this.handlers.onSnapshot?.(d.sessionId, d.rows, d.cols, d.data);
        return;
      case "output":
        if (d.sessionId === this.terminal?.sessionId) this.handlers.onOutput?.(d.sessionId, d.data);
        return;
      case "exited":
        if (d.sessionId === this.terminal?.sessionId) this.handlers.onExited?.(d.sessionId, d.code);
        return;
      default:
        return;
    }
  }

  private handleJson(msg: Record<string, unknown>) {
    switch (msg.type) {
      case "hello_ack":
        this.ready = true;
        this.handlers.onReady?.(msg);
        return;
      case "response": {
        const p = this.pending.get(msg.id as number);
        if (!p) return;
        this.pending.delete(msg.id as number);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new RequestError(String(msg.error ?? "request failed")));
        return;
      }
      case "subscribed":
        if (msg.channel === "terminal" && msg.session_id === this.terminal?.sessionId) {
          this.attached = true;
          this.flushInput();
        }
        return;
      case "event":
        this.handlers.onEvent?.(String(msg.channel), String(msg.event), msg.data);
        return;
      case "error":
        this.handlers.onError?.(msg);
        return;
      default:
        return;
    }
  }

  private sendJson(msg: object): Promise<void> {
    return this.transport.send(jsonFrame(msg));
  }

  request<T = unknown>(command: string, args: object = {}, timeoutMs = 20000): Promise<T> {
    if (!this.transport.isOpen) return Promise.reject(new RequestError("not connected to the hub"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError(`${command}: no answer in ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      void this.sendJson({ type: "request", id, command, args });
    });
  }

  /** Attaches to a session's terminal (detaching the previous one). */
  attach(sessionId: string, rows: number, cols: number): void {
    if (this.terminal && this.terminal.sessionId !== sessionId) this.detach();
    this.terminal = { sessionId, rows, cols };
    this.attached = false;
    this.pendingInput = [];
    this.pendingInputSize = 0;
    if (this.transport.isOpen) this.subscribeTerminal();
  }

  detach(): void {
    const t = this.terminal;
    this.terminal = null;
    this.attached = false;
    if (t && this.transport.isOpen)
      void this.sendJson({ type: "unsubscribe", channel: "terminal", params: { session_id: t.sessionId } });
  }

  private subscribeTerminal() {
    const t = this.terminal!;
    void this.sendJson({ type: "subscribe", channel: "terminal", params: { session_id: t.sessionId, rows: t.rows, cols: t.cols } });
  }

  /**
   * Asks for a fresh SNAPSHOT of the attached terminal (the page fell behind a flood): the hub
   * replaces this client's forwarder, which starts with a snapshot. Without `rows`/`cols`, so
   * the program gets no resize. While the link is down nothing is sent: re-attaching brings one.
   */
  resync(): void {
    const t = this.terminal;
    if (t && this.attached && this.transport.isOpen)
      void this.sendJson({ type: "subscribe", channel: "terminal", params: { session_id: t.sessionId } });
  }

  /** Types into the attached terminal; kept while the link is down. */
  input(data: Uint8Array): void {
    const t = this.terminal;
    if (!t || data.length === 0) return;
    if (this.attached && this.transport.isOpen) {
      void this.transport.send(ptyInputFrame(t.sessionId, data));
      return;
    }
    if (this.pendingInputSize + data.length > MAX_PENDING_INPUT) return;
    this.pendingInput.push(data);
    this.pendingInputSize += data.length;
  }

  private flushInput() {
    const t = this.terminal;
    if (!t) return;
    for (const d of this.pendingInput.splice(0)) void this.transport.send(ptyInputFrame(t.sessionId, d));
    this.pendingInputSize = 0;
  }

  /** Follows the window: the attached terminal takes this size (the last client to size it wins). */
  resize(rows: number, cols: number): void {
    const t = this.terminal;
    if (!t || (t.rows === rows && t.cols === cols)) return;
    t.rows = rows;
    t.cols = cols;
    if (this.attached && this.transport.isOpen)
      this.request("terminal.resize", { session_id: t.sessionId, rows, cols }).catch(() => {});
  }
}

export { FrameType, frame };
