"""The hub's one Lua state: creation, limits, primitives, embedded modules.

Owns: the ``lupa.lua54`` runtime (touched only from the loop thread), the memory cap, the
task scheduler (``scheduler.lua`` + ``scheduler.py``), installation of primitive modules as Lua
globals, and the ``require`` chain (repo overrides, device overrides, embedded modules).
Leaves to ``botster/primitives`` what each global does, and to the embedded Lua under
``runtime/`` (``hub/init.lua``, ``hub/loader.lua``...) how plugins are found and loaded.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from importlib import resources
from pathlib import Path
from typing import Any

from lupa import lua54

from botster.lua.api import CALLER, bind, exported
from botster.lua.convert import JSON_NULL, Converter
from botster.lua.scheduler import Scheduler

__all__ = ["LuaHost", "PROTECTED_MODULES"]

log = logging.getLogger("lua")
plugin_log = logging.getLogger("plugin")

# Core modules that can be neither overridden nor reloaded: they hold the hub's Lua state.
PROTECTED_MODULES = ("hub.state", "hub.hooks", "hub.loader", "hub.sandbox")

_PACKAGE = resources.files("botster.lua")


def _embedded_sources() -> dict[str, tuple[bytes, bytes]]:
    """Every embedded module: name -> (source, chunk name). Read once, at start-up."""
    out: dict[str, tuple[bytes, str]] = {}
    root = Path(str(_PACKAGE.joinpath("runtime")))
    for path in sorted(root.rglob("*.lua")):
        rel = path.relative_to(root).with_suffix("")
        name = ".".join(rel.parts)
        out[name] = (path.read_bytes(), f"@embedded:{rel.as_posix()}.lua".encode())
    return out


class LuaHost:
    """One Lua state plus the machinery that makes it safe to run plugins on the loop.

    Args:
        budget_s: CPU seconds one task step may use before it is aborted.
        memory_limit: bytes the whole Lua state may allocate.
        slow_s: a step longer than this (wall time) is logged as slow.
        override_dirs: directories searched by ``require`` before the embedded modules,
            highest priority first (repo ``.botster/lua``, then ``$BOTSTER_HOME/lua``).
    """

    def __init__(
        self,
        *,
        budget_s: float = 1.0,
        memory_limit: int = 512 << 20,
        slow_s: float = 0.05,
        override_dirs: list[Path] | None = None,
    ) -> None:
        self.lua = lua54.LuaRuntime(
            encoding=None,
            unpack_returned_tuples=True,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_no_attributes,
            max_memory=memory_limit,
        )
        self.memory_limit = memory_limit
        # The cap is in force only while plugin code runs (scheduler.lua): an allocation that
        # fails while lupa pushes values outside a protected call would abort the process.
        self.lua.set_max_memory(0)
        self.globals = self.lua.globals()
        # Plugins get the full standard library, but not a door into the Python process.
        self.lua.execute(b"python = nil")
        self.sched: Scheduler
        self._lua_sched = self._load_scheduler(budget_s, slow_s)
        # string.find/match/gmatch/gsub that the CPU budget can cut (see patterns.lua).
        self.load(_PACKAGE.joinpath("patterns.lua").read_bytes(), "@embedded:patterns.lua")()
        self.raise_marker = self._lua_sched[b"RAISE"]
        self._running_owner = self._lua_sched[b"running_owner"]
        self.array_mark = self.lua.execute(b"return {__name = 'json.array'}")
        self.convert = Converter(self.lua, self.array_mark, memory_limit)
        self.null = JSON_NULL
        self.embedded = _embedded_sources()
        self._setup_require(override_dirs or [])
        self.lua.globals()[b"package"][b"loaded"][b"hub.sched"] = self._lua_sched
        self._wrong_door = self.lua.execute(_WRONG_DOOR)
        # lupa 2.8: indexing a Lua table from Python while a coroutine runs (a primitive
        # called by a task) returns the resumer's stack slots as a tuple instead of the value.
        # Calls are unaffected, so Python reads tables through a Lua function; both are
        # fetched here, outside any coroutine.
        self._index = self.lua.eval(b"function(t, k) return t[k] end")
        self._require = self.globals[b"require"]

    def _load_scheduler(self, budget_s: float, slow_s: float) -> Any:
        source = _PACKAGE.joinpath("scheduler.lua").read_bytes()
        chunk = self.load(source, "@embedded:scheduler.lua")
        # scheduler.lua looks its callbacks up in `py` at call time, so they can be added
        # once the Python half exists.
        py = self.lua.table_from(
            {
                b"now": time.monotonic,
                b"budget": float(budget_s),
                b"slow_s": float(slow_s),
                b"mem_enforce": functools.partial(self.lua.set_max_memory, self.memory_limit),
                b"mem_lift": functools.partial(self.lua.set_max_memory, 0),
                # A quarter of the cap (at least 32 MiB) is headroom for what Python pushes.
                b"mem_soft_kb": max(self.memory_limit - max(self.memory_limit // 4, 32 << 20), 0)
                / 1024,
            }
        )
        lua_sched = chunk(py)
        self.sched_py = py  # the supervisor's watchdog adds on_enter (botster.hub.supervisor)
        self.sched = Scheduler(
            lua_sched,
            lua_sched[b"RAISE"],
            plugin_log,
            lift_cap=functools.partial(self.lua.set_max_memory, 0),
            collect=self.lua.globals()[b"collectgarbage"],
        )
        for name in ("on_await", "on_yield", "on_error", "on_slow", "on_release"):
            py[name.encode()] = getattr(self.sched, "_" + name)
        return lua_sched

    def _setup_require(self, override_dirs: list[Path]) -> None:
        patterns = []
        for d in override_dirs:
            patterns += [f"{d}/?.lua", f"{d}/?/init.lua"]
        setup = self.lua.execute(_REQUIRE_SETUP)
        setup(
            ";".join(patterns).encode(),
            self.convert.to_lua(list(PROTECTED_MODULES)),
            self._lua_sched[b"bind_sync"](self._embedded_loader),
        )

    def _embedded_loader(self, name: bytes) -> Any:
        entry = self.embedded.get(name.decode())
        if entry is None:
            return None
        return entry

    def get(self, table: Any, key: bytes) -> Any:
        """``table[key]``, safe to call from code a Lua task runs (see ``_index``)."""
        return self._index(table, key)

    # Installing primitives ----------------------------------------------------------------

    def install(
        self,
        lua_name: str,
        module: types.ModuleType,
        extra: dict[str, Any] | None = None,
        hub: Any = None,
    ) -> Any:
        """Installs a primitive module as the Lua global `lua_name`.

        The module's ``LUA`` table lists its functions; those whose first parameter is
        ``hub`` get `hub` (the installing ``HubContext``) bound there. A companion
        ``<module>.lua`` beside it, if present, runs with the table and may add functions
        written in Lua.
        """
        table = self.lua.table()
        for name, fn in exported(module).items():
            call, is_async = bind(
                fn, self.convert, self.raise_marker, self.current_owner, hub, self.sched.fence
            )
            if is_async:
                table[name.encode()] = self._lua_sched[b"bind_async"](
                    f"{lua_name}.{name}".encode(), call
                )
            else:
                table[name.encode()] = self._lua_sched[b"bind_sync"](call)
        for name, value in (extra or {}).items():
            table[name.encode()] = value
        companion = Path(module.__file__ or "").with_suffix(".lua")
        if companion.exists():
            chunk = self.lua.execute(
                b"return function(src, name) return assert(load(src, name)) end"
            )(companion.read_bytes(), f"@embedded:primitives/{companion.name}".encode())
            chunk(table, self._lua_sched)
        hints = getattr(module, "WRONG_DOOR", {})
        self._wrong_door(table, lua_name.encode(), self.convert.to_lua(hints))
        self.globals[lua_name.encode()] = table
        return table

    # Running Lua --------------------------------------------------------------------------

    def load(self, source: bytes, chunk_name: str) -> Any:
        """Compiles a chunk; raises lupa's LuaSyntaxError with `file:line: message`."""
        return self.lua.execute(b"return function(s, n) return assert(load(s, n)) end")(
            source, chunk_name.encode()
        )

    def require(self, module: str) -> Any:
        """Lua's ``require`` from Python (safe inside a task, like ``get``)."""
        return self._require(module.encode())

    def current_owner(self) -> str:
        """Who is calling: the owner of the running Lua step, else (inside the body of an
        async primitive) the owner whose call started it, else "hub"."""
        running = self._running_owner()
        if running is not None:
            return running.decode("utf-8", "replace")
        return CALLER.get() or "hub"


def _no_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    """lupa's attribute filter: Lua code reads no attribute of a Python object.

    Python objects reach Lua only as opaque values (``json.null``, a waiting task's
    awaitable); their attributes would lead to any Python module (``__class__``...).
    """
    raise AttributeError("Python objects have no fields in Lua")


_REQUIRE_SETUP = b"""
return function(override_path, protected, embedded)
  -- Overrides on disk win over embedded modules; the OS-wide and cwd-relative default
  -- paths are dropped so a plugin never loads a stray file from wherever the hub started.
  package.path = override_path
  package.cpath = ""
  local function load_embedded(name)
    local src, chunkname = embedded(name)
    if src == nil then return nil end
    local fn, err = load(src, chunkname)
    if not fn then error(err, 0) end
    return fn
  end
  -- Protected modules resolve before any searcher, so nothing on disk can replace them.
  for _, name in ipairs(protected) do
    package.preload[name] = function(...) return load_embedded(name)(...) end
  end
  table.insert(package.searchers, function(name)
    local fn = load_embedded(name)
    if fn == nil then return "\\n\\tno embedded module '" .. name .. "'" end
    return fn, ":embedded:"
  end)
end
"""

_WRONG_DOOR = b"""
return function(t, module_name, hints)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  local known = table.concat(names, ", ")
  setmetatable(t, {
    __index = function(_, key)
      local hint = hints[key]
      if hint then error(module_name .. "." .. tostring(key) .. " does not exist; " .. hint, 2) end
      error(module_name .. "." .. tostring(key) .. " does not exist (" .. module_name
        .. " has: " .. known .. ")", 2)
    end,
  })
end
"""
