"""The layer rule (docs/architecture.md, "Layers") holds, and its checker catches what it
should: an upward import, one hidden under TYPE_CHECKING or inside a function, a relative one,
and a module outside every layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from botster.dev.layers import violations


def test_the_tree_has_no_upward_import():
    assert violations() == []


def test_the_command_prints_the_layers_and_zero_violations():
    out = subprocess.run(
        [sys.executable, "-m", "botster.dev.layers"], capture_output=True, text=True, check=True
    ).stdout
    assert "primitives" in out and "\n0 violations" in out


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "botster"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for d in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    return package


def test_upward_imports_are_found_wherever_they_hide(tmp_path):
    package = _tree(
        tmp_path,
        {
            "lua/runtime.py": "X = 1\n",
            "sessions/typed.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from botster.lua.runtime import X\n"
            ),
            "transports/late.py": "def f():\n    import botster.lua.runtime\n",
            "base/rel.py": "from ..primitives import context\n",
            "primitives/context.py": "Y = 2\n",
            "tui/app.py": "from botster.sessions.terminal import T\nfrom botster.lua import runtime\n",
            "sessions/terminal.py": "T = 3\n",
            "stray.py": "\n",
        },
    )
    found = "\n".join(violations(package))
    assert "sessions/typed.py:3: sessions imports botster.lua.runtime (lua)" in found
    assert "transports/late.py:2: transports imports botster.lua.runtime (lua)" in found
    assert "base/rel.py:1: base imports botster.primitives" in found
    assert "tui/app.py:2: clients imports botster.lua.runtime (lua)" in found
    assert "tui/app.py:1" not in found  # the terminal model is the clients' to use
    assert "module botster.stray has no layer" in found
