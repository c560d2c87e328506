"""How a Python function becomes a Lua function: argument checking and result conversion.

A primitive module writes plain functions with type hints and marks them with ``@lua_api``;
the hints are the Lua contract. ``bind`` turns each into the callable Lua sees:

* arguments are checked in order, one rule per hint, and converted (Lua strings become
  ``str``, tables become ``dict``/``list`` or a ``TypedDict`` whose unknown keys are refused);
* a wrong argument raises a Lua error at the caller's line, shaped
  ``fs.read: path: expected string, got nil``;
* an ``async def`` suspends only the calling Lua task (see ``scheduler.lua``);
* the return value is converted back; a tuple is multiple results, so ``return None, err``
  is Lua's ``nil, err``.

Supported hints: ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``Any`` (any data,
converted), ``object`` (any Lua value, unconverted), ``dict``/``dict[str, str]``/``list[str]``,
a ``TypedDict`` (an options table), ``LuaFunction``, ``LuaTable`` (the raw table), unions, and
``X | None`` for optional arguments. Lua objects that cross unconverted (functions, tables,
``object``) are anchored (see ``Converter.anchor``), so a primitive may keep them.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import types
from collections.abc import Callable
from typing import (
    Any,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from lupa import lua54

from botster.base.errors import ArgumentError
from botster.lua.convert import ConversionError, lua_type_name

__all__ = [
    "CALLER",
    "LuaFunction",
    "LuaTable",
    "bind",
    "describe",
    "exported",
    "lua_api",
    "options",
]

log = logging.getLogger("lua")


# The owner (plugin) whose Lua call started the async primitive body running now. The body
# runs after that Lua step has returned, so the scheduler cannot answer; ``bind`` records the
# owner at call time and sets this inside the task that awaits the body.
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("botster_caller", default=None)
# The caller's creation fence (``Scheduler.fence``) inside the body of a ``creates``
# primitive: the object it makes sends its events through it.
FENCE: contextvars.ContextVar[Any] = contextvars.ContextVar("botster_fence", default=None)


class LuaFunction:
    """Hint: a Lua function, passed through as a callable reference."""


class LuaTable:
    """Hint: a Lua table, passed through unconverted."""


Checker = Callable[[Any, str, Any], Any]  # (value, argument name, converter) -> python value


def describe(value: Any) -> str:
    """How an error message shows the value it got: numbers by value, the rest by type."""
    if isinstance(value, bool) or value is None:
        return lua_type_name(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return lua_type_name(value)


def _fail(arg: str, expected: str, value: Any) -> ArgumentError:
    return ArgumentError(f"{arg}: expected {expected}, got {lua_type_name(value)}")


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _check_any(v: Any, arg: str, conv: Any) -> Any:
    try:
        return conv.to_py(v)
    except ConversionError as e:
        raise ArgumentError(f"{arg}: {e}") from None


def _checker(hint: Any) -> tuple[Checker, str, bool]:
    """Returns (checker, expected-type wording, optional) for one type hint."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        alts = [a for a in get_args(hint) if a is not type(None)]
        optional = len(alts) < len(get_args(hint))
        parts = [_checker(a) for a in alts]
        wording = "|".join(p[1] for p in parts)
        if len(parts) == 1:
            inner = parts[0][0]

            def check_opt(v: Any, arg: str, conv: Any) -> Any:
                return None if v is None else inner(v, arg, conv)

            return check_opt, wording, optional

        def check_union(v: Any, arg: str, conv: Any) -> Any:
            if v is None and optional:
                return None
            for check, _, _ in parts:
                try:
                    return check(v, arg, conv)
                except ArgumentError:
                    continue
            raise _fail(arg, wording, v)

        return check_union, wording, optional

    if hint is str:

        def check_str(v: Any, arg: str, conv: Any) -> str:
            if isinstance(v, bytes):
                return _decode(v)
            raise _fail(arg, "string", v)

        return check_str, "string", False
    if hint is bytes:

        def check_bytes(v: Any, arg: str, conv: Any) -> bytes:
            if isinstance(v, bytes):
                return v
            raise _fail(arg, "string", v)

        return check_bytes, "string", False
    if hint is bool:

        def check_bool(v: Any, arg: str, conv: Any) -> bool:
            if isinstance(v, bool):
                return v
            raise _fail(arg, "boolean", v)

        return check_bool, "boolean", False
    if hint is int:

        def check_int(v: Any, arg: str, conv: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _fail(arg, "integer", v)
            if isinstance(v, float):
                if not v.is_integer():
                    raise ArgumentError(f"{arg}: expected integer, got {describe(v)}")
                return int(v)
            return v

        return check_int, "integer", False
    if hint is float:

        def check_num(v: Any, arg: str, conv: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _fail(arg, "number", v)
            return v

        return check_num, "number", False
    if hint is LuaFunction:

        def check_fn(v: Any, arg: str, conv: Any) -> Any:
            if lua54.lua_type(v) == "function":
                return conv.anchor(v)
            raise _fail(arg, "function", v)

        return check_fn, "function", False
    if hint is LuaTable:

        def check_table(v: Any, arg: str, conv: Any) -> Any:
            if lua54.lua_type(v) == "table":
                return conv.anchor(v)
            raise _fail(arg, "table", v)

        return check_table, "table", False
    if hint is object:

        def check_raw(v: Any, arg: str, conv: Any) -> Any:
            return conv.anchor(v)

        return check_raw, "value", True
    if hint is Any:
        return _check_any, "value", True
    if is_typeddict(hint):
        return _options_checker(hint), "table", False
    if hint is dict or origin is dict:
        key_t, val_t = get_args(hint) or (Any, Any)
        vcheck = _checker(val_t)[0] if val_t is not Any else None

        def check_dict(v: Any, arg: str, conv: Any) -> dict[Any, Any]:
            if lua54.lua_type(v) != "table":
                raise _fail(arg, "table", v)
            out: dict[Any, Any] = {}
            for k, item in v.items():
                if key_t is str and not isinstance(k, bytes):
                    raise ArgumentError(f"{arg}: keys must be strings, got {describe(k)}")
                key = _decode(k) if isinstance(k, bytes) else k
                if vcheck is not None:
                    out[key] = vcheck(item, f"{arg}.{key}", conv)
                else:
                    out[key] = _check_any(item, f"{arg}.{key}", conv)
            return out

        return check_dict, "table", False
    if hint is list or origin is list:
        (item_t,) = get_args(hint) or (Any,)
        icheck = _checker(item_t)[0]

        def check_list(v: Any, arg: str, conv: Any) -> list[Any]:
            if lua54.lua_type(v) != "table":
                raise _fail(arg, "array", v)
            n = len(v)
            return [icheck(v[i], f"{arg}[{i}]", conv) for i in range(1, n + 1)]

        return check_list, "array", False
    raise TypeError(f"lua_api: unsupported type hint {hint!r}")


def _options_checker(td: Any) -> Checker:
    # With string annotations, Python 3.11 records Required[...] / NotRequired[...] in the
    # hints but not in __required_keys__, so they are read from the hints here.
    hints = get_type_hints(td, include_extras=True)
    required = set(getattr(td, "__required_keys__", set()))
    for name, h in list(hints.items()):
        origin = get_origin(h)
        if origin is Required:
            required.add(name)
            hints[name] = get_args(h)[0]
        elif origin is NotRequired:
            required.discard(name)
            hints[name] = get_args(h)[0]
    fields = {name: _checker(h) for name, h in hints.items()}
    known = ", ".join(sorted(fields))

    def check_opts(v: Any, arg: str, conv: Any) -> dict[str, Any]:
        if lua54.lua_type(v) != "table":
            raise _fail(arg, "table", v)
        out: dict[str, Any] = {}
        for k, item in v.items():
            key = _decode(k) if isinstance(k, bytes) else k
            if key not in fields:
                raise ArgumentError(f"{arg}: unknown key {key!r} (known: {known})")
            check, _, _ = fields[key]
            out[key] = check(item, f"{arg}.{key}", conv)
        for key in sorted(required - out.keys()):
            raise _fail(f"{arg}.{key}", fields[key][1], None)
        return out

    return check_opts


class _Spec:
    __slots__ = ("fn", "name", "params", "is_async", "varargs", "takes_hub", "creates")

    def __init__(self, fn: Callable[..., Any], creates: bool = False) -> None:
        self.fn = fn
        self.creates = creates
        module = fn.__module__.rsplit(".", 1)[-1]
        self.name = f"{module}.{fn.__name__}"
        self.is_async = inspect.iscoroutinefunction(fn)
        hints = get_type_hints(fn)
        sig = inspect.signature(fn)
        parameters = list(sig.parameters.values())
        # A first parameter named `hub` receives the installing hub; Lua never sees it.
        self.takes_hub = bool(parameters) and parameters[0].name == "hub"
        if self.takes_hub:
            parameters = parameters[1:]
        # (name, checker, nil allowed, has a Python default)
        self.params: list[tuple[str, Checker, bool, bool]] = []
        for p in parameters:
            if p.kind is p.VAR_POSITIONAL:
                raise TypeError(f"{self.name}: *args is not supported")
            check, _, optional = _checker(hints.get(p.name, Any))
            has_default = p.default is not inspect.Parameter.empty
            self.params.append((p.name, check, optional or has_default, has_default))


def options(td: Any) -> Callable[[Any, str, Any], dict[str, Any]]:
    """A checker for an options table, for functions whose signature can't say it directly
    (an optional table before a callback): ``check(value, "opts", conv) -> dict``."""
    return _options_checker(td)


def lua_api(fn: Callable[..., Any] | None = None, *, creates: bool = False) -> Any:
    """Marks a function as Lua-facing; its type hints are checked on every Lua call.

    ``@lua_api(creates=True)`` marks an async primitive that creates an object: its caller's
    task is fenced (``Scheduler.fence``) and the body finds the fence in ``FENCE``, so the
    object's events cannot fire before the caller has run on past its creating calls.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__lua_spec__ = _Spec(f, creates)  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def bind(
    fn: Callable[..., Any],
    conv: Any,
    raise_marker: Any,
    owner: Callable[[], str] = lambda: "hub",
    hub: Any = None,
    fence: Callable[[], Any] | None = None,
) -> tuple[Callable[..., Any], bool]:
    """Builds the raw callable Lua calls for a ``@lua_api`` function.

    A function whose first parameter is ``hub`` gets `hub` bound there (see
    ``botster.primitives.context``). Returns (callable, is_async). The callable returns
    ``raise_marker, message`` for a wrong argument; for an async function it returns an
    awaitable that yields converted results, with ``CALLER`` set to `owner()` as it was at
    call time.
    """
    spec: _Spec = fn.__lua_spec__  # type: ignore[attr-defined]
    params, name, target = spec.params, spec.name, spec.fn
    if spec.takes_hub:
        if hub is None:
            raise TypeError(f"{name} takes the hub, but none was given to bind it")
        target = functools.update_wrapper(functools.partial(spec.fn, hub), spec.fn)
    nparams = len(params)

    def convert_args(args: tuple[Any, ...]) -> list[Any]:
        if len(args) > nparams:
            noun = "argument" if nparams == 1 else "arguments"
            raise ArgumentError(f"expected at most {nparams} {noun}, got {len(args)}")
        out = []
        for i, (pname, check, optional, _) in enumerate(params):
            v = args[i] if i < len(args) else None
            if v is None and optional:
                out.append(None)
                continue
            out.append(check(v, pname, conv))
        # Trailing nils are dropped where the Python function has a default for them.
        while out and out[-1] is None and params[len(out) - 1][3]:
            out.pop()
        return out

    def message(e: ArgumentError) -> bytes:
        text = str(e)
        if not text.startswith(name + ":"):
            text = f"{name}: {text}"
        return text.encode("utf-8", "surrogateescape")

    if spec.is_async:

        async def finish(coro: Any, caller: str, held: Any = None) -> Any:
            token = CALLER.set(caller)
            fence_token = FENCE.set(held)
            try:
                return conv.results(await coro)
            except ArgumentError as e:
                return raise_marker, message(e)
            except ConversionError as e:
                return raise_marker, f"{name}: {e}".encode()
            finally:
                FENCE.reset(fence_token)
                CALLER.reset(token)

        creates = spec.creates and fence is not None

        @functools.wraps(target)
        def call_async(*args: Any) -> Any:
            try:
                converted = convert_args(args)
            except ArgumentError as e:
                return raise_marker, message(e)
            # The fence is taken now, inside the caller's step: the body runs after it.
            return finish(target(*converted), owner(), fence() if creates else None)

        return call_async, True

    @functools.wraps(target)
    def call(*args: Any) -> Any:
        try:
            return conv.results(target(*convert_args(args)))
        except ArgumentError as e:
            return raise_marker, message(e)
        except ConversionError as e:
            return raise_marker, f"{name}: {e}".encode()
        except Exception as e:  # a bug in the primitive must not kill the calling plugin silently
            log.exception("%s failed", name)
            return raise_marker, f"{name}: internal error: {e!r}".encode()

    return call, False


def exported(module: types.ModuleType) -> dict[str, Callable[..., Any]]:
    """The Lua-facing functions a primitive module lists in its ``LUA`` table."""
    table: dict[str, Callable[..., Any]] = module.LUA
    for lua_name, fn in table.items():
        if not hasattr(fn, "__lua_spec__"):
            raise TypeError(f"{module.__name__}.{lua_name} is not marked @lua_api")
    return table
