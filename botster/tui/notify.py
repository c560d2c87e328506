"""Asking the user's own terminal for a desktop notification when an agent needs them.

Terminals turn an OSC 9 (iTerm2, kitty, WezTerm, Ghostty, Windows Terminal…) or OSC 777
``notify`` (foot, urxvt, Ghostty, WezTerm) sequence into a desktop notification, usually only
when their window is not focused — which is exactly when the user is elsewhere. Inside tmux
the sequence is wrapped in tmux's passthrough (honoured when ``allow-passthrough`` is on),
so it reaches the terminal tmux runs in.

The text comes from an agent's output (its OSC 9/777 body), so every control character is
removed: an agent must not be able to write escape sequences to the user's terminal.

Pure functions; the app writes the result with the bell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["desktop_notification"]

MAX_TEXT = 200
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _clean(text: str, limit: int) -> str:
    text = _CONTROLS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def desktop_notification(title: str, body: str, env: Mapping[str, str]) -> str:
    """The escape sequence that asks the terminal described by `env` for a notification.

    Args:
        title: a short heading (OSC 777 shows it apart; OSC 9 prefixes it).
        body: the message.
        env: the UI's environment: ``TERM`` picks OSC 777 for foot and urxvt, ``TMUX`` wraps
            the sequence for tmux.
    """
    title = _clean(title, 60).replace(";", ",")  # OSC 777 separates fields with ";"
    body = _clean(body, MAX_TEXT)
    term = env.get("TERM", "")
    if term.startswith(("foot", "rxvt")):
        seq = f"\x1b]777;notify;{title};{body}\x1b\\"
    else:
        seq = f"\x1b]9;{title}: {body}\x1b\\"
    if env.get("TMUX"):
        seq = "\x1bPtmux;" + seq.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return seq
