"""The ``json`` primitive: ``json.decode`` here, ``json.encode`` in ``json.lua`` beside it.

Encoding runs in Lua because a Lua walk of a small table is several times cheaper than
crossing into Python for every key. Decoding uses Python's C parser.

Null and empty tables (the rules live in ``botster.lua.convert``):
* ``null`` in an object drops the key; in an array it becomes ``json.null`` (positions kept);
  a document that is just ``null`` decodes to ``json.null``.
* an empty table encodes as ``{}``; ``json.array(t)`` marks a table as an array, so
  ``json.array({})`` encodes as ``[]``; a decoded ``[]`` keeps that mark and round-trips.
* integers stay integers (64-bit); numbers with a fraction or exponent are floats.
"""

from __future__ import annotations

import json as _json
from typing import Any

from botster.hub.context import current_hub
from botster.lua.api import lua_api

__all__ = ["LUA"]

_INT64 = (-(2**63), 2**63 - 1)


def _int(text: str) -> int | float:
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@lua_api
def decode(text: bytes) -> Any:
    """json.decode(str) -> value | nil, err

    Parses a JSON document. Returns the value, or nil and a message naming line and column.
    Example: ``local t, err = json.decode('{"a": [1, 2]}')`` -> t.a[2] == 2
    """
    try:
        value = _json.loads(text, parse_int=_int, parse_constant=_reject_constant)
    except _json.JSONDecodeError as e:
        return None, f"json.decode: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"json.decode: invalid JSON: {e}"
    except RecursionError:
        return None, "json.decode: document is nested too deeply"
    if value is None:
        return current_hub().host.null
    return value


LUA = {"decode": decode}
WRONG_DOOR = {
    "parse": "use json.decode(str)",
    "stringify": "use json.encode(value)",
    "encode_pretty": "use json.encode(value)",
}


def lua_extras(host: Any) -> dict[str, Any]:
    """Values json.lua needs: the null sentinel and the array mark."""
    return {"null": host.null, "_array_mark": host.array_mark}
