/**
 * The key bar's sticky modifiers (phones have no Ctrl or Alt): applied to the next key typed.
 * Ctrl maps a letter to its control code (Ctrl-C → 0x03); Alt prefixes ESC, as xterm does.
 */
export interface Modifiers {
  ctrl: boolean;
  alt: boolean;
}

export function ctrlOf(ch: string): string {
  if (ch.length !== 1) return ch;
  const c = ch.toUpperCase().charCodeAt(0);
  if (c >= 0x40 && c <= 0x5f) return String.fromCharCode(c - 0x40); // @ A-Z [ \ ] ^ _
  if (ch === " " || ch === "2") return "\x00";
  if (ch === "?") return "\x7f";
  return ch;
}

export function applyModifiers(data: string, mods: Modifiers): string {
  let out = data;
  if (mods.ctrl) out = ctrlOf(out);
  if (mods.alt) out = "\x1b" + out;
  return out;
}
