"""Every DAG file shipped with the tests, examples and benchmarks compiles (a syntax error there would
only show as a 'DAG not parsed' timeout in the real-Airflow tests)."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(
    [*ROOT.glob("tests/airflow/dags/*.py"), *ROOT.glob("examples/dags/*.py"), *ROOT.glob("benchmarks/dags/*.py")]
)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dag_file_compiles(path: Path) -> None:
    py_compile.compile(str(path), doraise=True)
