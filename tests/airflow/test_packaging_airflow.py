"""The lean runtime wheel: built from the checkout and installed with no extra into a fresh virtualenv beside
stock Airflow 3.3.2 (the pinned constraints, from uv's cache). It carries LICENSE, NOTICE, the classifiers and
the declared dependencies, registers no pytest plugin, and its optional parts name the extra they need."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from airflow_resilience.testing import services

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    uv = Path(sys.executable).with_name("uv")
    found = str(uv) if uv.exists() else shutil.which("uv")
    if found is None:
        services.unavailable("uv is not installed (the Makefile installs it into the virtualenv)")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([_uv(), "build", "--wheel", "-o", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (built,) = out.glob("airflow_resilience-*.whl")
    return built


@pytest.fixture(scope="module")
def lean(wheel: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run a command of the lean install: ``lean("python", "-c", ...)`` -> CompletedProcess."""
    root = tmp_path_factory.mktemp("lean")
    venv, home = root / "venv", root / "home"
    home.mkdir()
    subprocess.run([_uv(), "venv", "--python", sys.executable, str(venv)], check=True, capture_output=True)
    subprocess.run(
        [_uv(), "pip", "install", "--python", str(venv / "bin" / "python"),
         "-c", str(ROOT / "requirements" / "constraints.txt"), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")

    def run(program: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / program), *args], env=env, cwd=root, capture_output=True,
                              text=True, timeout=300)

    yield run
    shutil.rmtree(root, ignore_errors=True)


def _metadata(wheel: Path) -> tuple[list[str], dict]:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = Parser().parsestr(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    return names, {"meta": meta, "entry_points": entry_points}


def test_wheel_carries_licence_classifiers_and_declared_dependencies(wheel: Path) -> None:
    import tomllib

    names, info = _metadata(wheel)
    meta = info["meta"]
    assert {n.split(".dist-info/")[1] for n in names if ".dist-info/licenses/" in n} == {"licenses/LICENSE", "licenses/NOTICE"}
    assert meta["License-Expression"] == "Apache-2.0"
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= set(meta.get_all("Classifier"))
    from packaging.requirements import Requirement

    def specs(requirements) -> dict:
        return {(r := Requirement(d)).name: r.specifier for d in requirements}

    runtime = specs(d for d in meta.get_all("Requires-Dist") if "extra ==" not in d)
    declared = specs(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert runtime == declared
    assert {"apache-airflow", "fastapi", "httpx", "psutil", "pydantic", "sqlalchemy"} <= set(runtime)
    assert "3.3.2" in runtime["apache-airflow"] and "3.4.0" not in runtime["apache-airflow"]
    assert "pytest11" not in info["entry_points"]  # the pytest plugin is opt-in
    assert "[apache_airflow_provider]" in info["entry_points"] and "[airflow.policy]" in info["entry_points"]


def test_testing_package_without_its_extra_names_the_extra(lean) -> None:
    assert lean("python", "-c", "import pytest").returncode != 0  # the premise: the lean install has no pytest
    for module in ("airflow_resilience.testing", "airflow_resilience.testing.harness"):
        done = lean("python", "-c", f"import {module}")
        assert done.returncode != 0
        assert "needs the 'testing' extra" in done.stderr
        assert "pip install 'airflow-resilience[testing]'" in done.stderr
    assert lean("python", "-c", "import airflow_resilience, airflow_resilience.airflow.cli_commands").returncode == 0


def test_drill_without_its_extra_says_which_to_install(lean) -> None:
    for command in (("airflow", "resilience", "drill", "--scenario", "oom"),
                    ("python", "-m", "airflow_resilience.drills", "--scenario", "oom")):
        done = lean(*command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "pip install 'airflow-resilience[drills]'" in done.stderr
        assert "Traceback" not in done.stderr
    listed = lean("airflow", "resilience", "--help")
    assert listed.returncode == 0 and all(c in listed.stdout for c in ("checkpoint", "watermark", "report", "drill"))
