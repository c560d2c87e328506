/**
 * Olm (the double ratchet of libolm / vodozemac) for the browser, on audited primitives:
 * @noble/curves (X25519, Ed25519), @noble/hashes (HKDF, HMAC, SHA-256), @noble/ciphers (AES-CBC).
 *
 * It owns only what the browser needs: an identity key, the OUTBOUND session to the hub built
 * from the hub's signed 161-byte v6 bundle (3DH → OLM_ROOT), encryption (PreKey messages until
 * the hub's first message decrypts, then Normal ones), and the receive ratchet for the hub's
 * replies (OLM_RATCHET, ≤5 receiver chains, ≤40 skipped keys per chain, gap limit 2000,
 * constant-time MAC check, state committed only after the MAC verifies). Wire formats are
 * byte-compatible with vodozemac: version 3 (v1, 8-byte MAC) and version 4 (v2, 32-byte MAC).
 * Sessions default to v1 because the hub's Python vodozemac 0.10 is built without v2 ("session
 * config doesn't match"); v2 stays available for a hub that has it. Inbound sessions are the
 * hub's business and are deliberately absent.
 *
 * Everything is synchronous so ratchet steps can never interleave.
 */
import { cbc } from "@noble/ciphers/aes.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

export const BUNDLE_VERSION = 6;
export const BUNDLE_LENGTH = 161;
export const MAX_RECEIVER_CHAINS = 5;
export const MAX_SKIPPED_KEYS = 40;
export const MAX_MESSAGE_GAP = 2000;

const V1 = 3; // truncated 8-byte MAC, libolm compatible
const V2 = 4; // full 32-byte MAC
const PREKEY_VERSION = 3;
const enc = new TextEncoder();
const INFO_ROOT = enc.encode("OLM_ROOT");
const INFO_RATCHET = enc.encode("OLM_RATCHET");
const INFO_KEYS = enc.encode("OLM_KEYS");
const ZERO_SALT = new Uint8Array([0]);

export class OlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OlmError";
  }
}

// ---------- bytes ----------

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time comparison: the time taken depends only on the lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return constantTimeEqual(a, b);
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 without padding (what vodozemac and the wire contract use). */
export function b64encode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  if (i < bytes.length) {
    const n = (bytes[i] << 16) | ((i + 1 < bytes.length ? bytes[i + 1] : 0) << 8);
    out += B64[n >> 18] + B64[(n >> 12) & 63];
    if (i + 1 < bytes.length) out += B64[(n >> 6) & 63];
  }
  return out;
}

/** Decodes standard or URL-safe base64, padded or not. */
export function b64decode(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
  const out: number[] = [];
  let buf = 0;
  let bits = 0;
  for (const ch of clean) {
    const v = B64.indexOf(ch);
    if (v < 0) throw new OlmError(`invalid base64 character ${JSON.stringify(ch)}`);
    buf = (buf << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((buf >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 decode, case-insensitive, padding optional. */
export function b32decode(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "").toUpperCase();
  const out: number[] = [];
  let buf = 0;
  let bits = 0;
  for (const ch of clean) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new OlmError(`invalid base32 character ${JSON.stringify(ch)}`);
    buf = ((buf << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buf >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

export function b32encode(bytes: Uint8Array): string {
  let out = "";
  let buf = 0;
  let bits = 0;
  for (const b of bytes) {
    buf = ((buf << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(buf >> bits) & 31];
    }
  }
  if (bits > 0) out += B32[(buf << (5 - bits)) & 31];
  return out;
}

// ---------- protobuf-like encoding ----------

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return new Uint8Array(out);
}

function lenField(tag: number, value: Uint8Array): Uint8Array {
  return concat(new Uint8Array([tag]), varint(value.length), value);
}

type Fields = Map<number, Uint8Array | number>;

/** Decodes protobuf fields (varint and length-delimited; fixed ones skipped), like prost. */
function decodeFields(bytes: Uint8Array): Fields {
  const fields: Fields = new Map();
  let i = 0;
  const readVarint = (): number => {
    let result = 0;
    let mult = 1;
    for (let k = 0; k < 10; k++) {
      if (i >= bytes.length) throw new OlmError("truncated varint");
      const b = bytes[i++];
      result += (b & 0x7f) * mult;
      if (!(b & 0x80)) return result;
      mult *= 0x80;
    }
    throw new OlmError("varint too long");
  };
  while (i < bytes.length) {
    const key = readVarint();
    const tag = Math.floor(key / 8);
    const wire = key & 7;
    if (tag === 0) throw new OlmError("invalid field tag 0");
    if (wire === 0) fields.set(tag, readVarint());
    else if (wire === 2) {
      const len = readVarint();
      if (i + len > bytes.length) throw new OlmError("truncated field");
      fields.set(tag, bytes.slice(i, i + len));
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new OlmError(`unsupported wire type ${wire}`);
    if (i > bytes.length) throw new OlmError("truncated field");
  }
  return fields;
}

function bytesField(f: Fields, tag: number, len?: number): Uint8Array {
  const v = f.get(tag);
  if (!(v instanceof Uint8Array)) throw new OlmError(`missing field ${tag}`);
  if (len !== undefined && v.length !== len)
    throw new OlmError(`field ${tag}: expected ${len} bytes, got ${v.length}`);
  return v;
}

export interface NormalMessage {
  version: number;
  ratchetKey: Uint8Array;
  chainIndex: number;
  ciphertext: Uint8Array;
  mac: Uint8Array;
  /** The bytes the MAC covers (everything before it). */
  macInput: Uint8Array;
}

export interface PreKeyMessage {
  oneTimeKey: Uint8Array;
  baseKey: Uint8Array;
  identityKey: Uint8Array;
  message: NormalMessage;
  raw: Uint8Array;
}

function encodeNormalBody(
  version: number,
  ratchetKey: Uint8Array,
  index: number,
  ct: Uint8Array,
): Uint8Array {
  return concat(
    new Uint8Array([version]),
    lenField(0x0a, ratchetKey),
    new Uint8Array([0x10]),
    varint(index),
    lenField(0x22, ct),
  );
}

export function decodeNormal(bytes: Uint8Array): NormalMessage {
  if (bytes.length === 0) throw new OlmError("empty message");
  const version = bytes[0];
  const macLen = version === V2 ? 32 : version === V1 ? 8 : -1;
  if (macLen < 0) throw new OlmError(`unknown message version ${version}`);
  if (bytes.length < macLen + 2) throw new OlmError("message too short");
  const macInput = bytes.slice(0, bytes.length - macLen);
  const f = decodeFields(macInput.subarray(1));
  const idx = f.get(2);
  return {
    version,
    ratchetKey: bytesField(f, 1, 32),
    chainIndex: typeof idx === "number" ? idx : 0,
    ciphertext: bytesField(f, 4),
    mac: bytes.slice(bytes.length - macLen),
    macInput,
  };
}

export function decodePreKey(bytes: Uint8Array): PreKeyMessage {
  if (bytes.length === 0 || bytes[0] !== PREKEY_VERSION)
    throw new OlmError("not a PreKey message (version byte)");
  const f = decodeFields(bytes.subarray(1));
  return {
    oneTimeKey: bytesField(f, 1, 32),
    baseKey: bytesField(f, 2, 32),
    identityKey: bytesField(f, 3, 32),
    message: decodeNormal(bytesField(f, 4)),
    raw: bytes,
  };
}

// ---------- key schedule ----------

function dh(secret: Uint8Array, pub: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(secret, pub);
  } catch {
    throw new OlmError("non-contributory key in Diffie-Hellman");
  }
  if (shared.every((b) => b === 0)) throw new OlmError("non-contributory key in Diffie-Hellman");
  return shared;
}

function kdfRatchet(rootKey: Uint8Array, ours: Uint8Array, theirs: Uint8Array): [Uint8Array, Uint8Array] {
  const out = hkdf(sha256, dh(ours, theirs), rootKey, INFO_RATCHET, 64);
  return [out.slice(0, 32), out.slice(32, 64)];
}

const SEED_MESSAGE = new Uint8Array([1]);
const SEED_ADVANCE = new Uint8Array([2]);

function messageKeyOf(chainKey: Uint8Array): Uint8Array {
  return hmac(sha256, chainKey, SEED_MESSAGE);
}

function advanceChain(chainKey: Uint8Array): Uint8Array {
  return hmac(sha256, chainKey, SEED_ADVANCE);
}

function cipherKeys(messageKey: Uint8Array): { aes: Uint8Array; mac: Uint8Array; iv: Uint8Array } {
  const k = hkdf(sha256, messageKey, ZERO_SALT, INFO_KEYS, 80);
  return { aes: k.slice(0, 32), mac: k.slice(32, 64), iv: k.slice(64, 80) };
}

function encryptWithKey(
  version: number,
  messageKey: Uint8Array,
  ratchetKey: Uint8Array,
  index: number,
  plaintext: Uint8Array,
): Uint8Array {
  const keys = cipherKeys(messageKey);
  const ct = cbc(keys.aes, keys.iv).encrypt(plaintext);
  const body = encodeNormalBody(version, ratchetKey, index, ct);
  const mac = hmac(sha256, keys.mac, body);
  return concat(body, version === V1 ? mac.subarray(0, 8) : mac);
}

function decryptWithKey(messageKey: Uint8Array, msg: NormalMessage): Uint8Array {
  const keys = cipherKeys(messageKey);
  const mac = hmac(sha256, keys.mac, msg.macInput);
  const expected = msg.version === V1 ? mac.subarray(0, 8) : mac;
  if (!constantTimeEqual(expected, msg.mac)) throw new OlmError("bad message MAC");
  try {
    return cbc(keys.aes, keys.iv).decrypt(msg.ciphertext);
  } catch {
    throw new OlmError("bad padding");
  }
}

// ---------- account and bundle ----------

export interface KeyPair {
  secret: Uint8Array;
  public: Uint8Array;
}

function newKeyPair(): KeyPair {
  const secret = x25519.utils.randomSecretKey();
  return { secret, public: x25519.getPublicKey(secret) };
}

/** The browser's long-term Curve25519 identity (its public half names it to the hub). */
export class Account {
  constructor(readonly identity: KeyPair) {}

  static create(): Account {
    return new Account(newKeyPair());
  }

  get identityKeyBase64(): string {
    return b64encode(this.identity.public);
  }

  toJSON(): { identity_secret: string } {
    return { identity_secret: b64encode(this.identity.secret) };
  }

  static fromJSON(data: { identity_secret: string }): Account {
    const secret = b64decode(data.identity_secret);
    if (secret.length !== 32) throw new OlmError("stored identity key has the wrong length");
    return new Account({ secret, public: x25519.getPublicKey(secret) });
  }
}

export interface Bundle {
  identityKey: Uint8Array;
  signingKey: Uint8Array;
  oneTimeKey: Uint8Array;
  signature: Uint8Array;
  raw: Uint8Array;
}

/** Parses a v6 key bundle and verifies its Ed25519 signature; throws OlmError otherwise. */
export function parseBundle(raw: Uint8Array): Bundle {
  if (raw.length !== BUNDLE_LENGTH)
    throw new OlmError(`key bundle must be ${BUNDLE_LENGTH} bytes, got ${raw.length}`);
  if (raw[0] !== BUNDLE_VERSION)
    throw new OlmError(`key bundle version ${raw[0]} is not supported (expected ${BUNDLE_VERSION})`);
  const b: Bundle = {
    identityKey: raw.slice(1, 33),
    signingKey: raw.slice(33, 65),
    oneTimeKey: raw.slice(65, 97),
    signature: raw.slice(97, 161),
    raw: raw.slice(),
  };
  let ok = false;
  try {
    ok = ed25519.verify(b.signature, raw.subarray(0, 97), b.signingKey);
  } catch {
    ok = false;
  }
  if (!ok) throw new OlmError("key bundle signature does not verify");
  return b;
}

/** True when `bundle` carries the same hub identity and signing keys as the pinned ones. */
export function sameHubKeys(
  bundle: Bundle,
  pinned: { identityKey: Uint8Array; signingKey: Uint8Array },
): boolean {
  return bytesEqual(bundle.identityKey, pinned.identityKey) && bytesEqual(bundle.signingKey, pinned.signingKey);
}

// ---------- session ----------

interface ReceiverChain {
  ratchetKey: Uint8Array;
  chainKey: Uint8Array;
  index: number;
  skipped: { index: number; key: Uint8Array }[];
}

type Sending =
  | { kind: "active"; rootKey: Uint8Array; ratchet: KeyPair; chainKey: Uint8Array; index: number }
  | { kind: "inactive"; rootKey: Uint8Array; remoteRatchetKey: Uint8Array };

export interface Encrypted {
  /** 0 = PreKey, 1 = Normal (the Olm message types). */
  type: 0 | 1;
  body: Uint8Array;
}

/** An outbound Olm session to the hub. */
export class Session {
  private sending: Sending;
  private receivers: ReceiverChain[] = [];

  private constructor(
    readonly version: 1 | 2,
    private readonly keys: { identityKey: Uint8Array; baseKey: Uint8Array; oneTimeKey: Uint8Array },
    sending: Sending,
  ) {
    this.sending = sending;
  }

  /** Creates the outbound session from our account and the hub's identity and one-time keys. */
  static outbound(
    account: Account,
    theirIdentityKey: Uint8Array,
    theirOneTimeKey: Uint8Array,
    opts: { version?: 1 | 2 } = {},
  ): Session {
    const base = newKeyPair();
    const secret = concat(
      dh(account.identity.secret, theirOneTimeKey),
      dh(base.secret, theirIdentityKey),
      dh(base.secret, theirOneTimeKey),
    );
    const out = hkdf(sha256, secret, ZERO_SALT, INFO_ROOT, 64);
    return new Session(
      opts.version ?? 1,
      { identityKey: account.identity.public, baseKey: base.public, oneTimeKey: theirOneTimeKey.slice() },
      { kind: "active", rootKey: out.slice(0, 32), ratchet: newKeyPair(), chainKey: out.slice(32, 64), index: 0 },
    );
  }

  /** True once a message from the hub decrypted: from then on we send Normal messages. */
  get hasReceivedMessage(): boolean {
    return this.receivers.length > 0;
  }

  encrypt(plaintext: Uint8Array): Encrypted {
    if (this.sending.kind === "inactive") {
      const ratchet = newKeyPair();
      const [rootKey, chainKey] = kdfRatchet(this.sending.rootKey, ratchet.secret, this.sending.remoteRatchetKey);
      this.sending = { kind: "active", rootKey, ratchet, chainKey, index: 0 };
    }
    const s = this.sending;
    const messageKey = messageKeyOf(s.chainKey);
    const index = s.index;
    s.chainKey = advanceChain(s.chainKey);
    s.index += 1;
    const message = encryptWithKey(this.version === 1 ? V1 : V2, messageKey, s.ratchet.public, index, plaintext);
    if (this.hasReceivedMessage) return { type: 1, body: message };
    const body = concat(
      new Uint8Array([PREKEY_VERSION]),
      lenField(0x0a, this.keys.oneTimeKey),
      lenField(0x12, this.keys.baseKey),
      lenField(0x1a, this.keys.identityKey),
      lenField(0x22, message),
    );
    return { type: 0, body };
  }

  /** Decrypts a message from the hub (normally type 1). Throws OlmError; state is untouched then. */
  decrypt(type: number, body: Uint8Array): Uint8Array {
    let msg: NormalMessage;
    if (type === 0) msg = decodePreKey(body).message;
    else if (type === 1) msg = decodeNormal(body);
    else throw new OlmError(`unknown Olm message type ${type}`);
    if (msg.version !== (this.version === 1 ? V1 : V2))
      throw new OlmError(`message version ${msg.version} does not match the session (v${this.version})`);
    const chain = this.receivers.find((c) => bytesEqual(c.ratchetKey, msg.ratchetKey));
    if (chain) return this.decryptInChain(chain, msg, false);

    // A new ratchet key from the hub: advance the root, then try the new chain. vodozemac
    // activates an inactive sending ratchet first; we do the same so both sides agree.
    let sending = this.sending;
    if (sending.kind === "inactive") {
      const ratchet = newKeyPair();
      const [rk, ck] = kdfRatchet(sending.rootKey, ratchet.secret, sending.remoteRatchetKey);
      sending = { kind: "active", rootKey: rk, ratchet, chainKey: ck, index: 0 };
    }
    const [rootKey, chainKey] = kdfRatchet(sending.rootKey, sending.ratchet.secret, msg.ratchetKey);
    const fresh: ReceiverChain = { ratchetKey: msg.ratchetKey.slice(), chainKey, index: 0, skipped: [] };
    const plaintext = this.decryptInChain(fresh, msg, true);
    this.sending = { kind: "inactive", rootKey, remoteRatchetKey: msg.ratchetKey.slice() };
    this.receivers.unshift(fresh);
    if (this.receivers.length > MAX_RECEIVER_CHAINS) this.receivers.pop();
    return plaintext;
  }

  private decryptInChain(chain: ReceiverChain, msg: NormalMessage, fresh: boolean): Uint8Array {
    const idx = msg.chainIndex;
    const gap = idx - chain.index;
    if (gap > MAX_MESSAGE_GAP) throw new OlmError(`message gap too big: ${gap} > ${MAX_MESSAGE_GAP}`);
    if (idx < chain.index) {
      const k = chain.skipped.find((s) => s.index === idx);
      if (!k) throw new OlmError(`no message key for index ${idx} (already used or too old)`);
      const pt = decryptWithKey(k.key, msg);
      chain.skipped = chain.skipped.filter((s) => s !== k);
      return pt;
    }
    let ck = chain.chainKey;
    let at = chain.index;
    const skipped: { index: number; key: Uint8Array }[] = [];
    while (at < idx) {
      if (idx - at <= MAX_SKIPPED_KEYS) skipped.push({ index: at, key: messageKeyOf(ck) });
      ck = advanceChain(ck);
      at += 1;
    }
    const pt = decryptWithKey(messageKeyOf(ck), msg);
    // Commit only after the MAC verified.
    chain.chainKey = advanceChain(ck);
    chain.index = at + 1;
    chain.skipped.push(...skipped);
    if (chain.skipped.length > MAX_SKIPPED_KEYS) chain.skipped.splice(0, chain.skipped.length - MAX_SKIPPED_KEYS);
    void fresh;
    return pt;
  }
}
