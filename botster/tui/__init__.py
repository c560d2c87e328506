"""The terminal UI: ``botster start`` and ``botster attach`` (a Textual app).

The UI is a client of the hub's socket protocol like any other (``docs/protocol.md``);
leaving it never stops the hub or its agents. Modules:

* ``app.py``: the Textual app, its screens and dialogs;
* ``terminal.py``: the terminal pane widget (rendering, keyboard and mouse passthrough,
  scrollback);
* ``hub_link.py``: the reconnecting connection, agent list, terminal attach, attention;
* ``rawinput.py``: the driver that hands the terminal pane the keys' raw bytes (Textual's
  key decoding loses Esc followed quickly by a key, alt+letters and more);
* ``colors.py``: how many colours to write (24-bit where the terminal shows them);
* ``keys.py``: key presses, pastes and mouse reports as the bytes a terminal sends;
* ``keymap.py``: the UI's own keys and their overrides from ``config.json``;
* ``notify.py``: the desktop notification asked of the user's terminal.

Importing this package does not import Textual: ``run`` loads it when called, so
``botster --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botster.tui.keymap import Keymap

__all__ = ["run"]


def run(socket_path: Path | str, keymap: Keymap | None = None) -> tuple[int, bool, bool]:
    """Runs the UI on a hub's socket until the user leaves.

    Args:
        socket_path: the hub's socket.
        keymap: the UI's keys (default: ``keymap.load_keymap()``).

    Returns:
        (exit code, whether the user stopped the hub, whether the hub was gone at the end).

    Raises:
        KeymapError: no keymap was given and ``tui_keys`` in config.json is invalid.
    """
    import os

    from textual import constants

    from botster.tui.colors import ColorsError, color_system, load_colors_setting

    try:
        setting = load_colors_setting()
    except ColorsError as e:
        raise SystemExit(f"botster: {e}") from None
    # Read by the app's console when it is made: set before.
    constants.COLOR_SYSTEM = color_system(os.environ, setting)  # type: ignore[misc]

    from botster.tui.app import BotsterApp
    from botster.tui.keymap import load_keymap

    app = BotsterApp(socket_path, keymap or load_keymap())
    app.run()
    return app.return_code or 0, app.hub_stopped, app.hub_gone
