"""The ``http``primitive (being written)."""

LUA: dict[str, object] = {}
