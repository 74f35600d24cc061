"""Run disruption drills on a real Airflow: trigger, disrupt real processes, measure from Airflow's database.

.. code-block:: python

    from airflow_resilience.drills import Scenario, run_drill

    result = run_drill([Scenario("eviction"), Scenario("lost_worker"), Scenario("oom")], repeats=3)
    result.save(Path("reports/drill/results.json"))

Injecting a disruption is :mod:`.inject`, reading what a run cost is :mod:`.measure`; this module runs
them (one run, a drill of several, chaos). Three sides run the same task (``model.SIDES``) on two embedded
Airflow 3.3.2 deployments (``airflow_resilience.testing.AirflowEnvironment``): *stock* (a plain loop) and
*stock-checkpointed* (a hand-written ``task_state_store`` checkpoint) share one with
``[resilience] enabled = False``; *ours* (``Checkpoint.iterate``) has its own with the package on. Every
side's task has ``retries=0`` unless ``DrillConfig.retries`` says otherwise. Pass
``environments={"ours": env, "stock": env2}`` to use environments you started.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_resilience.drills.inject import _wait, disrupt
from airflow_resilience.drills.measure import _read_marks, measure
from airflow_resilience.drills.model import DISRUPTIONS, SIDES, TASK, DrillResult, RunRecord

log = logging.getLogger(__name__)

DRILL_DAGS = Path(__file__).parent / "dags" / "resilience_drill.py"
LOAD_DAG = "resilience_drill_load"
#: the highest ``retries`` the drill DAG file has a variant for (``resilience_drill_load_r3``)
MAX_RETRIES = 3
#: which embedded Airflow a side runs on: both stock sides share the package-off one
ENVIRONMENT_OF = {"stock": "stock", "stock-checkpointed": "stock", "ours": "ours"}
#: the load task's run-conf ``mode`` per side (see ``dags/resilience_drill.py``)
LOAD_MODE = {"stock": "plain", "stock-checkpointed": "task_state_store", "ours": "checkpoint"}
#: what each side is given, for the report
SIDE_GIVEN = {
    "stock": "stock Airflow 3.3.2 ([resilience] enabled = False), the task as a plain loop",
    "stock-checkpointed": "stock Airflow 3.3.2 ([resilience] enabled = False), a hand-written checkpoint: the count "
                          "of finished items saved in context['task_state_store'] after each item, a retry resumes from it",
    "ours": "airflow-resilience on, the same loop through Checkpoint.iterate",
}
#: the job workload: stock Airflow 3.3.2's DatabricksSubmitRunOperator already uses ResumableJobMixin
JOB_SIDE_GIVEN = {
    "stock": "stock Airflow 3.3.2, the provider's DatabricksSubmitRunOperator (it uses ResumableJobMixin, durable: "
             "the run id is saved in task_state_store and a retry reconnects to the run)",
    "stock-checkpointed": "the same DAG as stock: stock Airflow 3.3.2's DatabricksSubmitRunOperator already "
                          "checkpoints in task_state_store (ResumableJobMixin); nothing more for a user to write",
    "ours": "airflow-resilience on, ResumableDatabricksSubmitRunOperator",
}


def dag_for(workload: str, side: str, retries: int) -> str:
    """The drill DAG a side runs with ``retries`` (a parse-time attribute: one DAG variant per value)."""
    if not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"drill retries must be 0..{MAX_RETRIES}, got {retries}")
    suffix = f"_r{retries}" if retries else ""
    if workload == "job":
        return ("resilience_drill_job" if side == "ours" else "resilience_drill_job_stock") + suffix
    return LOAD_DAG + suffix


@dataclass(frozen=True)
class Scenario:
    """One disruption (or ``count`` of them) of one DAG run, at a fraction of the work."""

    disruption: str
    at: float = 1 / 3
    #: "load" (the drill's items loop), "job" (a Databricks run on the loopback server) or "dag" (your
    #: own DAG: ``DrillConfig.dag_file``/``dag_id``/``task_id``, disrupted ``at_seconds`` into the attempt)
    workload: str = "load"
    count: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if self.disruption not in DISRUPTIONS:
            raise ValueError(f"unknown disruption {self.disruption!r}; choose from {', '.join(DISRUPTIONS)}")
        if not 0 < self.at < 1:
            raise ValueError(f"Scenario.at is a fraction of the work in (0, 1), got {self.at!r}")
        if self.workload not in ("load", "job", "dag"):
            raise ValueError(f"Scenario.workload must be 'load', 'job' or 'dag', got {self.workload!r}")

    @property
    def label(self) -> str:
        return self.name or self.disruption


@dataclass
class DrillConfig:
    items: int = 30
    seconds: float = 1.0
    job_duration: float = 20.0
    grace: float = 10.0
    run_timeout: float = 900.0
    #: your own DAG (workload "dag"): the file to deploy, the DAG and the task to disrupt, the run conf,
    #: and how many seconds into the attempt the disruption comes
    dag_file: Path | None = None
    dag_id: str | None = None
    task_id: str | None = None
    conf: dict[str, Any] | None = None
    at_seconds: float = 10.0
    #: the drill task's ``retries`` per side (``SIDES``); a side not named gets 0, so a stock side that
    #: cannot survive a disruption without a retry fails, and the report shows it
    retries: dict[str, int] = field(default_factory=dict)

    def retries_for(self, side: str) -> int:
        return int(self.retries.get(side, 0))

    def check(self) -> None:
        for side, n in self.retries.items():
            if side not in SIDES:
                raise ValueError(f"DrillConfig.retries: unknown side {side!r}; choose from {', '.join(SIDES)}")
            if not isinstance(n, int) or not 0 <= n <= MAX_RETRIES:
                raise ValueError(f"DrillConfig.retries[{side!r}] = {n!r}: retries must be 0..{MAX_RETRIES} "
                                 f"(--retries / --stock-retries)")
        if self.dag_file is not None and not Path(self.dag_file).is_file():
            raise ValueError(f"--dag-file {self.dag_file}: no such file")
        if (self.dag_id is None) != (self.task_id is None) or (self.dag_file is not None and self.dag_id is None):
            raise ValueError("a drill of your own DAG needs --dag-id and --task-id (and --dag-file to deploy it)")


# ---------------------------------------------------------------------------------------------- disrupt


# ---------------------------------------------------------------------------------------------- one run




def run_one(
    af: Any,
    side: str,
    scenario: Scenario,
    cfg: DrillConfig,
    workdir: Path,
    *,
    job_server: Any = None,
    at_fractions: list[float] | None = None,
) -> RunRecord:
    """Trigger one DAG run, disrupt it ``scenario.count`` times, wait for its end, and measure. ``side`` is one
    of ``SIDES``; the DAG variant has ``cfg.retries_for(side)`` retries (your own DAG: its own)."""
    if side not in SIDES:
        raise ValueError(f"unknown drill side {side!r}; choose from {', '.join(SIDES)}")
    tag = secrets.token_hex(3)
    run_id = f"drill__{side}__{scenario.label}__{tag}"
    marks = workdir / f"{run_id}.jsonl"
    task = TASK
    retries: int | None = cfg.retries_for(side)
    if scenario.workload == "job":
        if job_server is None:
            raise ValueError("a 'job' scenario needs the loopback job server (job_server=...)")
        dag_id = dag_for("job", side, retries)
        conf = {"marks": str(marks), "duration": cfg.job_duration}
    elif scenario.workload == "dag":
        if not (cfg.dag_id and cfg.task_id):
            raise ValueError("a 'dag' scenario needs DrillConfig.dag_id and task_id")
        dag_id, task, conf = cfg.dag_id, cfg.task_id, dict(cfg.conf or {})
        retries = None  # your DAG's own, read from Airflow
    else:
        dag_id = dag_for("load", side, retries)
        conf = {"marks": str(marks), "items": cfg.items, "seconds": cfg.seconds, "mode": LOAD_MODE[side]}
    triggered = time.time()
    af.trigger(dag_id, conf=conf, run_id=run_id)
    fractions = at_fractions or [scenario.at] * scenario.count
    disruptions: list[dict[str, Any]] = []

    def ti():
        return af.task_instance(dag_id, run_id, task)

    for n, fraction in enumerate(sorted(fractions)):
        if scenario.workload == "job":
            target = cfg.job_duration * fraction
            _wait(lambda: any(r["running_seconds"] >= target for r in job_server.runs(run_name=run_id)),
                  cfg.run_timeout, f"{run_id}: the job {fraction:.0%} done")
        elif scenario.workload == "dag":
            _wait(lambda: (row := ti()).state == "running" and row.start_date is not None
                  and time.time() - row.start_date.timestamp() >= cfg.at_seconds,
                  cfg.run_timeout, f"{run_id}: {task} running for {cfg.at_seconds}s")
        else:
            target = max(1, math.ceil(cfg.items * fraction))
            _wait(lambda: len({m["i"] for m in _read_marks(marks) if m["ev"] == "item-end"}) >= target,
                  cfg.run_timeout, f"{run_id}: {target} items done")
        # the task instance must be running (a previous disruption's retry may still be starting)
        _wait(lambda: (row := ti()).state == "running" and row.pid, cfg.run_timeout, f"{run_id}: task running")
        try_before = ti().try_number
        try:
            done = disrupt(af, scenario.disruption, dag_id, run_id, cfg.grace, task)
        except LookupError:  # it ended (or moved on) in between: no disruption this time
            continue
        done["try_number"] = try_before
        disruptions.append(done)
        if n + 1 < len(fractions):  # the next disruption hits the next attempt once it makes progress
            if scenario.workload == "dag":
                _wait(lambda: (row := ti()).try_number > try_before and row.state == "running",
                      cfg.run_timeout, f"{run_id}: the attempt after try {try_before}")
            else:
                _wait(lambda: any(m["ev"] == "attempt-start" and m["t"] > try_before for m in _read_marks(marks)),
                      cfg.run_timeout, f"{run_id}: the attempt after try {try_before}")
    af.wait_for_run(dag_id, run_id, timeout=cfg.run_timeout)
    return measure(af, side, scenario, cfg, dag_id, run_id, marks, triggered, disruptions, job_server, task,
                   retries=retries)




# ---------------------------------------------------------------------------------------------- drills
def boot(side: str, *, database: str | None, heartbeat_timeout: int | None, job_server: Any, parallelism: int = 4,
         extra_dags: list[Path] | None = None):
    from airflow_resilience.testing import AirflowEnvironment

    config: dict[str, str] = {}
    if ENVIRONMENT_OF.get(side, side) == "stock":  # both stock sides: the package off
        config["AIRFLOW__RESILIENCE__ENABLED"] = "False"
    if heartbeat_timeout:
        config["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = str(heartbeat_timeout)
        config["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL"] = "2"
    if job_server is not None:
        config["AIRFLOW_CONN_DATABRICKS_DEFAULT"] = job_server.airflow_connection()
    return AirflowEnvironment.create(
        dags=[DRILL_DAGS, *(extra_dags or [])], database=database, config=config, parallelism=parallelism
    )


@contextmanager
def _job_server(given: Any, needed: bool) -> Iterator[Any]:
    """The loopback job server to use: the caller's, or one started (and stopped) here when needed."""
    if given is not None or not needed:
        yield given
        return
    from airflow_resilience.testing.jobserver import JobServer

    server = JobServer().start()
    try:
        yield server
    finally:
        server.stop()


def _run_concurrently(
    calls: list[tuple[str, Callable[[], RunRecord]]],
    *,
    concurrency: int,
    stagger: float,
    on_progress: Callable[[str, RunRecord | None], None] | None,
) -> tuple[list[RunRecord], list[tuple[str, BaseException]]]:
    """Run ``(label, call)`` pairs, ``concurrency`` at a time, started ``stagger`` seconds apart. A call that
    raises is logged and returned with its label; the others go on."""
    runs: list[RunRecord] = []
    errors: list[tuple[str, BaseException]] = []
    lock = threading.Lock()
    semaphore = threading.Semaphore(concurrency)

    def one(label: str, call: Callable[[], RunRecord]) -> None:
        with semaphore:
            try:
                record = call()
            except BaseException as exc:  # reported at the end
                log.exception("drill run %s failed", label)
                with lock:
                    errors.append((label, exc))
                return
            with lock:
                runs.append(record)
            if on_progress:
                on_progress(label, record)

    threads = [threading.Thread(target=one, args=item) for item in calls]
    for t in threads:
        t.start()
        time.sleep(stagger)
    for t in threads:
        t.join()
    return runs, errors


def _config_meta(cfg: DrillConfig) -> dict[str, Any]:
    return {
        "items": cfg.items,
        "item_seconds": cfg.seconds,
        "job_duration_s": cfg.job_duration,
        "grace_s": cfg.grace,
        "airflow": _airflow_version(),
    }


def _sides_meta(sides: tuple[str, ...], cfg: DrillConfig, scenarios: list[Scenario]) -> dict[str, Any]:
    """What each side was given (retries, the loop or operator, which Airflow), for the report."""
    workloads = {s.workload for s in scenarios}
    given = {}
    for side in sides:
        what = []
        if "load" in workloads:
            what.append(SIDE_GIVEN[side])
        if "job" in workloads:
            what.append("job: " + JOB_SIDE_GIVEN[side])
        if "dag" in workloads:
            what.append("your DAG with the package " + ("on" if side == "ours" else "off"))
        retries = "your DAG's own retries" if workloads == {"dag"} else f"retries={cfg.retries_for(side)}"
        given[side] = f"{retries}; " + "; ".join(what)
    return {
        "retries": {side: cfg.retries_for(side) for side in sides},
        "given": given,
        "environments": {side: ENVIRONMENT_OF[side] for side in sides},
    }


def run_drill(
    scenarios: list[Scenario],
    *,
    sides: tuple[str, ...] = SIDES,
    repeats: int = 1,
    config: DrillConfig | None = None,
    database: str | None = None,
    heartbeat_timeout: int | None = None,
    environments: dict[str, Any] | None = None,
    job_server: Any = None,
    concurrency: int = 3,
    on_progress: Callable[[str, RunRecord | None], None] | None = None,
) -> DrillResult:
    """Run every scenario ``repeats`` times on each side; the sides run at the same time. Both stock sides
    run on one package-off Airflow (``environments["stock"]`` or one booted here), ours on its own."""
    cfg = config or DrillConfig()
    cfg.check()
    bad = [s for s in sides if s not in SIDES]
    if bad:
        raise ValueError(f"unknown drill sides {bad}; choose from {', '.join(SIDES)}")
    skipped = []
    if "stock-checkpointed" in sides and any(s.workload == "dag" for s in scenarios):
        # the drill cannot hand-write a checkpoint into your DAG: its stock side is all there is
        sides = tuple(s for s in sides if s != "stock-checkpointed")
        skipped.append("stock-checkpointed (your own DAG: the drill cannot write your checkpoint)")
    sides = tuple(s for s in SIDES if s in sides)
    workdir = Path(tempfile.mkdtemp(prefix="resilience-drill-"))
    envs = {ENVIRONMENT_OF[k] if k in ENVIRONMENT_OF else k: v for k, v in (environments or {}).items()}
    owned = list(dict.fromkeys(ENVIRONMENT_OF[s] for s in sides if ENVIRONMENT_OF[s] not in envs))
    runs: list[RunRecord] = []
    errors: list[BaseException] = []
    started = time.time()
    with _job_server(job_server, any(s.workload == "job" for s in scenarios)) as server:
        try:
            boots = {}
            for side in owned:
                if on_progress:
                    on_progress(f"booting the {side} Airflow", None)
            extra = [Path(cfg.dag_file)] if cfg.dag_file else []
            # a shared Airflow runs every side's runs at once: enough LocalExecutor slots for all of them
            slots = {e: max(4, concurrency * sum(1 for s in sides if ENVIRONMENT_OF[s] == e)) for e in owned}
            threads = [threading.Thread(target=lambda s=side: boots.__setitem__(s, boot(
                s, database=database, heartbeat_timeout=heartbeat_timeout, job_server=server, extra_dags=extra,
                parallelism=slots[s])))
                for side in owned]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            envs.update(boots)
            missing = list(dict.fromkeys(ENVIRONMENT_OF[s] for s in sides if ENVIRONMENT_OF[s] not in envs))
            if missing:
                raise RuntimeError(f"could not boot the {', '.join(missing)} Airflow (see the log above)")

            def side_worker(side: str) -> None:
                calls = [
                    (f"{side} {sc.label}",
                     lambda sc=sc: run_one(envs[ENVIRONMENT_OF[side]], side, sc, cfg, workdir, job_server=server))
                    for sc in scenarios for _ in range(repeats)
                ]
                done, failed = _run_concurrently(calls, concurrency=concurrency, stagger=0.5, on_progress=on_progress)
                runs.extend(done)
                errors.extend(exc for _label, exc in failed)

            workers = [threading.Thread(target=side_worker, args=(side,)) for side in sides]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
        finally:
            for side in owned:
                if side in envs:
                    envs[side].stop()
            shutil.rmtree(workdir, ignore_errors=True)  # the runs' progress marks: measured, no longer needed
    if errors and not runs:
        raise errors[0]
    database_kind = next(iter(envs.values())).database_kind if envs else database
    meta = {
        "kind": "drill",
        "started_at": started,
        "duration_s": round(time.time() - started, 1),
        "database": database_kind,
        "sides": list(sides),
        "sides_skipped": skipped,
        **_sides_meta(sides, cfg, scenarios),
        "repeats": repeats,
        "heartbeat_timeout_s": heartbeat_timeout or 300,
        "heartbeat_timeout_shortened": bool(heartbeat_timeout),
        "failed_runs": [repr(e) for e in errors],
        **_config_meta(cfg),
    }
    order = {(s.label, side): i for i, s in enumerate(scenarios) for side in sides}
    runs.sort(key=lambda r: (order.get((r.scenario, r.side), 0), SIDES.index(r.side), r.triggered_at))
    return DrillResult(meta, runs)


TASK_LEVEL = ("eviction", "lost_worker", "oom")


def chaos(
    disruptions: int,
    *,
    seed: int = 0,
    config: DrillConfig | None = None,
    database: str | None = None,
    environment: Any = None,
    job_server: Any = None,
    concurrency: int = 4,
    kinds: tuple[str, ...] | None = None,
    workloads: tuple[str, ...] = ("load", "job"),
    on_progress: Callable[[str, RunRecord | None], None] | None = None,
) -> DrillResult:
    """At least ``disruptions`` random disruptions with the package on, on overlapping runs (``concurrency`` at
    a time); every run is checked against the invariants (``RunRecord.violations``).

    Task-level kinds (eviction, lost worker, OOM kill) hit one run, 1 or 2 times at random moments.
    Control-plane kinds (:data:`~airflow_resilience.drills.control.CONTROL_PLANE`: scheduler/API/database
    restart, triggerer kill, Celery broker restart) come with a run of their own workload and hit every run in
    flight at that moment: each overlapping run's record lists them, and its invariants count them.
    ``kinds=None``: every kind the environment can take (``db_restart`` needs a database server the drill may
    restart — an environment booted here on PostgreSQL gets a private cluster —, ``broker_restart`` a
    CeleryExecutor environment with a private Redis)."""
    from airflow_resilience.drills.control import CONTROL_DAGS, CONTROL_PLANE, ControlConfig, run_control

    cfg = config or DrillConfig(items=16, seconds=0.5, job_duration=12, grace=5)
    af = environment
    owned_env = af is None
    private_pg = None
    workdir = Path(tempfile.mkdtemp(prefix="resilience-chaos-"))
    started = time.time()
    with _job_server(job_server, True) as server:
        try:
            if owned_env:
                from airflow_resilience.testing import AirflowEnvironment
                from airflow_resilience.testing.harness import postgres_reachable

                want_pg = database == "postgres" or (database in (None, "auto") and postgres_reachable())
                if want_pg and (kinds is None or "db_restart" in kinds):
                    from airflow_resilience.testing.pgcluster import PrivatePostgres

                    private_pg = PrivatePostgres(settings={"max_connections": "200"}).start()
                af = AirflowEnvironment.create(
                    dags=[DRILL_DAGS, CONTROL_DAGS], database="postgres" if private_pg else database,
                    postgres_server=private_pg, parallelism=max(4, concurrency + 2),
                    config={"AIRFLOW_CONN_DATABRICKS_DEFAULT": server.airflow_connection(),
                            "AIRFLOW__SCHEDULER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10"})
                af.keep_alive()  # as a deployment's process supervisor: restarts a component that exits
            else:
                af.deploy(CONTROL_DAGS)
            if kinds is None:
                kinds = TASK_LEVEL + tuple(
                    k for k in CONTROL_PLANE
                    if (k != "db_restart" or getattr(af, "postgres_server", None) is not None)
                    and (k != "broker_restart" or (getattr(af, "redis_server", None) is not None and af.executor == "celery"))
                    and (k != "triggerer_kill" or server is not None))
            rng = random.Random(seed)
            calls: list[tuple[str, Callable[[], RunRecord]]] = []
            total = 0
            while total < disruptions:
                kind = rng.choice(kinds)
                if kind in CONTROL_PLANE:
                    at = round(rng.uniform(0.2, 0.7), 2)
                    ccfg = ControlConfig(items=cfg.items, seconds=cfg.seconds, job_duration=cfg.job_duration, at=at,
                                         run_timeout=cfg.run_timeout, grace=cfg.grace)
                    calls.append((f"chaos-{kind}", lambda kind=kind, ccfg=ccfg: run_control(
                        af, kind, workdir, job_server=server, config=ccfg, name=f"chaos-{kind}")))
                    total += 1
                    continue
                count = min(rng.choice((1, 2)), disruptions - total)
                workload = rng.choice(workloads)
                fractions = sorted(round(rng.uniform(0.15, 0.8), 2) for _ in range(count))
                sc = Scenario(kind, at=fractions[0], workload=workload, count=count, name=f"chaos-{kind}-{workload}")
                calls.append((sc.label, lambda sc=sc, fractions=fractions: run_one(
                    af, "ours", sc, cfg, workdir, job_server=server, at_fractions=fractions)))
                total += count
            runs, failed = _run_concurrently(calls, concurrency=concurrency, stagger=0.3, on_progress=on_progress)
        finally:
            if owned_env and af is not None:
                af.stop()
            if private_pg is not None:
                private_pg.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    control = attribute_control_plane(runs)
    meta = {
        "kind": "chaos",
        "seed": seed,
        "started_at": started,
        "duration_s": round(time.time() - started, 1),
        "database": af.database_kind if af is not None else database,
        "executor": getattr(af, "executor", "local"),
        "sides": ["ours"],
        "kinds": list(kinds or ()),
        "planned_disruptions": total,
        "disruptions": sum(1 for r in runs for d in r.disruptions if not d.get("overlap")),
        "control_plane_overlaps": control,
        "failed_runs": [f"{label}: {exc!r}" for label, exc in failed],
        **_config_meta(cfg),
    }
    runs.sort(key=lambda r: r.triggered_at)
    return DrillResult(meta, runs)


def attribute_control_plane(runs: list[RunRecord]) -> int:
    """Add each control-plane disruption to every other run in flight at that moment (``overlap: True``) and
    check those runs' invariants again with it counted; returns how many such overlaps there were."""
    from airflow_resilience.drills.control import CONTROL_PLANE
    from airflow_resilience.drills.model import check_invariants

    events = [(r.run_id, d) for r in runs for d in r.disruptions if d.get("kind") in CONTROL_PLANE and not d.get("overlap")]
    overlaps = 0
    for run in runs:
        end = max((a.end for a in run.attempts if a.end is not None), default=None)
        extra = [dict(d, overlap=True) for owner, d in events
                 if owner != run.run_id and d["at"] >= run.triggered_at and (end is None or d["at"] <= end)]
        if extra:
            overlaps += len(extra)
            run.disruptions = sorted(run.disruptions + extra, key=lambda d: d["at"])
            run.violations = check_invariants(run)
    return overlaps


def _airflow_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("apache-airflow")
    except Exception:
        return None
