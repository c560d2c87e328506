/**
 * The WebRTC carrier: one end-to-end encrypted data channel from this tab to the hub.
 *
 * Owns signalling over the relay's ActionCable (HubSignalingChannel: health, Olm-encrypted
 * offer/answer/ICE envelopes, bundle requests), the Olm session to the hub (a new one for every
 * verified bundle, the hub keys pinned), the RTCPeerConnection with its `relay` channel, DC
 * framing (frames.ts), dc_ping/dc_pong liveness and rebuilding everything by itself after a
 * network change, a hub restart or a sleeping laptop. ICE servers come from the relay (ice.ts
 * checks and caches them); when ICE fails or a path stays disconnected the carrier restarts ICE
 * after 1 s, 2 s, 4 s with a new peer connection on the same Olm session (the hub's aiortc
 * cannot restart ICE in place), and a direct path that got stuck is retried through TURN only. It knows nothing of the client protocol
 * above it (client.ts): it delivers decoded frames and says when the channel opens and closes.
 */
import { createConsumer } from "@rails/actioncable";
import {
  DcPrefix,
  decodeFrame,
  encodeForDc,
  FrameType,
  jsonFrame,
  MAX_DC_MESSAGE,
  Reassembler,
  type Decoded,
} from "./frames";
import { Account, b64decode, b64encode, type Bundle, concat, OlmError, parseBundle, sameHubKeys, Session } from "./olm";
import { RecvAck } from "./recvack";
import { Backoff, Watchdog } from "./reconnect";
import { hasTurn, IceCache, IcePolicy } from "./ice";

export type RelayState = "connecting" | "connected" | "disconnected";
export type HubState = "unknown" | "online" | "offline";
export type PeerState = "down" | "connecting" | "direct" | "relayed";

export interface Status {
  relay: RelayState;
  hub: HubState;
  peer: PeerState;
}

export interface CarrierOptions {
  /** The relay's origin, e.g. `https://relay.example` (same origin as the page by default). */
  relayUrl: string;
  /** The hub's server id (from the pairing URL's path). */
  hubId: string;
  account: Account;
  /** The hub keys pinned at pairing: every later bundle must carry them. */
  pinned: { identityKey: Uint8Array; signingKey: Uint8Array };
  /** A fresh bundle from the pairing URL; its one-time key opens the first session. */
  pairingBundle?: Bundle;
  onFrame(d: Decoded): void;
  onOpen(): void;
  onClose(): void;
  onStatus(s: Status): void;
  /** A fatal problem the user must see (a hub key mismatch); the carrier stops. */
  onFatal(message: string): void;
  log?(msg: string): void;
}

const BUNDLE_WAIT_MS = 750;
const BUNDLE_REQUEST_TIMEOUT_MS = 5000;
const PEER_SETUP_TIMEOUT_MS = 15000;
const DISCONNECTED_GRACE_MS = 5000;
const PING_EVERY_MS = 10000;
const SILENCE_LIMIT_MS = 30000;
const PROBE_TIMEOUT_MS = 3000;
const DECRYPT_FAILURES_BEFORE_RESTART = 3;
const ICE_FETCH_TIMEOUT_MS = 3000;
/** localStorage key: "relay" makes every connection use TURN only (networks that block UDP). */
export const ICE_POLICY_KEY = "botster.iceTransportPolicy";
const te = new TextEncoder();
const td = new TextDecoder();

export const INTERCEPTION_MESSAGE =
  "This hub answered with keys other than the ones you paired with: possible interception. " +
  "Nothing was sent. If you re-installed or reset the hub, pair again with a fresh code.";

function relayForced(): boolean {
  try {
    return localStorage.getItem(ICE_POLICY_KEY) === "relay";
  } catch {
    return false;
  }
}

function tabId(): string {
  return typeof crypto.randomUUID === "function"
    ? crypto.randomUUID()
    : b64encode(crypto.getRandomValues(new Uint8Array(16)));
}

interface Peer {
  gen: number;
  pc: RTCPeerConnection;
  dc: RTCDataChannel;
  open: boolean;
  remoteSet: boolean;
  pendingIce: RTCIceCandidateInit[];
  timers: ReturnType<typeof setTimeout>[];
}

export class Carrier {
  readonly browserIdentity: string;
  private status: Status = { relay: "connecting", hub: "unknown", peer: "down" };
  private consumer: ReturnType<typeof createConsumer> | null = null;
  private subscription: { perform(action: string, data?: object): void; unsubscribe(): void } | null = null;
  private session: Session | null = null;
  private lastOtk: Uint8Array | null = null;
  private bundleSeq = 0;
  private bundleWaiters: (() => void)[] = [];
  private needBundle: boolean;
  private peer: Peer | null = null;
  private gen = 0;
  private connecting = false;
  private stopped = false;
  private fatal = false;
  private backoff = new Backoff();
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private watchdog: Watchdog;
  private decryptFailures = 0;
  private sendChain: Promise<void> = Promise.resolve();
  private recvChain: Promise<void> = Promise.resolve();
  private reassembler = new Reassembler();
  private recvAck = new RecvAck();
  private probeWaiter: (() => void) | null = null;
  private readonly onWake = () => this.probe();
  /** Receive-path counters (diagnostics, read by the benchmark). */
  readonly stats = { messages: 0, bytes: 0, lagMaxMs: 0, lagSumMs: 0, decryptMs: 0, inflateMs: 0, backlogMax: 0 };
  private backlog = 0;
  private readonly ice: IceCache;
  private readonly policy = new IcePolicy(relayForced());
  private restartPending = false;

  constructor(private readonly opts: CarrierOptions) {
    this.browserIdentity = `${opts.account.identityKeyBase64}:${tabId()}`;
    this.watchdog = new Watchdog(SILENCE_LIMIT_MS, () => this.peerDown("no frame for 30 s"));
    this.ice = new IceCache(() => this.fetchIce(), (m) => this.log(m));
    if (opts.pairingBundle) {
      this.adoptBundle(opts.pairingBundle);
      this.needBundle = false;
    } else this.needBundle = true;
  }

  get state(): Status {
    return { ...this.status };
  }

  get isOpen(): boolean {
    return !!this.peer?.open;
  }

  start(): void {
    this.log("carrier start");
    const url = new URL("/cable", this.opts.relayUrl);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.consumer = createConsumer(url.toString());
    this.subscription = this.consumer.subscriptions.create(
      { channel: "HubSignalingChannel", hub_id: this.opts.hubId, browser_identity: this.browserIdentity },
      {
        connected: () => {
          this.log("signalling subscribed");
          this.setStatus({ relay: "connected" });
          this.kick();
        },
        disconnected: () => this.setStatus({ relay: "disconnected" }),
        rejected: () => {
          this.setStatus({ relay: "disconnected" });
          this.log("signalling subscription rejected");
        },
        received: (data: Record<string, unknown>) => this.onSignal(data),
      },
    );
    window.addEventListener("online", this.onWake);
    window.addEventListener("pageshow", this.onWake);
    document.addEventListener("visibilitychange", this.onVisible);
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.onWake);
    window.removeEventListener("pageshow", this.onWake);
    document.removeEventListener("visibilitychange", this.onVisible);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.teardown();
    this.subscription?.unsubscribe();
    this.consumer?.disconnect();
  }

  /** Sends one client-protocol frame (`[type][payload]`). Frames keep their order. */
  send(frame: Uint8Array): Promise<void> {
    const peer = this.peer;
    const next = this.sendChain.then(async () => {
      if (!peer || peer !== this.peer || !peer.open || !this.session) return;
      for (const plain of await encodeForDc(frame)) {
        if (peer !== this.peer || peer.dc.readyState !== "open") return;
        // Encrypt at send time, in order: the hub's gap limit is 2000 messages.
        const m = this.session.encrypt(plain);
        const msg =
          m.type === 0
            ? concat(new Uint8Array([DcPrefix.PREKEY]), this.opts.account.identity.public, m.body)
            : concat(new Uint8Array([DcPrefix.NORMAL]), m.body);
        if (msg.length > MAX_DC_MESSAGE) throw new Error("data channel message over 256 KiB");
        if (peer.dc.bufferedAmount > 8 * 1024 * 1024) await this.drained(peer.dc);
        peer.dc.send(msg as Uint8Array<ArrayBuffer>);
      }
    });
    this.sendChain = next.catch((e) => this.log(`send failed: ${e}`));
    return next;
  }

  /** Checks the link now (after a network change or wake-up); rebuilds it when it is dead. */
  probe(): void {
    if (this.stopped || this.fatal) return;
    if (!this.peer?.open) {
      this.backoff.reset();
      this.kick();
      return;
    }
    const peer = this.peer;
    let answered = false;
    this.probeWaiter = () => (answered = true);
    void this.send(jsonFrame({ type: "dc_ping" }));
    setTimeout(() => {
      if (!answered && this.peer === peer) this.peerDown("probe unanswered");
    }, PROBE_TIMEOUT_MS);
  }

  private readonly onVisible = () => {
    if (document.visibilityState === "visible") this.probe();
  };

  private drained(dc: RTCDataChannel): Promise<void> {
    dc.bufferedAmountLowThreshold = 1024 * 1024;
    return new Promise((res) => dc.addEventListener("bufferedamountlow", () => res(), { once: true }));
  }

  private log(msg: string) {
    this.opts.log?.(msg);
  }

  private setStatus(s: Partial<Status>) {
    const before = JSON.stringify(this.status);
    Object.assign(this.status, s);
    if (JSON.stringify(this.status) !== before) this.opts.onStatus({ ...this.status });
  }

  // ---------- signalling ----------

  private onSignal(data: Record<string, unknown>) {
    if (data.type === "health") {
      const online = data.cli === "online";
      this.setStatus({ hub: online ? "online" : "offline" });
      if (online) {
        this.backoff.reset();
        this.kick();
      } else if (this.peer) this.peerDown("hub offline");
      return;
    }
    if (data.type !== "signal" || typeof data.envelope !== "object" || !data.envelope) return;
    const env = data.envelope as { t?: number; b?: string };
    if (typeof env.b !== "string") return;
    if (env.t === 2) {
      this.onBundleBytes(b64decode(env.b));
      return;
    }
    if ((env.t !== 0 && env.t !== 1) || !this.session) return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(td.decode(this.session.decrypt(env.t, b64decode(env.b))));
    } catch (e) {
      this.log(`signal did not decrypt (${e}); asking for a fresh bundle`);
      this.restartRatchet();
      return;
    }
    void this.onPeerSignal(msg);
  }

  private perform(action: string, data: object = {}) {
    this.subscription?.perform(action, data);
  }

  private sendSignal(msg: object) {
    if (!this.session) return;
    const m = this.session.encrypt(te.encode(JSON.stringify(msg)));
    const envelope: Record<string, unknown> = { t: m.type, b: b64encode(m.body) };
    if (m.type === 0) envelope.k = this.opts.account.identityKeyBase64;
    this.perform("signal", { envelope });
  }

  private onBundleBytes(raw: Uint8Array) {
    let bundle: Bundle;
    try {
      bundle = parseBundle(raw);
    } catch (e) {
      this.log(`ignored a bad bundle: ${e instanceof OlmError ? e.message : e}`);
      return;
    }
    if (!sameHubKeys(bundle, this.opts.pinned)) {
      this.fatal = true;
      this.stop();
      this.opts.onFatal(INTERCEPTION_MESSAGE);
      return;
    }
    // The same bundle may come twice (DC and signalling): one session per one-time key.
    if (this.lastOtk && bundle.oneTimeKey.every((b, i) => b === this.lastOtk![i])) return;
    const midSetup = this.peer && !this.peer.open;
    if (midSetup) {
      // An offer in flight used the old session, which the hub just dropped: offer again at
      // once with the new one (this happens when the relay's bundle request for a freshly
      // paired browser reaches the hub after its first offer).
      this.teardown();
      this.backoff.reset();
    }
    this.adoptBundle(bundle);
    this.needBundle = false;
    this.bundleWaiters.splice(0).forEach((w) => w());
    this.kick();
  }

  private adoptBundle(bundle: Bundle) {
    this.session = Session.outbound(this.opts.account, bundle.identityKey, bundle.oneTimeKey);
    this.lastOtk = bundle.oneTimeKey.slice();
    this.bundleSeq++;
    this.decryptFailures = 0;
  }

  private restartRatchet() {
    this.needBundle = true;
    this.perform("request_bundle");
  }

  private waitBundle(seq: number, ms: number): Promise<boolean> {
    if (this.bundleSeq !== seq) return Promise.resolve(true);
    return new Promise((res) => {
      const t = setTimeout(() => res(this.bundleSeq !== seq), ms);
      this.bundleWaiters.push(() => {
        clearTimeout(t);
        res(true);
      });
    });
  }

  // ---------- peer ----------

  /** Starts a connection attempt if one is wanted and none is running. */
  private kick() {
    if (this.stopped || this.fatal || this.peer || this.retryTimer) return;
    if (this.connecting) {
      this.scheduleRetry(); // an aborted attempt is still unwinding; look again soon
      return;
    }
    if (this.status.relay !== "connected" || this.status.hub === "offline") return;
    void this.connect();
  }

  private scheduleRetry() {
    if (this.stopped || this.fatal || this.retryTimer) return;
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, delay);
  }

  private async connect() {
    this.connecting = true;
    const gen = ++this.gen;
    try {
      if (this.needBundle) {
        const seq = this.bundleSeq;
        // The relay asks the hub for a bundle when we subscribe; give it a moment, then ask.
        let got = await this.waitBundle(seq, BUNDLE_WAIT_MS);
        if (!got) {
          this.perform("request_bundle");
          got = await this.waitBundle(seq, BUNDLE_REQUEST_TIMEOUT_MS);
        }
        if (!got) throw new Error("no key bundle from the hub");
      }
      if (gen !== this.gen || this.stopped) return;
      const iceServers = await this.iceServers();
      if (gen !== this.gen || this.stopped) return;
      this.buildPeer(gen, iceServers);
      const peer = this.peer!;
      const offer = await peer.pc.createOffer();
      await peer.pc.setLocalDescription(offer);
      if (this.peer !== peer) return;
      const restart = this.restartPending;
      this.restartPending = false;
      this.sendSignal({ type: "offer", sdp: offer.sdp, ...(restart ? { restart: true } : {}) });
      this.log(`${restart ? "ICE restart offer" : "offer"} ${gen} sent`);
    } catch (e) {
      this.log(`connect failed: ${e}`);
      if (gen === this.gen) {
        this.teardown();
        this.scheduleRetry();
      }
    } finally {
      this.connecting = false;
    }
  }

  private iceServers(): Promise<RTCIceServer[]> {
    return this.ice.get();
  }

  private async fetchIce(): Promise<unknown> {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), ICE_FETCH_TIMEOUT_MS);
    try {
      const r = await fetch(new URL(`/hubs/${encodeURIComponent(this.opts.hubId)}/webrtc`, this.opts.relayUrl), {
        signal: ctl.signal,
        credentials: "same-origin",
      });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return await r.json();
    } finally {
      clearTimeout(t);
    }
  }

  private buildPeer(gen: number, iceServers: RTCIceServer[]) {
    // TURN only when asked (a stuck direct path, or the user's setting) and a TURN server exists.
    const iceTransportPolicy = this.policy.transportPolicy === "relay" && hasTurn(iceServers) ? "relay" : "all";
    if (iceTransportPolicy === "relay") this.log(`peer ${gen}: TURN only`);
    const pc = new RTCPeerConnection({ iceServers, iceCandidatePoolSize: 1, iceTransportPolicy });
    const dc = pc.createDataChannel("relay", { ordered: true });
    dc.binaryType = "arraybuffer";
    const peer: Peer = { gen, pc, dc, open: false, remoteSet: false, pendingIce: [], timers: [] };
    this.peer = peer;
    this.reassembler = new Reassembler();
    this.setStatus({ peer: "connecting" });
    const current = () => this.peer === peer;
    pc.onicecandidate = (ev) => {
      if (current() && ev.candidate && ev.candidate.candidate)
        this.sendSignal({ type: "ice", candidate: ev.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      const s = pc.connectionState;
      if (s === "failed") this.iceTrouble(peer, "ICE failed");
      else if (s === "closed") this.peerDown(`peer connection ${s}`);
      else if (s === "disconnected")
        peer.timers.push(
          setTimeout(() => {
            if (current() && pc.connectionState === "disconnected") this.iceTrouble(peer, "peer stuck disconnected");
          }, DISCONNECTED_GRACE_MS),
        );
      else if (s === "connected" && peer.open) void this.updatePathKind(peer);
    };
    dc.onopen = () => {
      if (!current()) return;
      peer.open = true;
      // First of all: from this ack on, the hub counts what this tab has not processed yet.
      dc.send(this.recvAck.start());
      this.log(`data channel ${gen} open`);
      this.backoff.reset();
      this.policy.connected();
      this.decryptFailures = 0;
      this.watchdog.feed();
      this.pingTimer = setInterval(() => void this.send(jsonFrame({ type: "dc_ping" })), PING_EVERY_MS);
      // ICE may move to another pair by itself (a direct path breaks, a TURN pair still works).
      const iceTransport = pc.sctp?.transport.iceTransport;
      if (iceTransport) iceTransport.onselectedcandidatepairchange = () => void this.updatePathKind(peer);
      void this.updatePathKind(peer);
      this.opts.onOpen();
    };
    dc.onclose = () => {
      if (current()) this.peerDown("data channel closed");
    };
    dc.onmessage = (ev) => {
      if (!current()) return;
      this.watchdog.feed();
      const bytes = new Uint8Array(ev.data as ArrayBuffer);
      const t = performance.now();
      this.backlog++;
      if (this.backlog > this.stats.backlogMax) this.stats.backlogMax = this.backlog;
      this.recvChain = this.recvChain
        .then(() => {
          const lag = performance.now() - t;
          this.stats.messages++;
          this.stats.bytes += bytes.length;
          this.stats.lagSumMs += lag;
          if (lag > this.stats.lagMaxMs) this.stats.lagMaxMs = lag;
          return this.onDcMessage(peer, bytes);
        })
        .catch((e) => this.log(`receive: ${e}`))
        .finally(() => {
          this.backlog--;
          this.ack(peer, bytes.length);
        });
    };
    peer.timers.push(
      setTimeout(() => {
        if (!current() || peer.open) return;
        if (this.policy.restarting) this.iceTrouble(peer, "ICE restart timed out");
        else this.peerDown("peer setup timed out");
      }, PEER_SETUP_TIMEOUT_MS),
    );
  }

  private async updatePathKind(peer: Peer) {
    try {
      const stats = await peer.pc.getStats();
      let pairId: string | undefined;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      let local: string | undefined;
      let remote: string | undefined;
      stats.forEach((s) => {
        if (s.type === "candidate-pair" && (s.id === pairId || (!pairId && s.nominated && s.state === "succeeded"))) {
          local = s.localCandidateId;
          remote = s.remoteCandidateId;
        }
      });
      const kinds = [local, remote].map((id) => (id ? stats.get(id)?.candidateType : undefined));
      // Relayed when either end of the pair is a TURN relay candidate: the path runs through it.
      const kind = kinds.includes("relay") ? "relayed" : "direct";
      if (this.peer !== peer) return;
      if (kind !== this.status.peer) this.log(`path ${kind} (local ${kinds[0]}, remote ${kinds[1]})`);
      this.setStatus({ peer: kind });
    } catch {
      if (this.peer === peer) this.setStatus({ peer: "direct" });
    }
  }

  private async onPeerSignal(msg: Record<string, unknown>) {
    const peer = this.peer;
    if (!peer) return;
    if (msg.type === "answer" && typeof msg.sdp === "string") {
      if (peer.pc.signalingState !== "have-local-offer") return; // a stale answer
      this.log(`answer ${peer.gen} received`);
      await peer.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      peer.remoteSet = true;
      for (const c of peer.pendingIce.splice(0)) await peer.pc.addIceCandidate(c).catch(() => {});
    } else if (msg.type === "ice" || msg.type === "ice_batch") {
      const list = (msg.type === "ice" ? [msg.candidate] : (msg.candidates as unknown[])) ?? [];
      for (const c of list) {
        if (!c || typeof c !== "object") continue;
        const init = c as RTCIceCandidateInit;
        if (!peer.remoteSet) {
          if (peer.pendingIce.length < 128) peer.pendingIce.push(init);
        } else await peer.pc.addIceCandidate(init).catch(() => {});
      }
    }
  }

  /** Tells the hub what this tab has processed (recvack.ts): its flow control counts the rest. */
  private ack(peer: Peer, bytes: number) {
    const m = this.recvAck.consumed(bytes);
    if (m && this.peer === peer && peer.dc.readyState === "open") {
      try {
        peer.dc.send(m);
      } catch {
        // The channel is closing; its close handler rebuilds.
      }
    }
  }

  private async onDcMessage(peer: Peer, bytes: Uint8Array) {
    if (bytes.length === 0 || this.peer !== peer) return;
    if (bytes[0] === DcPrefix.BUNDLE) {
      this.onBundleBytes(bytes.subarray(1));
      return;
    }
    if (!this.session) return;
    let plain: Uint8Array;
    const t0 = performance.now();
    try {
      plain =
        bytes[0] === DcPrefix.NORMAL
          ? this.session.decrypt(1, bytes.subarray(1))
          : this.session.decrypt(0, bytes.subarray(33));
    } catch (e) {
      this.log(`frame did not decrypt: ${e}`);
      if (++this.decryptFailures >= DECRYPT_FAILURES_BEFORE_RESTART) {
        this.decryptFailures = 0;
        this.restartRatchet();
      }
      return;
    }
    this.decryptFailures = 0;
    const t1 = performance.now();
    this.stats.decryptMs += t1 - t0;
    const frames = await this.reassembler.push(plain);
    this.stats.inflateMs += performance.now() - t1;
    for (const f of frames) {
      const d = decodeFrame(f);
      if (d.kind === "json" && f.type === FrameType.JSON) {
        if (d.msg.type === "dc_ping") {
          void this.send(jsonFrame({ type: "dc_pong" }));
          continue;
        }
        if (d.msg.type === "dc_pong") {
          this.probeWaiter?.();
          this.probeWaiter = null;
          continue;
        }
        if (d.msg.type === "dc_ready") continue;
      }
      this.opts.onFrame(d);
    }
  }

  /**
   * ICE failed, or the path stayed disconnected: restart ICE after 1 s, 2 s, 4 s with a new peer
   * connection on the same Olm session (no bundle round trip; the hub answers it with a fresh
   * peer, its aiortc cannot restart ICE in place), through TURN only when a direct path got
   * stuck and TURN exists; after three restarts, rebuild from scratch.
   */
  private iceTrouble(peer: Peer, why: string) {
    if (this.peer !== peer) return;
    const delay = this.policy.trouble(this.status.peer === "direct", hasTurn(this.ice.last));
    if (delay === null) {
      this.peerDown(`${why}; ICE restarts used up`);
      return;
    }
    const relay = this.policy.transportPolicy === "relay" ? " (TURN only)" : "";
    this.log(`${why}: ICE restart in ${delay} ms${relay}`);
    const wasOpen = peer.open;
    this.teardown();
    this.setStatus({ peer: "connecting" });
    if (wasOpen) this.opts.onClose();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.restartPending = true;
      this.kick();
    }, delay);
  }

  private peerDown(why: string) {
    if (!this.peer && !this.connecting) return;
    this.log(`peer down: ${why}`);
    const wasOpen = !!this.peer?.open;
    this.teardown();
    // A fresh ratchet on every rebuild: the hub may have restarted or dropped our session.
    this.needBundle = true;
    if (wasOpen) this.opts.onClose();
    this.scheduleRetry();
  }

  private teardown() {
    const peer = this.peer;
    this.gen++;
    this.peer = null;
    this.watchdog.stop();
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    if (peer) {
      peer.timers.forEach(clearTimeout);
      peer.pc.onicecandidate = null;
      peer.pc.onconnectionstatechange = null;
      peer.dc.onopen = peer.dc.onclose = peer.dc.onmessage = null;
      try {
        peer.dc.close();
        peer.pc.close();
      } catch {
        /* already closed */
      }
    }
    this.setStatus({ peer: "down" });
  }
}
