"""``airflow resilience`` CLI conventions on a real Airflow 3.3.2 whose ``[state_store] backend`` is a custom one
(tests/airflow/state_backends/file_state_backend.py: every row in a JSON file, none in ``task_state_store``):
checkpoints are written, resumed, shown and reset through that backend; listings take ``-o table|json|yaml|plain``
(Airflow's console helpers), documents ``-o json|yaml``."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from airflow_resilience.attempt import HEAD_KEY, doc_key
from airflow_resilience.testing import AirflowEnvironment, EnvironmentUnavailable

pytestmark = pytest.mark.airflow

HERE = Path(__file__).parent
DAGS = HERE / "dags"
DAG = "ckpt_steps"


@pytest.fixture(scope="module")
def custom_backend(suite_services, tmp_path_factory):
    """(environment, path of the backend's file)."""
    rows = tmp_path_factory.mktemp("state") / "rows.json"
    config = {
        "AIRFLOW__STATE_STORE__BACKEND": "file_state_backend.FileStateBackend",
        "FILE_STATE_BACKEND_PATH": str(rows),
        "PYTHONPATH": os.pathsep.join([str(HERE / "state_backends"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "AIRFLOW__RESILIENCE__INFRA_RETRY_DELAY": "1",
    }
    try:
        af = AirflowEnvironment.create(
            dags=[DAGS / "ckpt_steps.py", DAGS / "resilience_marks.py"],
            database="postgres" if suite_services.available("PostgreSQL") else "sqlite",
            config=config,
        )
    except EnvironmentUnavailable as exc:
        pytest.fail(f"CLI tests: {exc}") if os.environ.get("CI") == "true" else pytest.skip(str(exc))
    try:
        yield af, rows
    finally:
        af.stop()


def _saved(rows: Path, run_id: str) -> dict:
    """The backend's rows of the ``work`` task of ``run_id``, decoded."""
    data = json.loads(rows.read_text()) if rows.exists() else {}
    return {k: json.loads(v) for k, v in data.get(json.dumps(["task", DAG, run_id, "work", -1]), {}).items()}


def test_checkpoint_resume_show_and_reset_through_a_custom_state_backend(custom_backend, marks):
    af, rows = custom_backend
    run_id = af.trigger(DAG, conf={"marks": str(marks.path), "steps": 6, "delay": 0.5})
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 2)
    af.wait_for_task(DAG, run_id, "work", {"running"}, try_number=1)
    af.signal_runner(DAG, run_id, "work", signal.SIGKILL)
    assert af.wait_for_run(DAG, run_id, timeout=180) == "success"
    assert [t.try_number for t in af.try_history(DAG, run_id, "work")] == [1, 2]
    resumed_at = marks.of("item-start", 2)[0]["i"]
    assert resumed_at == max(e["i"] for e in marks.of("item-end", 1)) + 1  # try 2 read try 1's checkpoint back

    # the rows live in the custom backend only
    assert af.sql("SELECT count(*) FROM task_state_store WHERE run_id = :r", r=run_id) == [(0,)]
    saved = _saved(rows, run_id)
    assert saved[HEAD_KEY]["try_number"] == 2 and doc_key(2) in saved

    shown = json.loads(af.airflow("resilience", "checkpoint", "show", DAG, run_id, "work").stdout)
    assert set(shown) == {HEAD_KEY, doc_key(2)}
    assert shown[HEAD_KEY]["try_number"] == 2 and shown[doc_key(2)]["loops"]["items"]["done"] == 6
    as_yaml = af.airflow("resilience", "checkpoint", "show", DAG, run_id, "work", "-o", "yaml").stdout
    assert "try_number: 2" in as_yaml and "resilience:checkpoint:head:" in as_yaml

    out = af.airflow("resilience", "checkpoint", "reset", DAG, run_id, "work", "--yes").stdout
    assert "deleted 2 checkpoint keys" in out
    left = _saved(rows, run_id)
    assert not [k for k in left if k.startswith("resilience:checkpoint:")]
    assert left["resilience:attempt"]["try_number"] == 2  # the package's bookkeeping is not the checkpoint: kept
    audit = af.sql("SELECT extra FROM log WHERE event = 'cli_resilience_checkpoint_reset' AND run_id = :r", r=run_id)
    assert sorted(json.loads(audit[0][0])["deleted_keys"]) == sorted([HEAD_KEY, doc_key(2)])
    missing = af.airflow("resilience", "checkpoint", "show", DAG, run_id, "work", check=False)
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr


def test_watermark_list_in_every_output_format(custom_backend):
    af, _rows = custom_backend
    name = f"orders.{uuid.uuid4().hex[:8]}"
    af.airflow("resilience", "watermark", "set", name, "42")

    listed = json.loads(af.airflow("resilience", "watermark", "list", "-o", "json").stdout)
    mine = next(r for r in listed if r["name"] == name)
    assert (mine["value"], mine["version"], mine["holder"]) == (42, 1, None)  # typed values, as before
    as_yaml = af.airflow("resilience", "watermark", "list", "-o", "yaml").stdout
    assert f"name: {name}" in as_yaml and "value: 42" in as_yaml
    plain = af.airflow("resilience", "watermark", "list", "-o", "plain").stdout.splitlines()
    assert plain[0].split() == ["name", "version", "value", "holder"]
    assert [name, "1", "42", "-"] in [line.split() for line in plain[1:]]
    got = af.airflow("resilience", "watermark", "get", name, "-o", "yaml").stdout
    assert "value: 42" in got and "version: 1" in got
