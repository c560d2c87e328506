"""The UI's own keys: every action, its default key, and overrides from ``config.json``.

The terminal pane passes every key to the agent's program, except the **prefix** (default
``ctrl+b``, as in tmux): the key after the prefix runs a UI action instead. Outside the
terminal pane (the agent list, screens, dialogs) the action keys work directly.

Overrides live in ``$BOTSTER_HOME/config.json`` under ``tui_keys``, ``{action: key}``, keys
in Textual's names (``"ctrl+b"``, ``"n"``, ``"f2"``, ``"question_mark"``); several keys for
one action are comma-separated. Unknown actions and non-string keys are refused with a
message that lists the known actions. Pure data and validation: no Textual import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botster.base.errors import BotsterError

__all__ = ["ACTIONS", "Action", "KeymapError", "Keymap", "load_keymap"]


class KeymapError(BotsterError, ValueError):
    """``tui_keys`` in config.json is malformed; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Action:
    """One UI action: its name (as in ``tui_keys``), default key(s) and help text."""

    name: str
    default: str
    description: str
    short: str = ""  # its word in the footer; none: not in the footer


ACTIONS: tuple[Action, ...] = (
    Action("prefix", "ctrl+b", "Prefix: the next key is a UI key, not the agent's", "then"),
    Action("new_agent", "n", "Create an agent", "new"),
    Action("close_agent", "x", "Close the selected agent", "close"),
    Action("zoom", "z", "Zoom: the terminal takes the whole window, or gives it back", "zoom"),
    Action("next_agent", "j", "Select the next agent"),
    Action("prev_agent", "k", "Select the previous agent"),
    Action("focus_list", "l", "Focus the agent list"),
    Action("focus_terminal", "t", "Focus the terminal (keys go to the agent)"),
    Action("scroll_up", "pageup", "Scroll the terminal back"),
    Action("scroll_down", "pagedown", "Scroll the terminal forward"),
    Action("hub_panel", "h", "Hub panel: plugins, MCP tools, plugin log", "hub"),
    Action("pairing", "p", "Pairing: the URL and QR code for a browser, paired browsers"),
    Action("help", "question_mark", "Help: every key", "help"),
    Action("detach", "d", "Detach: leave the UI, agents keep running", "detach"),
    Action("stop_hub", "S", "Stop the hub (asks first; agents' sessions keep running)"),
)
_BY_NAME = {a.name: a for a in ACTIONS}


class Keymap:
    """Action -> keys, after overrides.

    Args:
        overrides: ``{action: "key[,key...]"}``.

    Raises:
        KeymapError: an unknown action, a key that is not a non-empty string, or one key
            given to two actions.
    """

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        keys = {a.name: a.default for a in ACTIONS}
        for action, key in (overrides or {}).items():
            if action not in _BY_NAME:
                known = ", ".join(sorted(_BY_NAME))
                raise KeymapError(f"tui_keys: unknown action {action!r} (known: {known})")
            if not isinstance(key, str) or not key.strip():
                raise KeymapError(
                    f'tui_keys.{action}: expected a key name such as "ctrl+b", got {key!r}'
                )
            keys[action] = ",".join(k.strip() for k in key.split(",") if k.strip())
        seen: dict[str, str] = {}
        for action, key in keys.items():
            for k in key.split(","):
                if k in seen:
                    raise KeymapError(
                        f"tui_keys: {k!r} is bound to both {seen[k]!r} and {action!r}"
                    )
                seen[k] = action
        self._keys = keys
        self._actions = seen

    def keys(self, action: str) -> list[str]:
        """The keys of one action."""
        return self._keys[action].split(",")

    def key(self, action: str) -> str:
        """The keys of one action as Textual writes them in a binding (comma-separated)."""
        return self._keys[action]

    def action_for(self, key: str) -> str | None:
        """The action a key runs, or None."""
        return self._actions.get(key)

    @property
    def prefix(self) -> list[str]:
        """The prefix key(s)."""
        return self.keys("prefix")


def load_keymap(home: Path | None = None) -> Keymap:
    """The keymap from ``<home>/config.json`` (default ``$BOTSTER_HOME``, else ~/.botster).

    A missing file or a file without ``tui_keys`` gives the defaults.

    Raises:
        KeymapError: config.json is not JSON, or ``tui_keys`` is invalid.
    """
    if home is None:
        home = Path(os.environ.get("BOTSTER_HOME") or Path.home() / ".botster")
    path = home / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Keymap()
    except (OSError, ValueError) as e:
        raise KeymapError(f"{path}: {e}") from None
    overrides = data.get("tui_keys") if isinstance(data, dict) else None
    if overrides is None:
        return Keymap()
    if not isinstance(overrides, dict):
        raise KeymapError(f"{path}: tui_keys: expected an object {{action: key}}")
    try:
        return Keymap(overrides)
    except KeymapError as e:
        raise KeymapError(f"{path}: {e}") from None
