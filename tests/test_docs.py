"""The docs stay true: docs/primitives.md is generated from the docstrings and must not go
stale; what the README promises a new user is what happens."""

from __future__ import annotations

from pathlib import Path

from botster import docgen


def test_primitives_reference_is_up_to_date():
    current = (Path(__file__).parent.parent / "docs" / "primitives.md").read_text()
    assert current == docgen.render(), "docs/primitives.md is stale: run `python -m botster.docgen`"


def test_readme_tutorial_error_line_is_the_one_lua_reports():
    """Issue 12: the README's step 4 promises the line Lua reports once `end)` is deleted."""
    import re

    import lupa.lua54 as lupa

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    plugin = re.findall(r"```lua\n(.*?)```", readme, re.S)[1]
    assert "timer.every(2, function()" in plugin and "events.on" in plugin
    lines = plugin.split("\n")
    lines.remove("end)")  # the one that closes timer.every
    load = lupa.LuaRuntime().eval('function(s) local _, e = load(s, "@init.lua") return e end')
    reported = re.match(r"init\.lua:(\d+):", load("\n".join(lines)))
    assert reported, "the edited plugin must fail to parse"
    promised = re.search(
        r"reload failed, keeping the running version: \.\.\./init\.lua:(\d+):", readme
    )
    assert promised and promised[1] == reported[1], (promised, reported)
