"""MCP tool arguments checked against the tool's ``input_schema`` (JSON Schema).

A tool declares what it takes; an agent that sends something else (a missing field, a
number for a string) gets a message naming the field instead of a handler failing somewhere
inside. Validation uses the maintained ``jsonschema`` library, with the draft the schema
names (``$schema``; 2020-12 when it names none). Its import (~0.1 s) happens off the hub's
loop as soon as a tool is registered (``warm``), so the first call does not stall the hub.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

__all__ = ["check_arguments", "warm"]

_cache: dict[str, Any] = {}  # schema JSON -> validator (schemas repeat on every call)
_CACHE_MAX = 256


def warm(hub: Any) -> None:
    """Imports jsonschema on the hub's I/O pool, once (later calls do nothing)."""
    if _cache.get("_warming") is None:
        _cache["_warming"] = True
        hub.spawn(
            hub.run_blocking(importlib.import_module, "jsonschema"),
            name="import jsonschema",
            owner="hub",
        )


def check_arguments(schema: Any, arguments: Any) -> str | None:
    """None when `arguments` satisfy `schema`, else what is wrong, naming the field.

    A schema that is itself invalid is reported as such (the tool's author must fix it).
    """
    import jsonschema

    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _cache.get(key)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            return f"the tool's input_schema is not a valid JSON Schema: {e.message}"
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        if len(_cache) > _CACHE_MAX:
            _cache.clear()
        _cache[key] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    where = f"argument {path[1:] if path.startswith('.') else path}" if path else "arguments"
    return f"{where}: {error.message}"
