"""Relay settings: ``relay.json`` in the data directory, overridden by command-line flags.

    {
      "ice": {"stun": ["stun:stun.example.org:3478"],
              "turn": ["turn:turn.example.org:3478?transport=udp"],
              "turn_secret": "shared secret of coturn's use-auth-secret",
              "turn_ttl": 86400},
      "limits": {"cable_per_connection": [20, 100], ...},
      "forwarded_for": false
    }

``ice_servers(hub_id)`` turns the ICE part into the ``RTCIceServer`` list the browser and the hub
get from ``GET /hubs/<id>/webrtc``: STUN URLs as they are, TURN URLs with coturn REST-style
credentials when a secret is set (username ``<expiry unix time>:<hub id>``, password
base64(HMAC-SHA1(secret, username))), else a static ``turn_username``/``turn_credential``.
No STUN/TURN configured means an empty list: loopback and LAN need none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from botster.base.errors import BotsterError

__all__ = ["IceSettings", "Limits", "RelaySettings", "SettingsError", "load_settings"]

SETTINGS_FILE = "relay.json"


class SettingsError(BotsterError):
    """relay.json or a flag is malformed; the message says which key."""


@dataclass
class Limits:
    """Rate limits as (rate per second, burst) token buckets, and size and count caps."""

    cable_per_connection: tuple[float, float] = (20.0, 100.0)  # cable messages
    cable_per_address: tuple[float, float] = (200.0, 1000.0)
    rest_per_address: tuple[float, float] = (20.0, 100.0)  # REST requests
    connects_per_address: tuple[float, float] = (20.0, 200.0)  # new /cable sockets
    connections_per_address: int = 512  # open /cable sockets at once
    subscriptions_per_connection: int = 32
    max_frame: int = 65536  # bytes of one inbound websocket message
    max_outbound: int = 4 * 1024 * 1024  # bytes queued to one slow socket before it is cut

    @classmethod
    def from_json(cls, raw: Any) -> Limits:
        if not isinstance(raw, dict):
            raise SettingsError("limits: expected an object")
        known = {f.name: f for f in fields(cls)}
        out = cls()
        for key, value in raw.items():
            if key not in known:
                raise SettingsError(f"limits.{key}: unknown (known: {', '.join(sorted(known))})")
            default = getattr(out, key)
            if isinstance(default, tuple):
                ok = (
                    isinstance(value, list)
                    and len(value) == 2
                    and all(isinstance(v, int | float) and v > 0 for v in value)
                )
                if not ok:
                    raise SettingsError(f"limits.{key}: expected [rate, burst], got {value!r}")
                setattr(out, key, (float(value[0]), float(value[1])))
            else:
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise SettingsError(f"limits.{key}: expected a positive integer")
                setattr(out, key, value)
        return out


@dataclass
class IceSettings:
    stun: list[str] = field(default_factory=list)
    turn: list[str] = field(default_factory=list)
    turn_secret: str | None = None
    turn_ttl: int = 86400
    turn_username: str | None = None
    turn_credential: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> IceSettings:
        if not isinstance(raw, dict):
            raise SettingsError("ice: expected an object")
        out = cls()
        for key, value in raw.items():
            if key in ("stun", "turn"):
                if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                    raise SettingsError(f"ice.{key}: expected a list of URL strings")
                setattr(out, key, list(value))
                out.check_urls()
            elif key in ("turn_secret", "turn_username", "turn_credential"):
                if not isinstance(value, str):
                    raise SettingsError(f"ice.{key}: expected a string")
                setattr(out, key, value)
            elif key == "turn_ttl":
                if not isinstance(value, int) or value <= 0:
                    raise SettingsError("ice.turn_ttl: expected a positive integer (seconds)")
                out.turn_ttl = value
            else:
                raise SettingsError(f"ice.{key}: unknown")
        return out

    def check_urls(self) -> None:
        """Refuses a STUN URL that is not ``stun:...`` and a TURN URL that is not
        ``turn:...``/``turns:...`` (hubs and browsers would drop the whole answer).

        Raises:
            SettingsError: naming the URL.
        """
        for key, schemes in (("stun", ("stun:",)), ("turn", ("turn:", "turns:"))):
            for url in getattr(self, key):
                if not url.startswith(schemes) or len(url) > 512 or not url.isprintable():
                    want = " or ".join(f"{s}..." for s in schemes)
                    raise SettingsError(f"ice.{key}: expected {want}, got {url[:80]!r}")

    def ice_servers(self, hub_id: str, now: float | None = None) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = []
        if self.stun:
            servers.append({"urls": list(self.stun)})
        if self.turn:
            entry: dict[str, Any] = {"urls": list(self.turn)}
            if self.turn_secret:
                expiry = int((now if now is not None else time.time()) + self.turn_ttl)
                username = f"{expiry}:{hub_id}"
                mac = hmac.new(self.turn_secret.encode(), username.encode(), hashlib.sha1)
                entry["username"] = username
                entry["credential"] = base64.b64encode(mac.digest()).decode()
            elif self.turn_username and self.turn_credential:
                entry["username"] = self.turn_username
                entry["credential"] = self.turn_credential
            servers.append(entry)
        return servers


@dataclass
class RelaySettings:
    ice: IceSettings = field(default_factory=IceSettings)
    limits: Limits = field(default_factory=Limits)
    # Behind a reverse proxy every socket comes from the proxy's address; with this on, the
    # last X-Forwarded-For entry (the one the proxy added) is the address limits count.
    forwarded_for: bool = False


def load_settings(data_dir: Path | None) -> RelaySettings:
    """``<data_dir>/relay.json`` if it exists, else the defaults.

    Raises:
        SettingsError: the file is not valid JSON or has an unknown or malformed key.
    """
    settings = RelaySettings()
    if data_dir is None:
        return settings
    path = Path(data_dir) / SETTINGS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return settings
    except (OSError, ValueError) as e:
        raise SettingsError(f"{path}: {e}") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    for key, value in raw.items():
        if key == "ice":
            settings.ice = IceSettings.from_json(value)
        elif key == "limits":
            settings.limits = Limits.from_json(value)
        elif key == "forwarded_for":
            if not isinstance(value, bool):
                raise SettingsError("forwarded_for: expected true or false")
            settings.forwarded_for = value
        else:
            raise SettingsError(f"{path}: {key}: unknown (known: forwarded_for, ice, limits)")
    return settings
