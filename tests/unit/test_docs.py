"""The docs are part of the feature: every option is documented with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_resilience.options import OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_option_documented_with_default(option: str) -> None:
    text = (DOCS / "configuration.md").read_text()
    kind, default, _doc = OPTIONS[option]
    row = next((line for line in text.splitlines() if line.startswith(f"| `{option}` |")), None)
    assert row is not None, f"{option} missing from docs/configuration.md"
    assert f"| `{default}` |" in row
