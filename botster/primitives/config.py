"""The ``config``primitive (being written)."""

LUA: dict[str, object] = {}
