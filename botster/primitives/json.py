"""The ``json`` primitive: ``json.decode`` here, ``json.encode`` in ``json.lua`` beside it.

Encoding runs in Lua because a Lua walk of a small table is several times cheaper than
crossing into Python for every key. Decoding uses Python's C parser.

Null and empty tables (the rules live in ``botster.lua.convert``):
* ``null`` in an object drops the key; in an array it becomes ``json.null`` (positions kept);
  a document that is just ``null`` decodes to ``json.null``.
* an empty table encodes as ``{}``; ``json.array(t)`` marks a table as an array, so
  ``json.array({})`` encodes as ``[]``; every decoded array carries that mark, so ``[]``
  round-trips and an array the plugin empties still encodes as ``[]``.
* integers stay integers (64-bit); numbers with a fraction or exponent are floats; an integer
  beyond 64 bits becomes the nearest float; a number beyond the float range is refused.
* decode returns ``nil, err`` for anything that cannot become a Lua value: invalid JSON or
  UTF-8, a lone surrogate (``"\\ud800"``), nesting deeper than ``convert.MAX_DEPTH``.
"""

from __future__ import annotations

import json as _json
import math
import re
from typing import Any

from botster.hub.context import HubContext
from botster.lua.api import lua_api
from botster.lua.convert import ConversionError

__all__ = ["LUA"]

_INT64 = (-(2**63), 2**63 - 1)
# A \uD800-\uDFFF escape: only these can leave a lone surrogate in a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Invalid(ValueError):
    """A document that parses but cannot become a Lua value (the message says why)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise _Invalid(f"number {shown} is out of range")
    return value


def _int(text: str) -> int | float:
    # Longer than "-9223372036854775808" can't be an int64 (JSON has no leading zeros); such
    # text never reaches int(), whose digit limit would speak of Python, not JSON.
    if len(text) <= 20:
        value = int(text)
        if _INT64[0] <= value <= _INT64[1]:
            return value
    return _finite(text)  # beyond 64 bits: the nearest float, as other JSON parsers do


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not valid JSON")


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a lone UTF-16 surrogate, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, list):
        for i, item in enumerate(value, 1):
            found = _lone_surrogate(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if _lone_surrogate(key, path):
                return f"{path} (a key)"  # the key itself can't be shown: it isn't UTF-8
            found = _lone_surrogate(item, f"{path}.{key}")
            if found:
                return found
    return None


@lua_api
def decode(hub: HubContext, text: bytes) -> Any:
    """json.decode(str) -> value | nil, err

    Parses a JSON document. Returns the value, or nil and a message naming line and column.
    Example: ``local t, err = json.decode('{"a": [1, 2]}')`` -> t.a[2] == 2
    """
    try:
        # Strict UTF-8 first: Python's own bytes detection would accept UTF-16 and encoded
        # surrogates, which no Lua string can carry as text.
        doc = text.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"json.decode: invalid UTF-8 at byte {e.start + 1}: {e.reason}"
    try:
        value = _json.loads(
            doc, parse_int=_int, parse_float=_finite, parse_constant=_reject_constant
        )
    except _json.JSONDecodeError as e:
        return None, f"json.decode: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    except ValueError as e:  # _Invalid
        return None, f"json.decode: invalid JSON: {e}"
    except RecursionError:
        return None, "json.decode: document is nested too deeply"
    if _SURROGATE_ESCAPE.search(doc):
        where = _lone_surrogate(value, "$")
        if where:
            return None, f"json.decode: {where}: lone UTF-16 surrogate in a string"
    host = hub.host
    if value is None:
        return host.null
    try:
        return host.convert.to_lua(value)
    except ConversionError:
        return None, "json.decode: document is nested too deeply"


LUA = {"decode": decode}
WRONG_DOOR = {
    "parse": "use json.decode(str)",
    "stringify": "use json.encode(value)",
    "encode_pretty": "use json.encode(value)",
}


def lua_extras(hub: HubContext) -> dict[str, Any]:
    """Values json.lua needs: the null sentinel and the array mark."""
    return {"null": hub.host.null, "_array_mark": hub.host.array_mark}
