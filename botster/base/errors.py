"""The error tree. Every error Botster raises on purpose for its callers is one of these;
exceptions that never leave their module (names starting with ``_``) are control flow.

    BotsterError
    ├── ArgumentError      a Lua caller passed a wrong type or shape (becomes a Lua error)
    ├── PluginError        a plugin failed to load, run or reload
    ├── HubError           the hub cannot start or run (lock held, no repo, bad config)
    ├── ProtocolError      a client sent a malformed frame
    │   └── BadMessage     a JSON message over the limits (base/framing.py)
    ├── SessionError       a PTY session failed
    ├── LimitError         a bound was hit (CPU budget, memory cap, queue size)
    │   └── ConversionError  a value that does not fit into Lua (lua/convert.py)
    ├── BlockingCallError  a blocking call on the loop thread (debug runs; base/blocking.py)
    ├── VaultError         a sealed file cannot be read or written (base/vault.py)
    ├── OlmError, BundleError   end-to-end crypto refused a message or key bundle (remote/)
    ├── RequestFailed      the hub answered a client's request with ok=false (transports/client.py)
    ├── KeymapError        the terminal UI's key configuration is wrong (tui/keymap.py)
    └── SettingsError, StoreError   the relay's settings or store (relay/)

Errors that reach a plugin are turned into Lua messages at the `botster.lua` seam, never in a
primitive.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "BlockingCallError",
    "BotsterError",
    "HubError",
    "LimitError",
    "PluginError",
    "ProtocolError",
    "SessionError",
]


class BotsterError(Exception):
    """Base of every error Botster raises on purpose."""


class ArgumentError(BotsterError):
    """A Lua caller used a function wrongly; the message names function, argument and types."""


class PluginError(BotsterError):
    """A plugin failed to load, run or reload."""


class HubError(BotsterError):
    """The hub cannot start or keep running."""


class ProtocolError(BotsterError):
    """A client sent something the protocol does not allow."""


class SessionError(BotsterError):
    """A PTY session failed."""


class LimitError(BotsterError):
    """A configured bound was hit."""


class BlockingCallError(BotsterError):
    """A known blocking call was made on the hub's event loop thread (debug runs)."""
