/**
 * ICE configuration and the path policy of the WebRTC carrier, apart from any socket so it can
 * be tested with a fake clock:
 *
 * - `parseIceServers`: the relay's `GET /hubs/<id>/webrtc` answer, checked (the relay is not
 *   trusted: only `stun:`/`turn:`/`turns:` URLs of a sane shape, printable credentials);
 * - `IceCache`: that answer cached 60 s, the last good one kept (an hour) when a fetch fails;
 * - `IcePolicy`: ICE restarts after 1 s, 2 s, 4 s (then a full rebuild), and relay-only ICE for
 *   5 minutes after a direct path got stuck while a TURN server exists.
 */
import { type Clock, realClock } from "./reconnect";

export const ICE_FRESH_MS = 60_000;
export const ICE_STALE_MS = 3_600_000;
export const RESTART_DELAYS_MS = [1000, 2000, 4000];
export const RELAY_FOR_MS = 5 * 60_000;
const MAX_SERVERS = 8;
const MAX_URLS = 8;
const MAX_FIELD = 512;
const ICE_URL =
  /^(stun|turn|turns):([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::([0-9]{1,5}))?(?:\?transport=(udp|tcp))?$/;

/** Checks one ICE URL; returns an error or null. */
function urlProblem(url: unknown): string | null {
  if (typeof url !== "string" || url.length > MAX_FIELD) return "expected URL strings";
  const m = ICE_URL.exec(url);
  if (!m) return `not a stun:, turn: or turns: URL: ${JSON.stringify(url.slice(0, 80))}`;
  if (m[3] !== undefined && (+m[3] < 1 || +m[3] > 65535)) return `port out of range: ${url}`;
  if (m[1] === "stun" && m[4] !== undefined) return `a stun: URL takes no transport: ${url}`;
  return null;
}

function printable(v: string): boolean {
  // eslint-disable-next-line no-control-regex
  return v.length > 0 && v.length <= MAX_FIELD && !/[\u0000-\u001f\u007f-\u009f]/.test(v);
}

/** The relay's answer as `RTCIceServer`s in one shape; throws an Error saying what is wrong. */
export function parseIceServers(body: unknown): RTCIceServer[] {
  const list = (body as { ice_servers?: unknown } | null)?.ice_servers;
  if (typeof body !== "object" || body === null || !Array.isArray(list))
    throw new Error("expected an object with an ice_servers list");
  if (list.length > MAX_SERVERS) throw new Error(`more than ${MAX_SERVERS} ICE servers`);
  return list.map((server: unknown, i) => {
    const where = `ice_servers[${i}]`;
    if (typeof server !== "object" || server === null || Array.isArray(server))
      throw new Error(`${where}: expected an object`);
    const s = server as Record<string, unknown>;
    const urls = typeof s.urls === "string" ? [s.urls] : s.urls;
    if (!Array.isArray(urls) || urls.length < 1 || urls.length > MAX_URLS)
      throw new Error(`${where}.urls: expected a URL or 1..${MAX_URLS} of them`);
    for (const u of urls) {
      const p = urlProblem(u);
      if (p) throw new Error(`${where}.urls: ${p}`);
    }
    const out: RTCIceServer = { urls: [...(urls as string[])] };
    for (const f of ["username", "credential"] as const) {
      const v = s[f];
      if (v === undefined || v === null) continue;
      if (typeof v !== "string" || !printable(v)) throw new Error(`${where}.${f}: expected a printable string`);
      out[f] = v;
    }
    if ((urls as string[]).some((u) => u.startsWith("turn")) && !(out.username && out.credential))
      throw new Error(`${where}: a TURN server without username and credential`);
    return out;
  });
}

/** Whether any server is a TURN server (relay-only ICE can work). */
export function hasTurn(servers: RTCIceServer[]): boolean {
  return servers.some((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]).some((u) => u.startsWith("turn")));
}

/** The relay's ICE servers, cached; a failed fetch or a bad answer falls back to the last good one. */
export class IceCache {
  private servers: RTCIceServer[] | null = null;
  private at = 0;
  private warned = false;

  constructor(
    private readonly fetchBody: () => Promise<unknown>,
    private readonly log: (msg: string) => void = () => {},
    private readonly clock: Clock = realClock,
  ) {}

  async get(): Promise<RTCIceServer[]> {
    const now = this.clock.now();
    if (this.servers && now - this.at < ICE_FRESH_MS) return this.servers;
    try {
      const servers = parseIceServers(await this.fetchBody());
      this.servers = servers;
      this.at = this.clock.now();
      this.warned = false;
      return servers;
    } catch (e) {
      // Logged once until a fetch works again: a relay that keeps failing must not flood the log.
      if (!this.warned) this.log(`ICE servers ignored: ${(e as Error).message ?? e}`);
      this.warned = true;
      return this.servers && this.clock.now() - this.at < ICE_STALE_MS ? this.servers : [];
    }
  }

  /** The last good answer (for `hasTurn`), without fetching. */
  get last(): RTCIceServer[] {
    return this.servers ?? [];
  }
}

/** When to restart ICE, and when to use TURN only. */
export class IcePolicy {
  private restarts = 0;
  private relayUntil = 0;

  constructor(
    /** Relay-only always (a user setting for networks where only TURN works; tests). */
    private readonly forced = false,
    private readonly clock: Clock = realClock,
  ) {}

  get transportPolicy(): RTCIceTransportPolicy {
    return this.forced || this.clock.now() < this.relayUntil ? "relay" : "all";
  }

  /**
   * ICE trouble on the current peer (failed, or stuck disconnected). `direct`: the path was
   * direct; `turn`: a TURN server exists. Returns the delay before the next ICE restart, or
   * null when the restarts are used up (the caller rebuilds from scratch).
   */
  trouble(direct: boolean, turn: boolean): number | null {
    if (direct && turn) this.relayUntil = this.clock.now() + RELAY_FOR_MS;
    if (this.restarts >= RESTART_DELAYS_MS.length) {
      this.restarts = 0;
      return null;
    }
    return RESTART_DELAYS_MS[this.restarts++];
  }

  /** A restart is under way (its peer's setup failing counts as more trouble). */
  get restarting(): boolean {
    return this.restarts > 0;
  }

  /** The channel opened: the next trouble starts over at 1 s. */
  connected(): void {
    this.restarts = 0;
  }
}
