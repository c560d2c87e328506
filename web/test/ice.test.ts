import { describe, expect, it } from "vitest";
import { hasTurn, ICE_FRESH_MS, ICE_STALE_MS, IceCache, IcePolicy, parseIceServers, RELAY_FOR_MS } from "../src/ice";
import { FakeClock } from "../src/reconnect";

describe("parseIceServers", () => {
  it("keeps stun/turn/turns servers in one shape and drops unknown keys", () => {
    const got = parseIceServers({
      ice_servers: [
        { urls: "stun:stun.example.org:3478" },
        { urls: ["turn:10.0.0.1:3478?transport=udp", "turns:t.example.org:5349"], username: "1700000000:42", credential: "c2VjcmV0", extra: 1 },
        { urls: ["stun:[2001:db8::1]:3478"] },
      ],
    });
    expect(got).toEqual([
      { urls: ["stun:stun.example.org:3478"] },
      { urls: ["turn:10.0.0.1:3478?transport=udp", "turns:t.example.org:5349"], username: "1700000000:42", credential: "c2VjcmV0" },
      { urls: ["stun:[2001:db8::1]:3478"] },
    ]);
    expect(hasTurn(got)).toBe(true);
    expect(hasTurn([got[0]])).toBe(false);
    expect(parseIceServers({ ice_servers: [] })).toEqual([]);
  });

  it.each([
    [[], "expected an object"],
    [null, "expected an object"],
    [{ ice_servers: "stun:x" }, "expected an object"],
    [{ ice_servers: [{ urls: "http://evil.example/" }] }, "not a stun:"],
    [{ ice_servers: [{ urls: "javascript:alert(1)" }] }, "not a stun:"],
    [{ ice_servers: [{ urls: "stun:evil.example?transport=udp" }] }, "takes no transport"],
    [{ ice_servers: [{ urls: "stun:x.example:99999" }] }, "port out of range"],
    [{ ice_servers: [{ urls: "stun:x.example:3478\n" }] }, "not a stun:"],
    [{ ice_servers: [{ urls: "turn:t.example" }] }, "without username and credential"],
    [{ ice_servers: [{ urls: [] }] }, "expected a URL"],
    [{ ice_servers: Array(9).fill({ urls: "stun:a" }) }, "more than 8"],
    [{ ice_servers: ["stun:a"] }, "expected an object"],
    [{ ice_servers: [{ urls: "turn:t", username: "u\u0000", credential: "c" }] }, "printable"],
    [{ ice_servers: [{ urls: "turn:t", username: "u", credential: 7 }] }, "printable"],
    [{ ice_servers: [{ urls: "stun:" + "a".repeat(600) }] }, "expected URL strings"],
  ])("refuses %j saying why", (body, why) => {
    expect(() => parseIceServers(body)).toThrow(why as string);
  });
});

describe("IceCache", () => {
  it("is fresh for 60 s, keeps the last good answer when a fetch fails, and logs once", async () => {
    const clock = new FakeClock();
    const answers: (unknown | Error)[] = [
      { ice_servers: [{ urls: "stun:a.example" }] },
      new Error("HTTP 502"),
      { ice_servers: [{ urls: "http://evil" }] },
      { ice_servers: [] },
    ];
    let fetched = 0;
    const logs: string[] = [];
    const cache = new IceCache(
      async () => {
        const a = answers[fetched++];
        if (a instanceof Error) throw a;
        return a;
      },
      (m) => logs.push(m),
      clock,
    );
    expect(await cache.get()).toEqual([{ urls: ["stun:a.example"] }]);
    clock.advance(ICE_FRESH_MS - 1);
    expect(await cache.get()).toEqual([{ urls: ["stun:a.example"] }]);
    expect(fetched).toBe(1);
    clock.advance(1);
    expect(await cache.get()).toEqual([{ urls: ["stun:a.example"] }]); // stale, after HTTP 502
    expect(await cache.get()).toEqual([{ urls: ["stun:a.example"] }]); // stale, after a bad answer
    expect(fetched).toBe(3);
    expect(logs).toEqual(["ICE servers ignored: HTTP 502"]);
    expect(await cache.get()).toEqual([]); // a good (empty) answer replaces it
    expect(cache.last).toEqual([]);
  });

  it("gives up the stale answer after an hour", async () => {
    const clock = new FakeClock();
    let ok = true;
    const cache = new IceCache(
      async () => {
        if (!ok) throw new Error("down");
        return { ice_servers: [{ urls: "stun:a.example" }] };
      },
      () => {},
      clock,
    );
    await cache.get();
    ok = false;
    clock.advance(ICE_STALE_MS + 1);
    expect(await cache.get()).toEqual([]);
  });
});

describe("IcePolicy", () => {
  it("restarts after 1, 2, 4 s, then gives up until the channel opens again", () => {
    const p = new IcePolicy(false, new FakeClock());
    expect([p.trouble(false, false), p.trouble(false, false), p.trouble(false, false)]).toEqual([1000, 2000, 4000]);
    expect(p.restarting).toBe(true);
    expect(p.trouble(false, false)).toBeNull();
    expect(p.trouble(false, false)).toBe(1000);
    p.connected();
    expect(p.restarting).toBe(false);
    expect(p.trouble(false, false)).toBe(1000);
  });

  it("uses TURN only for 5 minutes after a direct path got stuck, if TURN exists", () => {
    const clock = new FakeClock();
    const p = new IcePolicy(false, clock);
    expect(p.transportPolicy).toBe("all");
    p.trouble(true, false); // no TURN: nothing else to try
    expect(p.transportPolicy).toBe("all");
    p.trouble(false, true); // already relayed (or never connected): no change
    expect(p.transportPolicy).toBe("all");
    p.trouble(true, true);
    expect(p.transportPolicy).toBe("relay");
    clock.advance(RELAY_FOR_MS - 1);
    expect(p.transportPolicy).toBe("relay");
    clock.advance(1);
    expect(p.transportPolicy).toBe("all");
    expect(new IcePolicy(true, clock).transportPolicy).toBe("relay");
  });
});
