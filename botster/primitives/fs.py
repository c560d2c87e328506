"""The ``fs``primitive (being written)."""

LUA: dict[str, object] = {}
