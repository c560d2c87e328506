"""The ``secrets``primitive (being written)."""

LUA: dict[str, object] = {}
