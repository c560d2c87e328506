"""Conversion between Lua values and Python values, in one place.

Lua strings are byte strings; the runtime runs with ``encoding=None`` so nothing is decoded
behind our back. Text crosses as UTF-8 (undecodable bytes survive as surrogate escapes).

Tables become ``list`` when their keys are exactly 1..n, otherwise ``dict``. An empty table is
a ``dict`` unless it carries the array mark: ``json.array(t)`` sets it, and every ``list`` that
crosses from Python (a decoded JSON array included) carries it, so a decoded array the plugin
empties still encodes as ``[]``. ``None`` inside a list crosses as ``json.null``; ``None``
values in a dict are dropped, because Lua cannot store nil in a table. This module owns these
rules; ``docs/primitives.md`` states them for plugin authors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, TypeVar

from lupa import lua54

from botster.base.errors import LimitError

__all__ = [
    "JSON_NULL",
    "ConversionError",
    "Converter",
    "check_data",
    "check_data_steps",
    "data_size",
    "run_sliced",
    "run_steps",
    "lua_type_name",
]

MAX_DEPTH = 200
T = TypeVar("T")
# Rough bytes one Lua table slot and one string header take; only used to refuse early.
_SLOT = 40


class _JsonNull:
    """The value of ``json.null``: JSON null where Lua's nil cannot stand (array items)."""

    _instance: _JsonNull | None = None

    def __new__(cls) -> _JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "json.null"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False


JSON_NULL = _JsonNull()


class ConversionError(LimitError, ValueError):
    """A value cannot cross between Lua and Python (a function where data was expected...)."""


def lua_type_name(value: Any) -> str:
    """The Lua type name of a value as Lua code would see it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (bytes, str)):
        return "string"
    t = lua54.lua_type(value)
    return t if t is not None else "userdata"


def data_size(value: Any, stop: int) -> int:
    """About how many bytes of Lua memory `value` takes once converted (JSON-like data).

    The walk gives up as soon as the total passes `stop` (and returns a number above it), so
    a huge value costs no more to measure than a value of `stop` bytes.
    """
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (bytes, str)):
            total += len(v) + _SLOT
        elif isinstance(v, dict):
            total += _SLOT * (len(v) + 1)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            total += _SLOT * (len(v) + 1)
            stack.extend(v)
        else:
            total += _SLOT
        if total > stop:
            return total
    return total


# Elements handled between two yields of the sliced walks (well under a millisecond).
SLICE = 256

Steps = Generator[None, None, Any]


_END = object()


def check_data_steps(
    value: Any, *, max_bytes: int, max_depth: int
) -> Generator[None, None, str | None]:
    """``check_data`` in slices: yields every ``SLICE`` elements; returns the same answer.

    Containers are walked through iterators, never copied, so no slice does more than
    ``SLICE`` elements' work however wide one container is.
    """
    total = 0
    work = 0
    stack: list[Any] = [iter((value,))]
    while stack:
        v = next(stack[-1], _END)
        if v is _END:
            stack.pop()
            continue
        if type(v) is tuple and len(v) == 2 and type(v[0]) is str:  # a dict item
            total += len(v[0]) + 3
            v = v[1]
        if isinstance(v, (bytes, str)):
            total += len(v) + 3
        elif isinstance(v, dict):
            total += 2
            stack.append(iter(v.items()))
        elif isinstance(v, (list, tuple)):
            total += 2
            stack.append(iter(v))
        else:
            total += 8
        total += 1
        if len(stack) - 1 > max_depth:
            return f"nested deeper than {max_depth} levels"
        if total > max_bytes:
            return f"larger than {max_bytes} bytes"
        work += 1
        if work >= SLICE:
            work = 0
            yield
    return None


def check_data(value: Any, *, max_bytes: int, max_depth: int) -> str | None:
    """Why `value` (decoded JSON) is too big or too deep to hand to Lua, or None if it isn't.

    Measures about as many bytes as its JSON text would take and stops at the first limit
    passed, so a hostile value costs at most `max_bytes` of work. Checked before conversion
    (a deep or huge value would otherwise hold the loop while it is converted). For a large
    value, drive ``check_data_steps`` from the loop instead (see ``run_sliced``).
    """
    return run_steps(check_data_steps(value, max_bytes=max_bytes, max_depth=max_depth))


def run_steps(steps: Generator[None, None, T]) -> T:
    """Runs a sliced walk to the end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def run_sliced(steps: Generator[None, None, T]) -> T:
    """Runs a sliced walk, letting the event loop run between slices."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await asyncio.sleep(0)


class Converter:
    """Converts values for one Lua runtime.

    Args:
        lua: the runtime.
        array_mark: the Lua metatable that marks a table as a JSON array.
        memory_limit: the Lua memory cap in bytes (0: none); a value that would not fit
            under it is refused before conversion starts.
    """

    def __init__(self, lua: lua54.LuaRuntime, array_mark: Any, memory_limit: int = 0) -> None:
        self._lua = lua
        self._limit = memory_limit
        self._collect = lua.eval("function() collectgarbage() end")
        self._table_from = lua.table_from
        self._mark = lua.eval("function(t, mt) return setmetatable(t, mt) end")
        self._is_marked = lua.eval("function(t, mt) return getmetatable(t) == mt end")
        self._array_mark = array_mark
        self._identity = lua.eval("function(x) return x end")
        self._merge = lua.eval("function(t, chunk) for k, v in pairs(chunk) do t[k] = v end end")

    def anchor(self, value: Any) -> Any:
        """Re-wraps a Lua object so Python may keep it.

        lupa ties each Lua object it hands to Python to the Lua thread it came from. Objects
        received inside a task belong to that task's coroutine; once the coroutine is
        collected, releasing them touches freed memory (seen as heap corruption). Passing the
        object through a call made from Python re-ties it to the main thread, which lives as
        long as the runtime. Every Lua object a primitive keeps must go through here.
        """
        if value is None or isinstance(value, (bool, int, float, bytes)):
            return value
        return self._identity(value)

    # Python -> Lua -------------------------------------------------------------------------

    def reserve(self, value: Any) -> None:
        """Checks that `value` fits in what is left of the Lua memory cap.

        Conversion runs with the cap lifted (see scheduler.lua), so this check is what keeps
        a large value out: it is refused with a clear error instead of being built.

        Raises:
            ConversionError: it does not fit, even after a full garbage collection.
        """
        if self._limit <= 0 or isinstance(value, (bool, int, float)) or value is None:
            return
        free = self._limit - self._lua.get_memory_used()
        need = data_size(value, free)
        if need <= free:
            return
        self._collect()
        used = self._lua.get_memory_used()
        if need <= self._limit - used:
            return
        mib = 1 << 20
        raise ConversionError(
            f"a value of about {need / mib:.1f} MiB does not fit in Lua memory "
            f"({used / mib:.0f} of {self._limit / mib:.0f} MiB in use; see lua_memory_limit_mb)"
        )

    def to_lua(self, value: Any, *, checked: int | None = None) -> Any:
        """Converts a Python value (JSON-like data, or an existing Lua object) for Lua.

        Args:
            value: the value.
            checked: `value` passed ``check_data`` with this ``max_bytes``: when even the
                largest value under it fits in the memory left, it is not measured again.

        Raises:
            ConversionError: too deep, or too large for the Lua memory cap.
        """
        if checked is None or self._limit <= 0:
            self.reserve(value)
        elif checked * _SLOT >= self._limit - self._lua.get_memory_used():
            self.reserve(value)
        return self._to_lua(value)

    def _to_lua(self, value: Any, _depth: int = 0) -> Any:
        if value is None or isinstance(value, (bool, int, float, bytes)):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if _depth > MAX_DEPTH:
            raise ConversionError("value is nested too deeply")
        if isinstance(value, dict):
            return self._table_from(
                {
                    self._to_lua(k, _depth + 1): self._to_lua(v, _depth + 1)
                    for k, v in value.items()
                    if v is not None
                }
            )
        if isinstance(value, (list, tuple)):
            table = self._table_from(
                [JSON_NULL if v is None else self._to_lua(v, _depth + 1) for v in value]
            )
            # Every list is marked, not only empty ones: a decoded array that a plugin
            # empties (table.remove) must still encode as [] rather than {}.
            return self._mark(table, self._array_mark)
        # Lua objects and documented handles cross unchanged.
        return value

    def to_lua_steps(self, value: Any) -> Generator[None, None, Any]:
        """``to_lua`` in slices (yields every ``SLICE`` elements), for large data such as a
        client's message: drive it with ``run_sliced`` so the loop keeps running.

        Raises:
            ConversionError: too deep, or too large for the Lua memory cap.
        """
        work = 0

        def convert(v: Any, depth: int) -> Generator[None, None, Any]:
            nonlocal work
            if depth > MAX_DEPTH:
                raise ConversionError("value is nested too deeply")
            is_dict = isinstance(v, dict)
            items = v.items() if is_dict else enumerate(v, 1)
            # A wide container is filled in chunks, so no single call builds all of it.
            table = self._lua.table() if len(v) > SLICE else None
            out: Any = {}
            for k, item in items:
                if isinstance(item, (dict, list, tuple)):
                    item = yield from convert(item, depth + 1)
                elif item is None:
                    if is_dict:
                        continue
                    item = JSON_NULL
                else:
                    item = self._to_lua(item)
                out[self._to_lua(k) if is_dict else k] = item
                work += 1
                if work >= SLICE:
                    work = 0
                    if table is not None:
                        self._merge(table, self._table_from(out))
                        out = {}
                    self._check_room()
                    yield
            if table is None:
                table = self._table_from(out)
            elif out:
                self._merge(table, self._table_from(out))
            return table if is_dict else self._mark(table, self._array_mark)

        if not isinstance(value, (dict, list, tuple)):
            return self.to_lua(value)
        # Measuring first would be a second full walk without a break; instead the memory
        # left is checked at every slice, so it is passed by one slice at most.
        self._check_room()
        return (yield from convert(value, 1))

    def _check_room(self) -> None:
        if self._limit <= 0:
            return
        used = self._lua.get_memory_used()
        if used > self._limit - (1 << 20):
            mib = 1 << 20
            raise ConversionError(
                f"value does not fit in Lua memory ({used / mib:.0f} of "
                f"{self._limit / mib:.0f} MiB in use; see lua_memory_limit_mb)"
            )

    def results(self, value: Any) -> Any:
        """Converts a primitive's return value; a tuple becomes multiple Lua results."""
        self.reserve(value)
        if isinstance(value, tuple):
            return tuple(self._to_lua(v) for v in value)
        return self._to_lua(value)

    # Lua -> Python -------------------------------------------------------------------------

    def to_py(self, value: Any, _depth: int = 0, _seen: set[int] | None = None) -> Any:
        """Converts a Lua value to plain Python data; raises ConversionError for functions."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if value is JSON_NULL:
            return None
        t = lua54.lua_type(value)
        if t != "table":
            raise ConversionError(f"cannot convert a Lua {t or 'userdata'}")
        if _depth > MAX_DEPTH:
            raise ConversionError("table is nested too deeply (or contains a cycle)")
        items = list(value.items())
        if not items:
            return [] if self._is_marked(value, self._array_mark) else {}
        n = len(items)
        if all(type(k) is int for k, _ in items):
            keys = sorted(k for k, _ in items)
            if keys[0] == 1 and keys[-1] == n:
                out: list[Any] = [None] * n
                for k, v in items:
                    out[k - 1] = self.to_py(v, _depth + 1)
                return out
        result: dict[Any, Any] = {}
        for k, v in items:
            key = k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k
            result[key] = self.to_py(v, _depth + 1)
        return result
