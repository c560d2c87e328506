import { describe, expect, it } from "vitest";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import {
  Account, b32decode, b32encode, b64decode, b64encode, constantTimeEqual, decodeNormal, decodePreKey, parseBundle, sameHubKeys, Session,
} from "../src/olm";
import { bundleFromFragment, hubIdFromPath } from "../src/pairing";

function makeBundle(seed = 1) {
  const edSecret = new Uint8Array(32).fill(seed);
  const head = new Uint8Array(97);
  head[0] = 6;
  head.set(x25519.getPublicKey(new Uint8Array(32).fill(seed + 1)), 1);
  head.set(ed25519.getPublicKey(edSecret), 33);
  head.set(x25519.getPublicKey(new Uint8Array(32).fill(seed + 2)), 65);
  const sig = ed25519.sign(head, edSecret);
  const raw = new Uint8Array(161);
  raw.set(head);
  raw.set(sig, 97);
  return raw;
}

describe("encodings", () => {
  it("base64 round-trips unpadded and accepts padded and url-safe input", () => {
    for (let n = 0; n < 40; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
      const s = b64encode(b);
      expect(s).not.toContain("=");
      expect(b64decode(s)).toEqual(b);
      expect(b64decode(Buffer.from(b).toString("base64"))).toEqual(b);
      expect(b64decode(Buffer.from(b).toString("base64url"))).toEqual(b);
    }
    expect(() => b64decode("a*b")).toThrow(/base64/);
  });

  it("base32 matches RFC 4648 and round-trips a 161-byte bundle to 258 characters", () => {
    expect(b32encode(new TextEncoder().encode("foobar"))).toBe("MZXW6YTBOI");
    expect(b32decode("MZXW6YTBOI======")).toEqual(new TextEncoder().encode("foobar"));
    const raw = makeBundle();
    const s = b32encode(raw);
    expect(s).toHaveLength(258);
    expect(b32decode(s.toLowerCase())).toEqual(raw);
  });

  it("constant-time equality", () => {
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(constantTimeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(constantTimeEqual(new Uint8Array([1]), new Uint8Array([1, 2]))).toBe(false);
  });
});

describe("bundles and pairing", () => {
  it("parses and verifies a v6 bundle; refuses other lengths, versions and bad signatures", () => {
    const raw = makeBundle();
    const b = parseBundle(raw);
    expect(b.oneTimeKey).toEqual(raw.slice(65, 97));
    expect(() => parseBundle(raw.slice(0, 160))).toThrow(/161/);
    const v5 = raw.slice();
    v5[0] = 5;
    expect(() => parseBundle(v5)).toThrow(/version 5/);
    const forged = raw.slice();
    forged[70] ^= 1; // another one-time key under the same signature
    expect(() => parseBundle(forged)).toThrow(/signature/);
  });

  it("pins hub keys: a bundle from another hub key does not match", () => {
    const a = parseBundle(makeBundle(1));
    const b = parseBundle(makeBundle(9));
    expect(sameHubKeys(a, a)).toBe(true);
    expect(sameHubKeys(b, a)).toBe(false);
  });

  it("reads the hub id from the path and the bundle from the fragment", () => {
    expect(hubIdFromPath("/hubs/abc123/pairing")).toBe("abc123");
    expect(hubIdFromPath("/hubs/abc123")).toBe("abc123");
    expect(hubIdFromPath("/app/index.html")).toBeNull();
    const raw = makeBundle();
    expect(bundleFromFragment("#" + b32encode(raw)).raw).toEqual(raw);
    expect(() => bundleFromFragment("#")).toThrow(/no key bundle/);
    expect(() => bundleFromFragment("#" + b32encode(raw).slice(0, 200))).toThrow(/161/);
    expect(() => bundleFromFragment("#not-base32!")).toThrow(/base32/);
  });
});

describe("session messages", () => {
  it("PreKey wraps a Normal message with our keys; v1 has an 8-byte MAC, v2 a 32-byte one", () => {
    const bundle = parseBundle(makeBundle());
    const acct = Account.create();
    for (const version of [1, 2] as const) {
      const s = Session.outbound(acct, bundle.identityKey, bundle.oneTimeKey, { version });
      const m = s.encrypt(new Uint8Array([0, 1, 2]));
      expect(m.type).toBe(0);
      const pre = decodePreKey(m.body);
      expect(pre.identityKey).toEqual(acct.identity.public);
      expect(pre.oneTimeKey).toEqual(bundle.oneTimeKey);
      expect(pre.message.version).toBe(version === 1 ? 3 : 4);
      expect(pre.message.mac.length).toBe(version === 1 ? 8 : 32);
      expect(pre.message.chainIndex).toBe(0);
      const second = decodePreKey(s.encrypt(new Uint8Array()).body);
      expect(second.message.chainIndex).toBe(1);
      expect(second.baseKey).toEqual(pre.baseKey);
      expect(second.message.ciphertext.length).toBe(16); // one block of PKCS#7 padding
    }
    expect(() => decodeNormal(new Uint8Array([9, 1, 2]))).toThrow(/version/);
  });

  it("an account survives a round trip through its stored form", () => {
    const a = Account.create();
    const b = Account.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
    expect(b.identity.public).toEqual(a.identity.public);
    expect(() => Account.fromJSON({ identity_secret: "AAAA" })).toThrow(/length/);
  });
});
