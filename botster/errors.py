"""The error tree. Every error the hub raises on purpose is one of these.

    BotsterError
    ├── ArgumentError      a Lua caller passed a wrong type or shape (becomes a Lua error)
    ├── PluginError        a plugin failed to load, run or reload
    ├── HubError           the hub cannot start or run (lock held, no repo, bad config)
    ├── ProtocolError      a client sent a malformed frame
    ├── SessionError       a PTY session failed
    ├── LimitError         a bound was hit (CPU budget, memory cap, queue size)
    └── BlockingCallError  a blocking call on the loop thread (debug runs; hub/blocking.py)

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
