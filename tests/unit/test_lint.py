"""pyflakes over the package: an undefined name is a crash waiting on a code path no test ran."""

from __future__ import annotations

import pathlib

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "airflow_resilience"


class _Collect(Reporter):
    def __init__(self) -> None:
        self.found: list[str] = []

    def unexpectedError(self, filename, msg):  # noqa: N802 (pyflakes' API)
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):  # noqa: N802
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        self.found.append(str(message))


def test_no_pyflakes_messages() -> None:
    reporter = _Collect()
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    for path in files:
        checkPath(str(path), reporter)
    assert reporter.found == []
