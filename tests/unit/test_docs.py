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


PAGES = sorted(DOCS.glob("*.md")) + [DOCS.parent / "README.md"]


def _option_mentions(text: str) -> list[str]:
    """Option names the text uses: ``[resilience] name`` and ``AIRFLOW__RESILIENCE__NAME``."""
    import re

    names = [n for n in re.findall(r"\[resilience\]\s+`?([a-z_]+)", text) if n not in ("section", "option", "options")]
    names += [n.lower() for n in re.findall(r"AIRFLOW__RESILIENCE__([A-Z_]+)", text)]
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_name_only_real_options_with_their_defaults(page: Path) -> None:
    """No page names an option that does not exist, and a default stated beside an option is the declared
    one: ``| `[resilience] x` | `20` |`` rows and ``x` (20 s)`` in the text."""
    import re

    text = page.read_text()
    unknown = sorted({n for n in _option_mentions(text) if n not in OPTIONS})
    assert not unknown, f"{page.name} names options that do not exist: {unknown}"
    stated = re.findall(r"^\| `\[resilience\] (\w+)` \| `([^`]*)` \|", text, re.M)
    stated += re.findall(r"`(?:\[resilience\] )?(\w+)` \((\d+(?:\.\d+)?) ?s\)", text)
    wrong = []
    for name, default in stated:
        if name not in OPTIONS:
            continue
        declared = OPTIONS[name][1]
        try:
            same = float(declared) == float(default)
        except ValueError:
            same = declared == default
        if not same:
            wrong.append((name, default, declared))
    assert not wrong, f"{page.name}: (option, stated default, declared default) {wrong}"
