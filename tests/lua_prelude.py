"""What test plugins start with, and the helpers that write and read their Lua.

Plugins report to the test through the hub's log, ``RESULT <tag> <json>``, which
``await proc.result(tag)`` decodes (``harness/hubproc.py``). ``PRELUDE`` defines, as locals:

* ``report(tag, value)``: reports one value.
* ``report_all(tag, ...)``: reports every argument as a JSON array, nil as null, so a
  ``value, err`` return keeps both halves: ``report_all("r", fs.read(p))`` -> ``[null, "..."]``.
* ``raised(f, ...)``: the message ``f(...)`` raises, position included (``".../init.lua:7:
  fs.read: ..."``), or ``"did not raise"``.

``plugin(body, **values)`` builds a whole source: the prelude, a ``local NAME = "value"`` line
per value (``lua_str``), then `body`. ``strip_position`` checks that a raised message points
at the plugin's own line and removes that position. For a table of wrong uses, tag ->
(Lua expression, message), ``report_raised`` writes the Lua that tries each one and
``assert_raised`` checks each raised its message at the plugin's line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import HubProcess

__all__ = [
    "PRELUDE",
    "assert_raised",
    "lua_str",
    "plugin",
    "report_raised",
    "strip_position",
]

PRELUDE = r"""
local function report(tag, value) log.info("RESULT " .. tag .. " " .. json.encode(value)) end
local function report_all(tag, ...)
  local t, out = table.pack(...), {}
  for i = 1, t.n do
    if t[i] == nil then out[i] = json.null else out[i] = t[i] end
  end
  report(tag, json.array(out))
end
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "did not raise" end
  return tostring(err)
end
"""


def lua_str(text: str | bytes) -> str:
    """A Lua string literal holding exactly these bytes (UTF-8 for str), ASCII-only."""
    data = text.encode() if isinstance(text, str) else text
    out = []
    for b in data:
        c = chr(b)
        if c.isascii() and c.isprintable() and c not in '"\\':
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def plugin(body: str, **values: str | bytes) -> str:
    """A plugin source: ``PRELUDE``, ``local NAME = "value"`` for each value, then `body`."""
    consts = "".join(f"local {name} = {lua_str(value)}\n" for name, value in values.items())
    return PRELUDE + consts + body


def strip_position(message: str) -> str:
    """`.../init.lua:12: fs.read: ...` -> `fs.read: ...` (and checks the position is there)."""
    m = re.match(r"^.*/init\.lua:\d+: (.*)$", message, re.S)
    assert m, f"error does not point at the plugin's line: {message!r}"
    return m.group(1)


def report_raised(cases: dict[str, tuple[str, str]]) -> str:
    """Lua lines reporting, under each tag, what evaluating its expression raised."""
    return "".join(
        f"report({lua_str(tag)}, raised(function() local _ = {code} end))\n"
        for tag, (code, _) in cases.items()
    )


async def assert_raised(proc: HubProcess, cases: dict[str, tuple[str, str]]) -> None:
    """Each case raised at the plugin's own line, with its message (see ``report_raised``)."""
    for tag, (_, message) in cases.items():
        got = strip_position(await proc.result(tag))
        assert message in got, (tag, got)
