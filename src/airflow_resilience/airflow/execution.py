"""Infrastructure-aware execution in the task runner: attempt start, SIGTERM drain, silent deaths.

Installed on every task by the task policy (:mod:`airflow_resilience.airflow.policy`):

* ``pre_execute`` -> :func:`on_attempt_start`: records this attempt (pids, host, cgroup OOM counter) in
  the state store; if the *previous* try ended without a word from its runner (killed by a signal or the
  OOM killer — its supervisor reported the failure), classifies it, asks the budget, and records it in
  the ledger; an exhausted budget fails the task here, with the message.
* ``execute`` -> wrapped by :func:`wrap_execute`: a SIGTERM raises :class:`DrainRequested` in the main
  thread; the wrapper writes the checkpoint, checks with the API server that the task instance is still
  ``running`` (a user marking it failed/success also ends in SIGTERM: that is ``manual`` and is not
  drained) and raises :class:`InfrastructureInterruption`, which the retry policy pays from the
  infrastructure budget: a new try within ``infra_retry_delay`` seconds, ``retries`` untouched.

  (Not a reschedule: a rescheduled task instance keeps its try number, so the executor's late report of
  the drained run is attributed to the next run and Airflow fails it — seen in testing whenever the
  drained run's supervisor took longer to wrap up than the reschedule delay.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

from airflow_resilience.budget import Verdict, decide
from airflow_resilience.causes import Evidence, FailureCause, classify
from airflow_resilience.ledger import LEDGER_KEY, AttemptRecord, Ledger
from airflow_resilience.signals.cgroup import oom_evidence, read_oom_kills

log = logging.getLogger(__name__)

ATTEMPT_KEY = "resilience:attempt"
#: Ledger verdicts that end a try.
ENDING_VERDICTS = frozenset({"grant", "stock", "exhausted", "manual"})
EVIDENCE_KEY = "resilience:evidence"


class InfrastructureInterruption(Exception):
    """The attempt was stopped by the infrastructure (a SIGTERM drain) after writing its checkpoint.

    Raised out of ``execute``; :class:`~airflow_resilience.airflow.retry_policy.InfraRetryPolicy`
    recognises it and pays the next attempt from the infrastructure budget (a new try, ``retries``
    untouched), or fails the task when the budget is exhausted.
    """

    def __init__(self, cause: FailureCause) -> None:
        super().__init__(f"{cause.kind.value}/{cause.reason.value}: {cause.summary}")
        self.cause = cause


class DrainRequested(BaseException):
    """Raised in the task's main thread by the SIGTERM handler (a BaseException: user code's
    ``except Exception`` must not swallow it)."""


# ---------------------------------------------------------------------------------------------- helpers
def runner_store(ti: Any):
    from airflow_resilience.airflow.store import TaskStateStore

    return TaskStateStore.for_task_instance(ti)


def attempt_had_checkpoint(store: Any, try_number: int) -> bool:
    from airflow_resilience.attempt import HEAD_KEY

    try:
        head = store.get(HEAD_KEY)
    except Exception:
        return False
    return isinstance(head, dict) and head.get("try_number") == try_number


def metric(name: str, cause: FailureCause, **tags: str) -> None:
    """``resilience.<name>`` counter with ``kind``/``reason`` tags (never raises)."""
    try:
        from airflow.sdk.observability.stats import Stats

        Stats.incr(f"resilience.{name}", tags={"kind": cause.kind.value, "reason": cause.reason.value, **tags})
    except Exception:  # metrics must never change a task's outcome
        log.debug("metric resilience.%s not emitted", name, exc_info=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def budget_for(policy: Any):
    """The infra budget of a task: its ``InfraRetryPolicy``'s, with ``[resilience]`` defaults."""
    from airflow_resilience.airflow.runtime import settings
    from airflow_resilience.budget import BudgetPolicy

    cfg = settings()
    defaults = BudgetPolicy(infra_retries=cfg.infra_retries, breaker_threshold=cfg.breaker_threshold)
    return policy.budget(defaults) if hasattr(policy, "budget") else defaults


# ---------------------------------------------------------------------------------------------- start
def on_attempt_start(task: Any, context: Any) -> None:
    """``pre_execute`` of every task: classify a silent death of the previous try, record this one."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_resilience.airflow.runtime import settings

    ti = context["ti"]
    store = runner_store(ti)
    ledger = Ledger.from_json(store.get(LEDGER_KEY))
    previous = store.get(ATTEMPT_KEY)
    try_number = int(ti.try_number)
    max_tries = int(getattr(ti, "max_tries", 0) or 0)
    if (
        isinstance(previous, dict)
        and int(previous.get("try_number", try_number)) < try_number
        and not previous.get("ended")  # it reported its end (success, failure): not a silent death
        and previous.get("max_tries", max_tries) == max_tries  # a clear in between: a rerun, not a death
    ):
        prev_try = int(previous["try_number"])
        if not any(r.try_number == prev_try and r.verdict in ENDING_VERDICTS for r in ledger.attempts):
            oom = oom_evidence(previous.get("oom_kills"), read_oom_kills()).get("oom_kills")
            evidence = Evidence(
                exit_signal=signal.SIGKILL,
                oom_kills=oom,
                notes=(("runner", "the previous attempt's runner left no exit record; its supervisor reported the failure"),),
            )
            cause = classify(evidence)
            decision = decide(ledger.since_clear(max_tries), cause, budget_for(task.retry_policy))
            ledger = ledger.append(
                AttemptRecord(
                    prev_try, cause, decision.verdict.value, at=_now(),
                    checkpoint=attempt_had_checkpoint(store, prev_try), max_tries=max_tries,
                )
            )
            store.set(LEDGER_KEY, ledger.to_json())
            metric("failures", cause)
            metric("decisions", cause, verdict=decision.verdict.value)
            log.warning("airflow-resilience: try %s: %s", prev_try, decision.message)
            if decision.verdict is Verdict.EXHAUSTED:
                raise AirflowFailException(decision.message)
    store.set(
        ATTEMPT_KEY,
        {
            "try_number": try_number,
            "runner_pid": os.getpid(),
            "supervisor_pid": os.getppid(),
            "host": socket.getfqdn(),
            "started_at": time.time(),
            "oom_kills": read_oom_kills(),
            "max_tries": max_tries,
            "budget": {
                "infra_retries": (b := budget_for(task.retry_policy)).infra_retries,
                "breaker_threshold": b.breaker_threshold,
            },
        },
    )
    if ledger.attempts:
        last = ledger.attempts[-1]
        log.info(
            "airflow-resilience: attempt %s follows %d recorded failure(s); last: try %s %s/%s (%s)",
            try_number, len(ledger.attempts), last.try_number, last.cause.kind.value, last.cause.reason.value, last.verdict,
        )
    if settings().drain_on_sigterm:
        install_drain_handler()


def mark_attempt_ended(ti: Any, state: str) -> None:
    """Note in the attempt record that this try reported its end (so the next one does not take it for a
    silent death). Best effort: after a retry the task instance id has moved on and the write is refused."""
    try:
        store = runner_store(ti)
        current = store.get(ATTEMPT_KEY)
        if isinstance(current, dict) and current.get("try_number") == int(ti.try_number):
            store.set(ATTEMPT_KEY, {**current, "ended": state})
    except Exception:
        log.debug("attempt end not recorded", exc_info=True)


# ---------------------------------------------------------------------------------------------- drain
_state = threading.local()
_in_store_call = 0
_redelivery: threading.Timer | None = None

#: Modules in which a SIGTERM must not raise: the task would be interrupted in the middle of a request to
#: its supervisor (the reply would then be read by the next request) or of a log write.
UNSAFE_MODULES = (
    "airflow.sdk.execution_time.comms",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.api",
    "airflow_resilience.airflow.store",
    "airflow_resilience.airflow.watermark_client",
    "httpx",
    "structlog",
    "logging",
    "msgspec",
    "importlib",
)


def store_call_started() -> None:
    global _in_store_call
    _in_store_call += 1


def store_call_finished() -> None:
    global _in_store_call
    _in_store_call -= 1


def _unsafe_to_interrupt(frame: Any) -> bool:
    """True when ``frame`` (where the signal landed) is inside a request, a log write or an import.

    Only the frames inside the task's ``execute`` count: the task runner was forked from the supervisor's
    code, so the supervisor's module is always at the bottom of its stack.
    """
    if _in_store_call:
        return True
    stop = getattr(_state, "execute_frame", None)
    while frame is not None and frame is not stop:
        name = frame.f_globals.get("__name__", "") or ""
        if name.startswith(UNSAFE_MODULES):
            return True
        frame = frame.f_back
    return False


def install_drain_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if getattr(current, "_airflow_resilience_drain", False):
        return

    previous = current

    def on_term(signum, frame):
        global _redelivery
        from airflow_resilience.airflow import runtime

        for ckpt in list(runtime._open_checkpoints):
            ckpt.request_flush()
        if getattr(_state, "draining", False):
            return
        if not getattr(_state, "in_execute", False):
            # Outside execute (XCom push, post_execute, the retry policy...): no drain, stock behaviour.
            if callable(previous):
                previous(signum, frame)
            return
        if _unsafe_to_interrupt(frame):
            # Not in the middle of a supervisor request or a log write: deliver it again in 50 ms.
            if _redelivery is None or not _redelivery.is_alive():
                _redelivery = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
                _redelivery.daemon = True
                _redelivery.start()
            return
        _state.draining = True
        raise DrainRequested()

    on_term._airflow_resilience_drain = True  # type: ignore[attr-defined]
    on_term._airflow_resilience = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, on_term)


def _still_running(ti: Any) -> bool | None:
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index)
        state = (states.get(ti.run_id) or {}).get(ti.task_id)
        return None if state is None else str(state) in {"running", "TaskInstanceState.RUNNING"}
    except Exception:
        log.debug("could not read the task instance state", exc_info=True)
        return None


def wrap_execute(task: Any) -> None:
    """Wrap ``execute`` so that a :class:`DrainRequested` becomes a drain.

    The runner executes a *copy* of the parsed task (``prepare_for_execution``), with templates
    rendered; the wrapper finds that copy through ``context["ti"].task`` and calls the class's
    ``execute`` on it, never the method bound to the parsed original.
    """
    if getattr(task.__dict__.get("execute"), "_airflow_resilience", False):
        return
    cls_execute = type(task).execute

    def execute(*args: Any, **kwargs: Any) -> Any:
        context = kwargs.get("context") if "context" in kwargs else (args[0] if args else None)
        target = getattr(context["ti"], "task", None) if context is not None else None
        target = target if target is not None else task
        _state.in_execute = True
        _state.execute_frame = sys._getframe()
        try:
            return cls_execute(target, *args, **kwargs)
        except DrainRequested:
            _state.in_execute = False
            return _drain(target, context)
        finally:
            _state.in_execute = False
            _state.execute_frame = None
            _flush_before_terminal_state()

    execute._airflow_resilience = True  # type: ignore[attr-defined]
    task.execute = execute


def _flush_before_terminal_state() -> None:
    """Write pending checkpoint progress before the runner reports the end of the attempt: once a retry
    is reported, the task instance id moves on and a later write would be refused."""
    from airflow_resilience.airflow import runtime
    from airflow_resilience.errors import StaleAttemptError

    try:
        runtime.flush_open_checkpoints()
    except StaleAttemptError:
        pass
    except Exception:
        log.exception("airflow-resilience: could not write the checkpoint at the end of execute")


def _drain(task: Any, context: Any) -> Any:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_resilience.airflow import runtime

    ti = context["ti"]
    try:
        runtime.flush_open_checkpoints()
    except Exception:
        log.exception("airflow-resilience: could not write the checkpoint while draining")
    running = _still_running(ti)
    store = runner_store(ti)
    if running is False:
        cause = classify(Evidence(user_marked_state="failed/success", received_signal=signal.SIGTERM))
        _record(store, ti, cause, "manual")
        log.warning("airflow-resilience: SIGTERM after a user changed the task state: not drained (manual)")
        try:
            task.on_kill()
        except Exception:
            log.exception("airflow-resilience: on_kill() raised during a manual stop")
        raise AirflowFailException("task stopped: a user changed its state while it was running (manual)")
    cause = classify(_sigterm_evidence())
    log.warning(
        "airflow-resilience: drained on SIGTERM (%s/%s): checkpoint written, handing the task back to "
        "Airflow for a new attempt paid from the infrastructure budget", cause.kind.value, cause.reason.value,
    )
    raise InfrastructureInterruption(cause)


def _sigterm_evidence() -> Evidence:
    """What a SIGTERM came from: the pod's disruption condition, a cloud notice, or just the signal."""
    from airflow_resilience.airflow.runtime import settings
    from airflow_resilience.signals import merge
    from airflow_resilience.signals.cloud import read_cloud_notices
    from airflow_resilience.signals.kubernetes import read_pod_disruption

    parts: list[dict] = [{"received_signal": signal.SIGTERM}]
    try:
        parts.append(read_pod_disruption())
        providers = settings().cloud_providers
        if providers:
            parts.append(read_cloud_notices(providers, enabled=True))
    except Exception:  # evidence readers degrade to "no evidence"
        log.debug("evidence readers failed", exc_info=True)
    return merge(*parts)


def _record(store: Any, ti: Any, cause: FailureCause, verdict: str) -> None:
    try:
        ledger = Ledger.from_json(store.get(LEDGER_KEY))
        if any(r.try_number == int(ti.try_number) and r.verdict == verdict == "manual" for r in ledger.attempts):
            return  # the API server recorded the user's change already
        record = AttemptRecord(
            int(ti.try_number), cause, verdict, at=_now(),
            checkpoint=attempt_had_checkpoint(store, int(ti.try_number)),
            max_tries=int(getattr(ti, "max_tries", 0) or 0),
        )
        store.set(LEDGER_KEY, ledger.append(record).to_json())
        metric("failures", cause)
        metric("decisions", cause, verdict=verdict)
    except Exception:
        log.exception("airflow-resilience: could not record the %s in the ledger", verdict)
