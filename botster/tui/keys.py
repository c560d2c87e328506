"""What a terminal sends for a key press or a paste: Textual key names to xterm byte sequences.

Owns the translation only (pure functions, no Textual import), so it is testable on its own
and the widget stays small. The conventions are xterm's, which every program in a PTY
understands: ``CSI A`` arrows (``SS3 A`` in application cursor mode), ``CSI 1;m A`` with a
modifier, ``SS3 P``-``S`` for F1-F4 and ``CSI n ~`` for the rest, ``ESC`` before a key for
alt, control letters as C0 bytes, bracketed paste when the program asked for it, and mouse
reports in the encoding the program chose (SGR 1006, urxvt 1015, UTF-8 1005 or X10).

Not here: which keys belong to the UI rather than the program (``keymap.py``), and sending.
"""

from __future__ import annotations

__all__ = ["key_bytes", "mouse_bytes", "paste_bytes"]

# xterm's modifier parameter: 1 + shift(1) + alt(2) + ctrl(4).
_MODIFIER_BITS = {"shift": 1, "alt": 2, "meta": 2, "ctrl": 4}

# Keys with a final letter: CSI <letter>, or CSI 1;<mod> <letter> with modifiers.
_LETTER_KEYS = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
# Keys written CSI <n> ~ (or CSI <n>;<mod> ~).
_TILDE_KEYS = {
    "insert": 2,
    "delete": 3,
    "pageup": 5,
    "pagedown": 6,
    "f5": 15,
    "f6": 17,
    "f7": 18,
    "f8": 19,
    "f9": 20,
    "f10": 21,
    "f11": 23,
    "f12": 24,
    "f13": 25,
    "f14": 26,
    "f15": 28,
    "f16": 29,
    "f17": 31,
    "f18": 32,
    "f19": 33,
    "f20": 34,
}
_SS3_KEYS = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
_SIMPLE = {
    "enter": b"\r",
    "tab": b"\t",
    "escape": b"\x1b",
    "backspace": b"\x7f",
    "space": b" ",
    "shift+tab": b"\x1b[Z",
    "ctrl+space": b"\x00",
    "ctrl+at": b"\x00",
    "ctrl+backslash": b"\x1c",
    "ctrl+right_square_bracket": b"\x1d",
    "ctrl+circumflex_accent": b"\x1e",
    "ctrl+underscore": b"\x1f",
    "ctrl+h": b"\x08",
    "ctrl+i": b"\t",
    "ctrl+m": b"\r",
    "ctrl+j": b"\n",
}


def _split(key: str) -> tuple[set[str], str]:
    parts = key.split("+")
    # "ctrl+plus" style names never contain a bare "+", so the last part is the key.
    return set(parts[:-1]), parts[-1]


def key_bytes(key: str, character: str | None, *, app_cursor: bool = False) -> bytes | None:
    """The bytes a terminal sends for one key press.

    Args:
        key: Textual's key name (``"ctrl+a"``, ``"up"``, ``"f5"``, ``"alt+x"``, ``"a"``).
        character: the printable character Textual reports, if any.
        app_cursor: the program switched on application cursor keys (DECCKM).

    Returns:
        The bytes, or None for a key a terminal cannot express (it is then not sent).
    """
    if key in _SIMPLE:
        return _SIMPLE[key]
    mods, base = _split(key)
    mod = 1 + sum(_MODIFIER_BITS.get(m, 0) for m in mods)
    if base in _LETTER_KEYS:
        letter = _LETTER_KEYS[base]
        if mod > 1:
            return f"\x1b[1;{mod}{letter}".encode()
        return f"\x1bO{letter}".encode() if app_cursor else f"\x1b[{letter}".encode()
    if base in _TILDE_KEYS:
        n = _TILDE_KEYS[base]
        return f"\x1b[{n};{mod}~".encode() if mod > 1 else f"\x1b[{n}~".encode()
    if base in _SS3_KEYS:
        letter = _SS3_KEYS[base]
        return f"\x1b[1;{mod}{letter}".encode() if mod > 1 else f"\x1bO{letter}".encode()
    alt = "alt" in mods or "meta" in mods
    prefix = b"\x1b" if alt else b""
    if "ctrl" in mods:
        if len(base) == 1 and base.isalpha():
            return prefix + bytes([ord(base.lower()) & 0x1F])
        inner = _SIMPLE.get(f"ctrl+{base}")
        if inner is not None:
            return prefix + inner
        if base in ("enter", "tab", "escape", "backspace", "space"):
            return prefix + _SIMPLE[base]
        return None
    if alt:
        if base in _SIMPLE:
            return prefix + _SIMPLE[base]
        if character and len(character) == 1 and character != "\x1b":
            return prefix + character.encode()
        return prefix + base.encode() if len(base) == 1 else None
    if character:
        return character.encode("utf-8", "surrogateescape")
    return None


def paste_bytes(text: str, *, bracketed: bool) -> bytes:
    """What a terminal sends for pasted text.

    Line ends become CR, as a terminal types them; with bracketed paste (mode 2004 on) the
    text is wrapped in ``CSI 200~`` / ``CSI 201~`` and any such marker inside it removed, so
    pasted text can never end the paste early.
    """
    body = text.replace("\r\n", "\r").replace("\n", "\r")
    if not bracketed:
        return body.encode()
    body = body.replace("\x1b[200~", "").replace("\x1b[201~", "")
    return b"\x1b[200~" + body.encode() + b"\x1b[201~"


def mouse_bytes(
    code: int, col: int, row: int, *, release: bool = False, encoding: int = 0
) -> bytes:
    """One xterm mouse report, for a program that turned mouse reporting on.

    Args:
        code: xterm's button code: 0/1/2 left/middle/right, 3 no button (motion), 64/65
            wheel up/down; plus 4 shift, 8 alt, 16 ctrl, 32 motion.
        col: 0-based column.
        row: 0-based row.
        release: a button let go (``m`` in SGR; button code 3 in the older encodings).
        encoding: the mode the program chose: 1006 (SGR), 1015 (urxvt), 1005 (UTF-8) or 0
            (X10 bytes, which cannot say a cell past 223; those are clipped).
    """
    x, y = col + 1, row + 1
    if encoding == 1006:
        return f"\x1b[<{code};{x};{y}{'m' if release else 'M'}".encode()
    if release:
        code |= 3
    if encoding == 1015:
        return f"\x1b[{32 + code};{x};{y}M".encode()
    if encoding == 1005:
        return (
            "\x1b[M" + "".join(chr(32 + n) for n in (code, min(x, 2015), min(y, 2015)))
        ).encode()
    return bytes([0x1B, 0x5B, 0x4D, 32 + code, 32 + min(x, 223), 32 + min(y, 223)])
