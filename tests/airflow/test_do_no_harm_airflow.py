"""First, do no harm — on a real Airflow 3.3.2 with PostgreSQL (LocalExecutor).

* Version skew: the dag-processor with the package and the scheduler/workers with it switched off or not
  installed (and the reverse): a ``retries=1`` task that raises runs exactly 2 attempts, then FAILED, with
  ``max_tries`` 1 ("Try 2 of 2").
* Our own parts failing: a lost-worker detector whose psutil errors, an Execution API 500 on our
  state-store keys, a corrupt and an oversized ledger, a failing statement in the scheduler-side listener —
  each time the task behaves as stock Airflow would, with one warning line and a metric.
* Selective enable: an untagged ``retries=0`` task whose runner is SIGKILLed ends FAILED after one try with
  ``max_tries`` 0; a tagged one resumes and succeeds.

PostgreSQL only: the faults are injected with PostgreSQL triggers, and the skew scenarios repeat nothing
that depends on the database.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_resilience.testing.harness import AirflowEnvironment

pytestmark = pytest.mark.airflow

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
HARM_DAGS = HERE / "harm_dags"
MARKS_MODULE = HERE / "dags" / "resilience_marks.py"
BASE_CONFIG = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__RESILIENCE__LOST_WORKER_CHECK_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
}
OFF = {"AIRFLOW__RESILIENCE__ENABLED": "False"}


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def stock_airflow(suite_services) -> str:
    """The ``airflow`` executable of a virtualenv with the tested Airflow set and *without* this package
    (cached per requirements under ~/.cache/airflow-resilience, built with uv from its cache)."""
    reqs = (ROOT / "requirements" / "test.txt").read_bytes() + (ROOT / "requirements" / "constraints.txt").read_bytes()
    venv = Path.home() / ".cache" / "airflow-resilience" / f"stock-venv-{hashlib.sha256(reqs).hexdigest()[:12]}"
    airflow = venv / "bin" / "airflow"
    if not (venv / ".complete").exists():
        uv = Path(sys.executable).with_name("uv")
        subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
             "-c", str(ROOT / "requirements" / "constraints.txt"), "-r", str(ROOT / "requirements" / "test.txt")],
            check=True, timeout=900,
        )
        (venv / ".complete").touch()
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import airflow_resilience"], capture_output=True)
    assert check.returncode != 0, "the stock virtualenv must not have airflow-resilience"
    return str(airflow)


def boot(dags, **kwargs) -> AirflowEnvironment:
    config = {**BASE_CONFIG, **kwargs.pop("config", {})}
    return AirflowEnvironment.create(dags=dags, database="postgres", config=config, **kwargs)


def trigger(af, marks, dag, **conf) -> str:
    return af.trigger(dag, conf={"marks": str(marks.path), **conf})


def assert_two_attempts_then_failed(af, marks, run_id) -> None:
    """retries=1, raising every time: exactly what stock Airflow does."""
    assert af.wait_for_run("skew_raises", run_id, timeout=180) == "failed"
    time.sleep(3)  # a third attempt, if anything granted one, would have started by now
    tries = af.try_history("skew_raises", run_id, "work")
    assert [t.try_number for t in tries] == [1, 2]
    assert tries[-1].state == "failed"
    assert af.task_instance("skew_raises", run_id, "work").max_tries == 1  # the UI: "Try 2 of 2"
    assert [e["t"] for e in marks.of("attempt-start")] == [1, 2]


SKEWS = {
    # dag-processor (and API server) with the package; scheduler and its LocalExecutor workers switched off
    "scheduler-and-workers-off": {"component_env": {"scheduler": OFF, "triggerer": OFF}},
    # ... or running from a virtualenv without the package at all
    "scheduler-and-workers-not-installed": {"component_bin": {"scheduler": "STOCK", "triggerer": "STOCK"}},
    # the reverse: the dag-processor without the package, everything else with it
    "dag-processor-not-installed": {"component_bin": {"dag-processor": "STOCK"}},
}
SKEWED = ("dag-processor", "scheduler", "triggerer")


@pytest.fixture(scope="module")
def skew_env(suite_services):
    """One Airflow for the skew scenarios; each restarts the dag-processor, scheduler and triggerer with
    its own environment or executable (the API server keeps the package: its failure gate is there)."""
    af = boot([HARM_DAGS / "skew_raises.py", MARKS_MODULE])
    try:
        yield af
    finally:
        af.stop()


@pytest.mark.parametrize("skew", list(SKEWS))
def test_version_skew_never_gives_an_application_failure_an_extra_try(skew, skew_env, stock_airflow, marks):
    af, spec = skew_env, SKEWS[skew]
    for name in SKEWED:
        af.component_env[name] = dict(spec.get("component_env", {}).get(name, {}))
        if name in spec.get("component_bin", {}):
            af.component_bin[name] = stock_airflow
        else:
            af.component_bin.pop(name, None)
        af.stop_component(name)
        af.start_component(name)
    af._wait_healthy(timeout=120)
    run_id = trigger(af, marks, "skew_raises")
    assert_two_attempts_then_failed(af, marks, run_id)


# ---------------------------------------------------------------------------------------------- our faults
FAULTS = HERE / "faults"


@pytest.fixture(scope="module")
def hardened(suite_services, tmp_path_factory):
    """selective_enable on every component, and a lost-worker detector whose psutil raises on every read."""
    fault_log = tmp_path_factory.mktemp("faults") / "psutil.log"
    af = boot(
        [HARM_DAGS / "harm_steps.py", MARKS_MODULE],
        config={"AIRFLOW__RESILIENCE__SELECTIVE_ENABLE": "True"},
        component_env={"scheduler": {"PYTHONPATH": str(FAULTS), "RESILIENCE_TEST_BREAK_PSUTIL": str(fault_log)}},
    )
    try:
        yield af, fault_log
    finally:
        af.stop()


def test_selective_enable_untagged_task_is_stock(hardened, marks):
    af, _ = hardened
    run_id = trigger(af, marks, "harm_untagged", steps=20, delay=0.2)
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 3)
    af.signal_runner("harm_untagged", run_id, "work", signal.SIGKILL)
    assert af.wait_for_run("harm_untagged", run_id, timeout=180) == "failed"
    time.sleep(3)
    ti = af.task_instance("harm_untagged", run_id, "work")
    assert (ti.state, ti.try_number, ti.max_tries) == ("failed", 1, 0)
    assert marks.of("attempt-start", 2) == []
    store = af.state_store("harm_untagged", run_id, "work")
    assert "resilience:attempt" not in store and "resilience:ledger" not in store  # nothing of ours ran
    assert store["resilience:checkpoint:head"]["try_number"] == 1  # the library still checkpointed


def test_selective_enable_tagged_task_resumes(hardened, marks):
    af, _ = hardened
    run_id = trigger(af, marks, "harm_tagged", steps=20, delay=0.2)
    marks.wait_for(lambda e: e["ev"] == "item-end" and e["t"] == 1 and e["i"] >= 5)
    af.signal_runner("harm_tagged", run_id, "work", signal.SIGKILL)
    assert af.wait_for_run("harm_tagged", run_id, timeout=180) == "success"
    start2 = marks.wait_for(lambda e: e["ev"] == "attempt-start" and e["t"] == 2)
    assert start2["done"] >= 6  # resumed
    ledger = af.state_store("harm_tagged", run_id, "work")["resilience:ledger"]["attempts"]
    assert [(a["cause"]["reason"], a["verdict"]) for a in ledger] == [("signal.sigkill", "grant")]
    assert af.task_instance("harm_tagged", run_id, "work").max_tries == 1  # raised by the one grant


def test_detector_with_failing_psutil_leaves_a_healthy_task_alone(hardened, marks):
    """Every pid check of the detector raises: "unknown", so it neither kills the runner nor hands the task
    back (the old rule took an error for a dead supervisor and SIGKILLed the runner)."""
    af, fault_log = hardened
    run_id = trigger(af, marks, "harm_tagged", steps=25, delay=0.2)
    assert af.wait_for_run("harm_tagged", run_id, timeout=180) == "success"
    assert fault_log.exists() and len(fault_log.read_text().splitlines()) >= 3  # the detector did ask
    tries = af.try_history("harm_tagged", run_id, "work")
    assert [t.try_number for t in tries] == [1] and tries[0].state == "success"
    assert [e["t"] for e in marks.of("attempt-start")] == [1]
    assert "resilience:evidence" not in af.state_store("harm_tagged", run_id, "work")


# ---------------------------------------------------------------------------------------------- shared env
REFUSE = """
CREATE OR REPLACE FUNCTION resilience_test_refuse() RETURNS trigger AS $body$
BEGIN
  IF NEW.dag_id = TG_ARGV[0] AND split_part(NEW.key, chr(58), 1) = 'resilience'
     AND (TG_ARGV[1] = '*' OR split_part(NEW.key, chr(58), 2) = TG_ARGV[1]) THEN
    RAISE EXCEPTION 'refused by the test trigger: %', NEW.key;
  END IF;
  RETURN NEW;
END
$body$ LANGUAGE plpgsql
"""


class refused_writes:
    """A PostgreSQL trigger that makes every write of our keys (``resilience:<part>``) of one DAG fail."""

    def __init__(self, af, dag_id: str, part: str = "*") -> None:
        self.af, self.dag_id, self.part = af, dag_id, part
        self.name = f"resilience_test_refuse_{dag_id}"

    def __enter__(self):
        self.af.sql(REFUSE, write=True)
        self.af.sql(
            f"CREATE TRIGGER {self.name} BEFORE INSERT OR UPDATE ON task_state_store FOR EACH ROW "
            f"EXECUTE FUNCTION resilience_test_refuse('{self.dag_id}', '{self.part}')",
            write=True,
        )
        return self

    def __exit__(self, *exc):
        self.af.sql(f"DROP TRIGGER IF EXISTS {self.name} ON task_state_store", write=True)


postgres_only = pytest.mark.parametrize("airflow_database", ["postgres"], indirect=True)


@postgres_only
def test_execution_api_500_on_our_keys_runs_the_task_as_stock(airflow_env, marks, statsd_sink):
    af = airflow_env
    before = statsd_sink.count("resilience.bookkeeping_errors")
    with refused_writes(af, "harm_plain"):
        run_id = trigger(af, marks, "harm_plain", steps=5)
        assert af.wait_for_run("harm_plain", run_id, timeout=180) == "success"
    tries = af.try_history("harm_plain", run_id, "work")
    assert [t.try_number for t in tries] == [1] and tries[0].state == "success"
    log = af.task_log("harm_plain", run_id, "work", 1)
    assert "airflow-resilience: attempt record failed" in log and "stock Airflow behaviour" in log
    deadline = time.monotonic() + 10
    while statsd_sink.count("resilience.bookkeeping_errors") <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert statsd_sink.count("resilience.bookkeeping_errors") > before


@postgres_only
@pytest.mark.parametrize("spoil", ["corrupt", "oversized"])
def test_spoiled_ledger_runs_the_task_as_stock(airflow_env, marks, spoil):
    """The task writes a damaged (or an old, never-trimmed 50 KB) ledger, then fails once: its retries=1
    retry runs and succeeds as stock Airflow would; the ledger is trimmed, never a failed write."""
    af = airflow_env
    run_id = trigger(af, marks, "harm_plain", steps=3, spoil_ledger=spoil, raise_on_tries=[1])
    assert af.wait_for_run("harm_plain", run_id, timeout=180) == "success"
    tries = af.try_history("harm_plain", run_id, "work")
    assert [t.try_number for t in tries] == [1, 2] and tries[-1].state == "success"
    assert af.task_instance("harm_plain", run_id, "work").max_tries == 1
    ledger = af.state_store("harm_plain", run_id, "work")["resilience:ledger"]
    if spoil == "corrupt":
        assert ledger == {"format": 99, "attempts": "not a list"}  # left as found, for inspection
        assert "ledger read failed" in af.task_log("harm_plain", run_id, "work", 2)
    else:
        assert len(ledger["attempts"]) == 32 and ledger["attempts"][-1]["try_number"] == 1
        assert ledger["attempts"][-1]["verdict"] == "stock"


@postgres_only
def test_failing_statement_in_the_scheduler_listener_leaves_the_scheduler_scheduling(airflow_env, marks):
    """The supervisor of a retries=0 task is SIGKILLed; the scheduler fails the task instance and our
    listener's ledger write is refused by PostgreSQL. The savepoint takes the failure: the scheduler keeps
    running (same PID) and scheduling, and the task instance gets Airflow's own verdict (FAILED)."""
    af = airflow_env
    scheduler = af.component_pid("scheduler")
    with refused_writes(af, "harm_untagged", "ledger"):
        run_id = trigger(af, marks, "harm_untagged", steps=40, delay=0.2)
        marks.wait_for(lambda e: e["ev"] == "item-end" and e["i"] >= 2)
        af.signal_supervisor("harm_untagged", run_id, "work", signal.SIGKILL)
        assert af.wait_for_run("harm_untagged", run_id, timeout=180) == "failed"
    ti = af.task_instance("harm_untagged", run_id, "work")
    assert (ti.state, ti.try_number, ti.max_tries) == ("failed", 1, 0)
    assert "resilience:ledger" not in af.state_store("harm_untagged", run_id, "work")
    assert "scheduler listener failed" in af.component_log("scheduler", tail=200_000)
    assert af.component_pid("scheduler") == scheduler and af._procs["scheduler"].poll() is None
    other = trigger(af, marks, "harm_plain", steps=2)
    assert af.wait_for_run("harm_plain", other, timeout=120) == "success"  # still scheduling
