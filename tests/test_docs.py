"""docs/primitives.md is generated from the docstrings; it must not go stale."""

from __future__ import annotations

from pathlib import Path

from botster import docgen


def test_primitives_reference_is_up_to_date():
    current = (Path(__file__).parent.parent / "docs" / "primitives.md").read_text()
    assert current == docgen.render(), "docs/primitives.md is stale: run `python -m botster.docgen`"
