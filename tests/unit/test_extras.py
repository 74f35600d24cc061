"""The optional parts name the extra they need: the declarations match pyproject.toml, and a missing module
is reported as the extra to install (the lean wheel itself: tests/airflow/test_packaging_airflow.py)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from airflow_resilience import extras
from airflow_resilience.drills import cli as drills_cli

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _declared(extra: str) -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"][extra]
    names = set()
    for dep in deps:
        name = re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        if name == "airflow-resilience":  # an extra that includes another: drills = [airflow-resilience[testing], ...]
            names |= _declared(re.search(r"\[(.+)\]", dep).group(1))
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_checked_modules_are_the_extras_declared_dependencies(extra: str) -> None:
    assert set(extras.EXTRAS[extra].values()) == _declared(extra)


def test_the_pytest_plugin_is_opt_in() -> None:
    tomllib = pytest.importorskip("tomllib")
    entry_points = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    assert "pytest11" not in entry_points


def test_a_missing_module_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.EXTRAS, "testing", {"pytest": "pytest", "no_such_module_for_this_test": "no-such-dist"})
    assert extras.missing("testing") == ["no-such-dist"]
    with pytest.raises(ImportError, match=r"needs the 'testing' extra .* no-such-dist\. Install it with: "
                                          r"pip install 'airflow-resilience\[testing\]'"):
        extras.require("testing", "airflow_resilience.testing")


def test_everything_installed_is_no_error() -> None:
    extras.require("testing", "airflow_resilience.testing")  # this suite has the test tools
    assert extras.missing("drills") == []


def _drill_args(**over) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    drills_cli.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in over.items():
        setattr(args, key, value)
    return args


def test_drill_without_its_extra_says_which_to_install(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(extras.EXTRAS, "drills", {**extras.EXTRAS["drills"], "no_such_plot_lib": "no-such-plot-lib"})
    assert drills_cli.run(_drill_args(out=tmp_path)) == 2
    err = capsys.readouterr().err
    assert "pip install 'airflow-resilience[drills]'" in err and "no-such-plot-lib" in err
    assert not list(tmp_path.iterdir())  # nothing ran, nothing written


def test_job_workload_without_databricks_names_that_extra(monkeypatch) -> None:
    monkeypatch.setattr(drills_cli, "_has_databricks", lambda: False)
    problem = drills_cli.missing_extras(_drill_args(workload="job"))
    assert problem is not None and "airflow-resilience[drills,databricks]" in problem
    assert drills_cli.missing_extras(_drill_args(workload="load")) is None


def test_testing_package_imports_with_its_extra() -> None:
    import airflow_resilience.testing as testing

    assert "airflow_resilience.testing" in sys.modules and testing.CheckpointEnvironment is not None
