"""The ``websocket``primitive (being written)."""

LUA: dict[str, object] = {}
