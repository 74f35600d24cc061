"""Infrastructure-aware execution in the scheduler: judge hard losses, notice dead workers fast.

* :func:`on_server_side_failure` runs from the ``on_task_instance_failed`` listener when the scheduler
  fails a task instance itself (a heartbeat timeout, or the executor reporting a task that was still
  ``running``): the worker died without a word. It classifies the loss (``worker.lost``, with the
  lost-worker detector's positive evidence when there is some) and asks :func:`~airflow_resilience.judge.judge`.
  A grant raises this task instance's ``max_tries`` by one and makes it ``up_for_retry`` at the
  infrastructure delay (also for ``retries=0``); an exhausted budget fails it; the verdict lands in
  ``task_instance_history.retry_reason``. All of it happens in a SAVEPOINT of the scheduler's session: a
  failing statement of ours rolls back to it (the task instance keeps Airflow's own verdict), never the
  scheduler's transaction.
* :class:`LostWorkerDetector` runs in a child process of the scheduler. Every
  ``[resilience] lost_worker_check_interval`` seconds it looks at the running task instances on the
  scheduler's own host and checks that the supervisor each attempt recorded (PID and start time) is still
  alive. A supervisor positively known to be gone is evidence of a lost worker: the detector records it,
  kills an orphaned task runner, and backdates the task instance's heartbeat so the scheduler's own
  heartbeat-timeout handling takes it at its next check (``task_instance_heartbeat_timeout_detection_interval``)
  instead of after ``task_instance_heartbeat_timeout`` (300 s stock) — without lowering that timeout for
  everyone. A PID whose state cannot be read is *unknown*: nothing is done.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_resilience.budget import BudgetPolicy
from airflow_resilience.causes import Evidence, FailureCause, FailureKind, Reason, classify
from airflow_resilience.judge import Judgement, Outcome, judge
from airflow_resilience.ledger import LEDGER_KEY, Ledger
from airflow_resilience.signals.cgroup import oom_evidence, read_oom_kills
from airflow_resilience.signals.process import pid_alive
from airflow_resilience.airflow.ti_state import applies, read_json, task_scope, write_json

log = logging.getLogger(__name__)


def _evidence_for(try_number: int, attempt: dict, found: dict, error: Any, pod: dict | None = None) -> Evidence:
    """What the scheduler can tell about a task instance it is failing itself.

    ``pod``: what the try's Kubernetes pod said (:mod:`airflow_resilience.airflow.kubernetes`), if it ran in one.
    """
    import signal

    from airflow.utils.net import get_hostname

    if found.get("try_number") == try_number and found.get("worker_lost"):
        return Evidence(worker_lost=True, notes=(("scheduler", str(found.get("note", ""))),))
    if attempt.get("try_number") == try_number and attempt.get("k8s_pod") is not None:
        from airflow_resilience.signals import merge
        from airflow_resilience.signals.kubernetes import facts_evidence

        said = facts_evidence(pod) if pod and pod.get("try_number") == try_number else {}
        if said:
            summary = ", ".join(f"{k}={v}" for k, v in pod.items() if k not in ("try_number", "uid"))
            return merge(said, {"notes": (("kubernetes", summary[:300]),)})
        if "state attribute is" in str(error or ""):
            # The executor reported the pod failed and the pod said nothing we can use: no evidence.
            return Evidence(notes=(("kubernetes", f"pod {attempt.get('k8s_pod')} failed without a disruption, deletion or OOM kill on record"),))
        return Evidence(heartbeat_timeout=True, notes=(("scheduler", str(error or "")[:300]),))
    if attempt.get("try_number") == try_number and attempt.get("host") in {get_hostname(), _fqdn(), _short_host()}:
        started = attempt.get("started_at")
        supervisor_alive = pid_alive(attempt.get("supervisor_pid"), started)
        runner_alive = pid_alive(attempt.get("runner_pid"), started)
        if supervisor_alive is True and runner_alive is False:
            oom = oom_evidence(attempt.get("oom_kills"), read_oom_kills()).get("oom_kills")
            note = f"supervisor pid {attempt.get('supervisor_pid')} alive, task runner pid {attempt.get('runner_pid')} gone"
            return Evidence(exit_signal=signal.SIGKILL, oom_kills=oom, notes=(("scheduler", note),))
        if supervisor_alive is False:
            note = f"supervisor pid {attempt.get('supervisor_pid')} on {attempt.get('host')} is gone"
            return Evidence(worker_lost=True, notes=(("scheduler", note),))
    return Evidence(heartbeat_timeout=True, notes=(("scheduler", str(error or "")[:300]),))


def _fqdn() -> str:
    import socket

    return socket.getfqdn()


def _short_host() -> str:
    import socket

    return socket.gethostname()


def on_server_side_failure(ti: Any, error: Any, previous_state: Any = "running") -> None:
    """The scheduler (or the API server applying a user's change) is failing ``ti``: judge it."""
    from sqlalchemy.orm import object_session

    from airflow_resilience.airflow.accounting import bookkeeping_failed
    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    session = object_session(ti)
    if not cfg.enabled or session is None:
        return
    before = {name: getattr(ti, name, None) for name in ("state", "max_tries", "id", "retry_delay_override")}
    started = time.perf_counter()
    try:
        with session.begin_nested():  # ours fails alone: the scheduler's transaction is untouched
            if not applies(cfg, ti.dag_id, session):
                return
            _judge_and_apply(ti, error, previous_state, session, cfg)
    except Exception as exc:
        for name, value in before.items():  # Airflow's own verdict stands
            setattr(ti, name, value)
        bookkeeping_failed("scheduler listener", exc)
    finally:
        _observe_listener(time.perf_counter() - started)


def _observe_listener(seconds: float) -> None:
    from airflow_resilience.airflow import metrics

    metrics.timing("resilience.scheduler_listener", seconds * 1000)


def _judge_and_apply(ti: Any, error: Any, previous_state: Any, session: Any, cfg: Any) -> None:
    from sqlalchemy import update

    from airflow.models.log import Log
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.state import get_state_backend

    from airflow_resilience.airflow import accounting
    from airflow_resilience.airflow.accounting import ATTEMPT_KEY, EVIDENCE_KEY, budget_of, now
    from airflow_resilience.airflow.compat import reported_state_attribute
    from airflow_resilience.airflow.execution import attempt_had_checkpoint

    seen = reported_state_attribute(error)  # the state the executor's report found, when it says so
    user_cleared = seen == "restarting"
    if user_cleared:
        previous_state = None  # a user cleared the running task instance: manual, not a loss
    backend = get_state_backend()
    scope = task_scope(ti)
    try_number = int(ti.try_number)
    found = read_json(backend, scope, EVIDENCE_KEY, session) or {}
    # A workload taken by a worker that died before starting it: the Celery watch left this evidence.
    lost_while_queued = bool(found.get("worker_lost")) and found.get("try_number") == try_number
    if seen and seen not in {"running", "restarting"} and not (seen == "queued" and lost_while_queued):
        # The executor reported an earlier run of a task instance that is already queued again (for
        # example after a drain's reschedule): not a lost worker. Stock handling applies.
        log.info("airflow-resilience: %s: executor report for a task instance in state %s: not classified", ti.key, seen)
        return
    ledger = Ledger.from_json(read_json(backend, scope, LEDGER_KEY, session))
    attempt = read_json(backend, scope, ATTEMPT_KEY, session) or {}
    max_tries = int(ti.max_tries or 0)
    clear_number = getattr(getattr(ti, "dag_run", None), "clear_number", None)
    defaults = BudgetPolicy(infra_retries=cfg.infra_retries, breaker_threshold=cfg.breaker_threshold)
    if previous_state is None:
        # The API server applying a user's "mark failed", or a clear of the running task: manual.
        if user_cleared:
            cause = FailureCause(FailureKind.MANUAL, Reason.USER_CLEARED, "a user cleared the running task instance")
        else:
            cause = classify(Evidence(user_marked_state="failed"))
    else:
        if not (isinstance(attempt, dict) and attempt.get("try_number") == try_number) and not lost_while_queued:
            # No record of this try by our runner (the package is off or absent on its worker, or the try
            # never reached its start): nothing is known, Airflow's own verdict stands.
            return
        pod = None
        if attempt.get("k8s_pod") is not None:
            from airflow_resilience.airflow.kubernetes import K8S_KEY, live_pod_facts

            pod = read_json(backend, scope, K8S_KEY, session)
            if not (isinstance(pod, dict) and pod.get("try_number") == try_number):
                pod = live_pod_facts(ti)  # the executor's report came before the pod watch saw the pod
                if pod:
                    write_json(backend, scope, K8S_KEY, pod, session)  # kept with the verdict: the pod may go
        cause = classify(_evidence_for(try_number, attempt, found, error, pod))

    class _Store:  # attempt_had_checkpoint reads through a get(key)
        @staticmethod
        def get(key: str) -> Any:
            return read_json(backend, scope, key, session)

    judgement = judge(
        ledger, try_number=try_number, max_tries=max_tries, cause=cause,
        budget=budget_of(attempt, try_number, defaults), infra_retry_delay=cfg.infra_retry_delay, at=now(),
        clear_number=clear_number, checkpoint=attempt_had_checkpoint(_Store, try_number),
    )
    if not judgement.new:
        return  # judged before (by the failure gate or an earlier report): its verdict stands
    accounting.write(judgement, lambda key, value: write_json(backend, scope, key, value, session))
    if previous_state is None:
        return
    apply_to_task_instance(ti, judgement, session)
    reason = judgement.message[:500]
    pending = [
        h
        for h in session.new
        if isinstance(h, TaskInstanceHistory)
        and (h.dag_id, h.run_id, h.task_id, h.map_index, h.try_number)
        == (ti.dag_id, ti.run_id, ti.task_id, ti.map_index, try_number)
    ]
    for history in pending:  # archived in this transaction, not yet flushed
        history.retry_reason = reason
    if not pending:
        session.execute(
            update(TaskInstanceHistory)
            .where(
                TaskInstanceHistory.dag_id == ti.dag_id,
                TaskInstanceHistory.run_id == ti.run_id,
                TaskInstanceHistory.task_id == ti.task_id,
                TaskInstanceHistory.map_index == ti.map_index,
                TaskInstanceHistory.try_number == try_number,
            )
            .values(retry_reason=reason)
        )
    if judgement.outcome is Outcome.FAIL:
        # Visible in the UI's audit log of the task instance.
        session.add(Log(event="resilience_budget_exhausted", task_instance=ti, extra=judgement.message))
    log.warning("airflow-resilience: %s try %s: %s", ti.key, try_number, judgement.message)


def apply_to_task_instance(ti: Any, judgement: Judgement, session: Any) -> None:
    """Make the ORM task instance (being failed by Airflow, not yet saved) say what ``judgement`` says."""
    from airflow.utils.state import TaskInstanceState

    if judgement.outcome is Outcome.RETRY:
        ti.max_tries = max(int(ti.max_tries or 0), judgement.max_tries_after)
        if ti.state == TaskInstanceState.FAILED:
            # Airflow found no retry left (retries exhausted, or retries=0): archive this try as Airflow does
            # for a retry, then hand the task instance back for the granted one.
            ti.prepare_db_for_next_try(session)
            ti.state = TaskInstanceState.UP_FOR_RETRY
        if ti.state == TaskInstanceState.UP_FOR_RETRY:
            ti.retry_delay_override = judgement.retry_delay
            ti.retry_reason = judgement.message[:500]
    elif judgement.outcome is Outcome.FAIL:
        if ti.state == TaskInstanceState.UP_FOR_RETRY:
            ti.state = TaskInstanceState.FAILED
        ti.retry_reason = judgement.message[:500]


class LostWorkerDetector:
    """Check of the supervisors of running tasks on this host (see module docstring)."""

    #: Tag ``kind`` of the detector's metrics.
    kind = "local"

    def __init__(self, interval: float, heartbeat_timeout: float) -> None:
        self.interval = interval
        self.heartbeat_timeout = heartbeat_timeout
        #: Supervisors checked in the last round (``None`` until a round completes).
        self.seen: int | None = None

    def check(self) -> int:
        """One pass; returns how many lost workers were reported."""
        import os
        import signal

        from sqlalchemy import select

        from airflow.models.taskinstance import TaskInstance
        from airflow.state import get_state_backend
        from airflow.utils.net import get_hostname
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        from airflow_resilience.airflow.execution import ATTEMPT_KEY, EVIDENCE_KEY

        self.seen = None
        host = get_hostname()
        backend = get_state_backend()
        found = 0
        checked = 0
        from airflow_resilience.airflow.runtime import settings

        cfg = settings()
        with create_session() as session:
            running = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.state == TaskInstanceState.RUNNING, TaskInstance.hostname == host
                )
            ).all()
            for ti in running:
                scope = task_scope(ti)
                attempt = read_json(backend, scope, ATTEMPT_KEY, session)
                if not isinstance(attempt, dict) or attempt.get("try_number") != ti.try_number:
                    continue
                if cfg.selective_enable and not applies(cfg, ti.dag_id, session):
                    continue
                checked += 1
                started = attempt.get("started_at")
                supervisor, runner = attempt.get("supervisor_pid"), attempt.get("runner_pid")
                if pid_alive(supervisor, started) is not False:
                    continue  # alive, or unknown: no action without positive evidence
                runner_alive = pid_alive(runner, started) is True
                if runner_alive:
                    try:  # an orphaned runner has nobody to report to; stop it before the next attempt
                        os.kill(int(runner), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError, ValueError, TypeError):
                        pass
                note = (
                    f"supervisor pid {supervisor} on {host} is gone; task runner pid {runner} "
                    + ("was orphaned and has been killed" if runner_alive else "is gone")
                )
                write_json(
                    backend,
                    scope,
                    EVIDENCE_KEY,
                    {"try_number": ti.try_number, "worker_lost": True, "note": note, "detected_at": time.time()},
                    session,
                )
                ti.last_heartbeat_at = datetime.now(timezone.utc) - timedelta(seconds=self.heartbeat_timeout + 60)
                log.warning("airflow-resilience: lost worker for %s: %s", ti.key, note)
                found += 1
        self.seen = checked
        return found


_detector: Any = None


def is_scheduler_process(argv: list[str] | None = None) -> bool:
    """True in the ``airflow scheduler`` process (where ``on_starting`` cannot tell yet: Airflow calls it
    from ``Job.__init__``, before the job runner sets ``job_type``)."""
    import sys

    argv = sys.argv if argv is None else argv
    # `airflow scheduler`, or `python -m airflow scheduler` (argv[0] is then airflow/__main__.py)
    first = os.path.basename(argv[0]) if argv else ""
    launcher = first == "airflow" or (first == "__main__.py" and os.path.basename(os.path.dirname(argv[0])) == "airflow")
    return len(argv) >= 2 and launcher and argv[1] == "scheduler"


def start_detector() -> None:
    """Start the detector as a child *process* of the scheduler.

    Not a thread: the scheduler forks LocalExecutor workers, and a thread of ours holding a lock at the
    moment of a fork would leave that lock held forever in the worker and in every task it runs.
    """
    global _detector
    import subprocess
    import sys

    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    if not cfg.enabled or cfg.lost_worker_check_interval <= 0 or _detector is not None:
        return
    _detector = subprocess.Popen(
        [sys.executable, "-m", "airflow_resilience.airflow.scheduler", "--parent", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    log.info("airflow-resilience: lost-worker detector started (pid %s, every %ss)", _detector.pid, cfg.lost_worker_check_interval)


def stop_detector() -> None:
    global _detector
    if _detector is not None:
        _detector.terminate()
        try:
            _detector.wait(timeout=5)
        except Exception:
            _detector.kill()
        _detector = None


def main(argv: list[str] | None = None) -> int:
    """Entry of the detector process: check every interval until the scheduler (``--parent``) is gone."""
    import argparse
    import signal

    from airflow.configuration import conf

    from airflow_resilience.airflow.runtime import settings

    parser = argparse.ArgumentParser(prog="airflow-resilience-lost-worker-detector")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys_exit())
    cfg = settings()
    heartbeat_timeout = conf.getfloat("scheduler", "task_instance_heartbeat_timeout", fallback=300)
    detectors = detectors_for(cfg, heartbeat_timeout)
    if not detectors:
        return 0
    from airflow_resilience.airflow import metrics

    metrics.initialize_here()  # a process of ours: Airflow did not set up its Stats here
    while os.getppid() == args.parent:
        run_round(detectors)
        time.sleep(cfg.lost_worker_check_interval)
    return 0


def run_round(detectors: list, clock: Any = time.monotonic, wall: Any = time.time) -> None:
    """One check by each detector, and the detector's health metrics (from what the round saw already: no
    extra database or broker request)."""
    from airflow_resilience.airflow import metrics

    started = clock()
    for detector in detectors:
        kind = getattr(detector, "kind", type(detector).__name__)
        try:
            lost = detector.check()
        except Exception:
            log.exception("airflow-resilience: %s check failed", type(detector).__name__)
            metrics.incr("resilience.detector.errors", kind=kind)
            continue
        if isinstance(lost, int) and lost > 0:
            metrics.incr("resilience.detector.lost", lost, kind=kind)
        seen = getattr(detector, "seen", None)
        if seen is not None:
            metrics.gauge("resilience.detector.workers_seen", seen, kind=kind)
    metrics.gauge("resilience.detector.round_duration", (clock() - started) * 1000)
    metrics.gauge("resilience.detector.last_round", wall())


def detectors_for(cfg: Any, heartbeat_timeout: float) -> list:
    """One detector per executor the scheduler runs (``[core] executor`` may name several)."""
    from airflow.configuration import conf

    from airflow_resilience.airflow.celery_watch import CeleryWorkerWatch
    from airflow_resilience.airflow.kubernetes import KubernetesPodWatch

    names = [n.strip().rsplit(".", 1)[-1].split(":")[-1] for n in (conf.get("core", "executor", fallback="") or "").split(",") if n.strip()]
    detectors: list = []
    if not names or any(n not in ("CeleryExecutor", "KubernetesExecutor") for n in names):
        # Executors whose supervisors run on the scheduler's host (LocalExecutor); elsewhere it finds none.
        detectors.append(LostWorkerDetector(cfg.lost_worker_check_interval, heartbeat_timeout))
    if "CeleryExecutor" in names and cfg.celery_worker_lost_after > 0:
        # Workers are other machines: their PIDs mean nothing here; ask them through the broker.
        detectors.append(CeleryWorkerWatch(cfg.celery_worker_lost_after, heartbeat_timeout, interval=cfg.lost_worker_check_interval))
        log.info("airflow-resilience: watching celery workers through the broker (lost after %ss)", cfg.celery_worker_lost_after)
    if any(n in ("KubernetesExecutor", "LocalKubernetesExecutor") for n in names):
        detectors.append(KubernetesPodWatch(cfg.kubernetes_node_lost_after, heartbeat_timeout, interval=cfg.lost_worker_check_interval))
        log.info("airflow-resilience: watching the executor's pods (node lost after %ss)", cfg.kubernetes_node_lost_after)
    return detectors


def sys_exit() -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
