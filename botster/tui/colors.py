"""How many colours the UI writes: 24-bit wherever the user's terminal can show them.

Textual (through Rich) trusts ``COLORTERM`` alone, so a terminal that does not set it gets
every 24-bit colour of an agent rounded to the 256-colour palette, where tmux would pass it
through. ``color_system`` also recognises the terminals known to draw 24-bit colour (by
``TERM``, ``TERM_PROGRAM`` and their own variables), and inside tmux asks tmux whether its
client terminal has the ``RGB`` feature. ``tui_colors`` in config.json forces a choice:
``"auto"`` (the default), ``"truecolor"``, ``"256"`` or ``"16"``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CHOICES", "ColorsError", "color_system", "load_colors_setting"]

CHOICES = {"auto": "auto", "truecolor": "truecolor", "256": "256", "16": "standard"}
_TRUECOLOR_TERMS = ("direct", "truecolor", "kitty", "alacritty", "foot", "wezterm", "ghostty")
_TRUECOLOR_PROGRAMS = {"iTerm.app", "WezTerm", "vscode", "ghostty", "Hyper", "Tabby", "rio"}


class ColorsError(ValueError):
    """``tui_colors`` in config.json is not one of the choices."""


def color_system(env: Mapping[str, str], setting: str = "auto") -> str:
    """Rich's colour system for the UI: ``"truecolor"``, ``"256"`` or ``"standard"``."""
    if setting != "auto":
        return CHOICES[setting]
    if env.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    term = env.get("TERM", "").lower()
    if any(t in term for t in _TRUECOLOR_TERMS) or env.get("TERM_PROGRAM") in _TRUECOLOR_PROGRAMS:
        return "truecolor"
    if "KONSOLE_VERSION" in env or "WT_SESSION" in env:
        return "truecolor"
    vte = env.get("VTE_VERSION", "")
    if vte.isdigit() and int(vte) >= 3600:
        return "truecolor"
    if env.get("TMUX") and _tmux_client_has_rgb():
        return "truecolor"
    return "256" if "256" in term or not term else "standard"


def _tmux_client_has_rgb() -> bool:
    try:
        out = subprocess.run(
            ["tmux", "display-message", "-p", "#{client_termfeatures}"],
            capture_output=True,
            text=True,
            timeout=2,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "RGB" in out.stdout.split(",")


def load_colors_setting(home: Path | None = None) -> str:
    """``tui_colors`` from ``<home>/config.json`` (default ``$BOTSTER_HOME``), else "auto".

    Raises:
        ColorsError: the value is not one of ``CHOICES``.
    """
    if home is None:
        home = Path(os.environ.get("BOTSTER_HOME") or Path.home() / ".botster")
    path = home / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return "auto"  # a missing file; an unreadable one is the keymap loader's to report
    value = data.get("tui_colors", "auto") if isinstance(data, dict) else "auto"
    if value not in CHOICES:
        choices = ", ".join(f'"{c}"' for c in CHOICES)
        raise ColorsError(f"{path}: tui_colors must be one of {choices}, got {value!r}")
    return value
