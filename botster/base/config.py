"""The device configuration file, ``$BOTSTER_HOME/config.json``.

Read once at start-up (the hub refuses to start on a broken file rather than overwrite it);
kept in memory; every ``config.set`` is written atomically (temp file, fsync, rename) under an
``flock`` so two hubs sharing a home never lose each other's keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from botster.base.errors import HubError

__all__ = ["Config", "HUB_SETTINGS", "valid_push_subject"]

# What push services (and py_vapid, whose rule this is a subset of) accept as VAPID `sub`: an
# address or a bare https origin, on localhost or a dotted host name.
_PUSH_SUBJECT = re.compile(
    r"(mailto:[^\s@]{1,64}@|https://)(localhost|[\w-]{1,63}(\.[\w-]{1,63}){1,8})\Z"
)


def valid_push_subject(value: Any) -> bool:
    """True if `value` is a VAPID subject push services accept (``mailto:`` or ``https://``)."""
    return isinstance(value, str) and _PUSH_SUBJECT.match(value) is not None


# Settings the hub itself reads: key -> (default, check, description).
HUB_SETTINGS: dict[str, tuple[Any, Any, str]] = {
    "lua_step_budget": (
        1.0,
        lambda v: isinstance(v, (int, float)) and v > 0,
        "CPU seconds one Lua step may use (a positive number)",
    ),
    "lua_memory_limit_mb": (
        512,
        lambda v: isinstance(v, int) and v >= 16,
        "memory cap of the Lua state in MiB (an integer >= 16)",
    ),
    "lua_slow_step_ms": (
        50,
        lambda v: isinstance(v, int) and v > 0,
        "a Lua step longer than this many ms is logged as slow (an integer > 0)",
    ),
    "reload_debounce_ms": (
        100,
        lambda v: isinstance(v, int) and 0 <= v <= 5000,
        "plugin reload debounce in ms (an integer 0..5000)",
    ),
    "debug_blocking_calls": (
        False,
        lambda v: isinstance(v, bool),
        "known blocking calls on the event loop raise with their caller (true/false)",
    ),
    # Unset: mailto: the repository's git user.email, else the relay's https origin (push.py).
    "push_subject": (
        None,
        valid_push_subject,
        "the contact push services see in VAPID's sub claim (mailto:you@host or https://host)",
    ),
    "hub_watchdog_s": (
        10,
        lambda v: isinstance(v, (int, float)) and v >= 1,
        "seconds the hub's loop may stop answering before its supervisor restarts it (>= 1)",
    ),
    # What socket clients may send and hold (docs/protocol.md, "Limits").
    "socket_max_clients": (
        256,
        lambda v: isinstance(v, int) and v >= 1,
        "connections the hub accepts at once (an integer >= 1)",
    ),
    "socket_max_message_kb": (
        4096,
        lambda v: isinstance(v, int) and 1 <= v <= 16384,
        "largest JSON message a client may send, in KiB (an integer 1..16384)",
    ),
    "socket_max_json_depth": (
        64,
        lambda v: isinstance(v, int) and 2 <= v <= 500,
        "deepest JSON nesting in a client's message (an integer 2..500)",
    ),
    "socket_pending_limit_mb": (
        64,
        lambda v: isinstance(v, int) and v >= 1,
        "MiB of unfinished frames the hub holds for all clients together (an integer >= 1)",
    ),
    "socket_frame_timeout_s": (
        30,
        lambda v: isinstance(v, (int, float)) and v > 0,
        "seconds a client may take to finish a frame it started (a positive number)",
    ),
    "socket_send_limit_mb": (
        8,
        lambda v: isinstance(v, int) and v >= 1,
        "MiB that may wait for one client that does not read before it is cut (an integer >= 1)",
    ),
    # The relay (docs/relay-client.md). BOTSTER_SERVER_URL wins over server_url; with neither,
    # the hub serves an embedded relay on 127.0.0.1 unless embedded_relay is false.
    "server_url": (
        None,
        lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
        "the relay's http:// or https:// URL (a string)",
    ),
    "embedded_relay": (
        True,
        lambda v: isinstance(v, bool),
        "whether to serve a relay in the hub when no server_url is set (a boolean)",
    ),
    "relay_port": (
        0,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535,
        "the embedded relay's port on 127.0.0.1, 0 for a free one (an integer 0..65535)",
    ),
}


class Config:
    """The in-memory view of config.json."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load_blocking(cls, path: Path) -> Config:
        """Reads and validates the file (missing = empty).

        Raises:
            HubError: the file is not a JSON object, or a hub setting has a wrong value.
        """
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(path, {})
        except OSError as e:
            raise HubError(f"cannot read {path}: {e.strerror}") from None
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as e:
            raise HubError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise HubError(f"{path} must hold a JSON object, not {type(data).__name__}")
        for key, (_, check, what) in HUB_SETTINGS.items():
            if key in data and not check(data[key]):
                raise HubError(f"{path}: {key} must be {what}, got {data[key]!r}")
        return cls(path, data)

    def setting(self, key: str) -> Any:
        """A hub setting, or its default."""
        return self.data.get(key, HUB_SETTINGS[key][0])

    def set_blocking(self, key: str, value: Any) -> dict[str, Any]:
        """Sets one top-level key (None deletes it) and persists; returns the new contents.

        Other processes' changes to other keys are kept: the file is re-read under the lock.

        Raises:
            HubError: the file on disk is not a JSON object (it is left untouched).
            OSError: the file cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = ""
            try:
                current = json.loads(text) if text.strip() else {}
            except ValueError as e:
                raise HubError(f"{self.path} is not valid JSON ({e}); not overwriting it") from None
            if not isinstance(current, dict):
                raise HubError(
                    f"{self.path} holds a JSON {type(current).__name__}, not an object; "
                    "not overwriting it"
                )
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(current, f, indent=2, sort_keys=True)
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self.data = current
        finally:
            os.close(lock)
        return current
