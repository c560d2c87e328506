/**
 * What this browser remembers per hub, encrypted at rest in IndexedDB: its Olm account (the
 * identity the hub admitted) and the hub keys pinned at pairing. Records are AES-256-GCM
 * sealed with a WebCrypto key that is itself kept in IndexedDB as a NON-extractable CryptoKey,
 * so script can use it but never read it out. Olm sessions are never stored: they are rebuilt
 * from a fresh bundle on every connection, as on the hub.
 */
import { Account, b64decode, b64encode } from "./olm";

const DB_NAME = "botster";
const STORE = "records";
const KEY_ID = "aes-key";

export interface HubRecord {
  hubId: string;
  account: Account;
  pinned: { identityKey: Uint8Array; signingKey: Uint8Array };
  pairedAt: number;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function tx<T>(db: IDBDatabase, mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = fn(db.transaction(STORE, mode).objectStore(STORE));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function aesKey(db: IDBDatabase): Promise<CryptoKey> {
  const existing = await tx<CryptoKey | undefined>(db, "readonly", (s) => s.get(KEY_ID));
  if (existing) return existing;
  const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  await tx(db, "readwrite", (s) => s.put(key, KEY_ID));
  return key;
}

export async function saveHub(rec: HubRecord): Promise<void> {
  const db = await openDb();
  try {
    const key = await aesKey(db);
    const plain = new TextEncoder().encode(
      JSON.stringify({
        hubId: rec.hubId,
        account: rec.account.toJSON(),
        identityKey: b64encode(rec.pinned.identityKey),
        signingKey: b64encode(rec.pinned.signingKey),
        pairedAt: rec.pairedAt,
      }),
    );
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, plain));
    await tx(db, "readwrite", (s) => s.put({ iv, ct }, `hub:${rec.hubId}`));
  } finally {
    db.close();
  }
}

export async function loadHub(hubId: string): Promise<HubRecord | null> {
  const db = await openDb();
  try {
    const row = await tx<{ iv: Uint8Array; ct: Uint8Array } | undefined>(db, "readonly", (s) => s.get(`hub:${hubId}`));
    if (!row) return null;
    const key = await aesKey(db);
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: row.iv as Uint8Array<ArrayBuffer> }, key, row.ct as Uint8Array<ArrayBuffer>);
    const d = JSON.parse(new TextDecoder().decode(plain));
    return {
      hubId: d.hubId,
      account: Account.fromJSON(d.account),
      pinned: { identityKey: b64decode(d.identityKey), signingKey: b64decode(d.signingKey) },
      pairedAt: d.pairedAt,
    };
  } finally {
    db.close();
  }
}

export async function forgetHub(hubId: string): Promise<void> {
  const db = await openDb();
  try {
    await tx(db, "readwrite", (s) => s.delete(`hub:${hubId}`));
  } finally {
    db.close();
  }
}

/** The ids of every hub this browser is paired with. */
export async function listHubs(): Promise<string[]> {
  const db = await openDb();
  try {
    const keys = await tx<IDBValidKey[]>(db, "readonly", (s) => s.getAllKeys());
    return keys.map(String).filter((k) => k.startsWith("hub:")).map((k) => k.slice(4));
  } finally {
    db.close();
  }
}
