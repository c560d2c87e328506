/**
 * Pairing: the key bundle arrives in the URL fragment (`/hubs/<id>/pairing#<BASE32 bundle>`),
 * which never reaches the relay. It is read once, removed from history, verified, and the hub's
 * keys are pinned; a later bundle with other keys is refused as a possible interception.
 */
import { Account, b32decode, type Bundle, OlmError, parseBundle, sameHubKeys } from "./olm";
import { type HubRecord, loadHub, saveHub } from "./store";
import { INTERCEPTION_MESSAGE } from "./carrier";

/** The hub's server id from a path like `/hubs/<id>/pairing` or `/hubs/<id>`. */
export function hubIdFromPath(path: string): string | null {
  const m = /^\/hubs\/([^/]+)(?:\/|$)/.exec(path);
  return m ? decodeURIComponent(m[1]) : null;
}

/** Decodes and verifies the fragment's bundle; throws OlmError with a readable message. */
export function bundleFromFragment(fragment: string): Bundle {
  const text = fragment.replace(/^#/, "").trim();
  if (!text) throw new OlmError("the link has no key bundle");
  let raw: Uint8Array;
  try {
    raw = b32decode(text);
  } catch {
    throw new OlmError("the link's key bundle is not valid base32 (was it cut short?)");
  }
  return parseBundle(raw);
}

export type PairResult =
  | { ok: true; record: HubRecord; bundle: Bundle | null }
  | { ok: false; reason: "interception" | "invalid" | "unpaired"; message: string };

/**
 * Reads the page's fragment (if any), strips it from history, and returns the hub record to use:
 * a new pairing, a re-pairing with the same hub keys, or the stored one.
 */
export async function pairFromLocation(loc: Location, hist: History): Promise<PairResult> {
  const hubId = hubIdFromPath(loc.pathname);
  if (!hubId) return { ok: false, reason: "invalid", message: "This page is not a hub's address (/hubs/<id>/…)." };
  const fragment = loc.hash;
  if (fragment) hist.replaceState(hist.state, "", loc.pathname + loc.search);
  const stored = await loadHub(hubId);
  if (!fragment) {
    if (stored) return { ok: true, record: stored, bundle: null };
    return {
      ok: false,
      reason: "unpaired",
      message: "This browser is not paired with this hub. Open the pairing link or scan the QR code that `botster pair` shows.",
    };
  }
  let bundle: Bundle;
  try {
    bundle = bundleFromFragment(fragment);
  } catch (e) {
    return { ok: false, reason: "invalid", message: `Cannot pair: ${(e as Error).message}.` };
  }
  if (stored && !sameHubKeys(bundle, stored.pinned))
    return { ok: false, reason: "interception", message: INTERCEPTION_MESSAGE };
  const record: HubRecord = stored ?? {
    hubId,
    account: Account.create(),
    pinned: { identityKey: bundle.identityKey, signingKey: bundle.signingKey },
    pairedAt: Date.now(),
  };
  if (!stored) await saveHub(record);
  return { ok: true, record, bundle };
}
