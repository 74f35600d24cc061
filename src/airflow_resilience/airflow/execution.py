"""Infrastructure-aware execution in the task runner: attempt start and the SIGTERM drain.

Installed on the tasks it applies to by the task policy (:mod:`airflow_resilience.airflow.policy`):

* ``pre_execute`` -> :func:`on_attempt_start`: records this attempt in the state store (pids, host, cgroup
  OOM counter, its budget) — the record that lets the API server's failure gate tell a runner that died
  without a word (killed by a signal or the OOM killer) from one that reported its own failure — and logs
  what the previous attempts went through. An error there is logged once and the task runs as stock
  Airflow would: no record, no drain.
* ``execute`` -> wrapped by :func:`wrap_execute`: a SIGTERM raises :class:`DrainRequested` in the main
  thread; the wrapper writes the checkpoint, checks with the API server that the task instance is still
  ``running`` (a user marking it failed/success also ends in SIGTERM: that is ``manual`` and is not
  drained), records the cause as ``pending`` in the ledger and raises :class:`InfrastructureInterruption`.
  The runner then reports a failure as usual; the failure gate on the API server judges it
  (:mod:`airflow_resilience.airflow.gate`) and grants the next try from the infrastructure budget.

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

from typing import TYPE_CHECKING

from airflow_resilience.airflow import metrics
from airflow_resilience.airflow.compat import SUPERVISOR_MODULES
from airflow_resilience.airflow.accounting import (
    ATTEMPT_KEY,
    ENDING_VERDICTS,
    EVIDENCE_KEY,
    LEDGER_KEY,
    bookkeeping_failed,
    metric,
    now,
)
from airflow_resilience.signals.cgroup import read_oom_kills

if TYPE_CHECKING:
    from airflow_resilience.causes import Evidence, FailureCause

# Every task start imports this module: the pure core (causes, ledger, judge) is imported where a failure
# is handled, not here.
log = logging.getLogger(__name__)

__all__ = ["ATTEMPT_KEY", "ENDING_VERDICTS", "EVIDENCE_KEY", "metric"]


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
def runner_store(ti: Any, *, retrying: bool = True):
    from airflow_resilience.airflow.store import TaskStateStore

    return TaskStateStore.for_task_instance(ti, retrying=retrying)


def bookkeeping_store(ti: Any):
    """The state store for the package's own records: one try per call (no retrying), and the
    ``bookkeeping_retention_days`` retention on every write."""
    from airflow_resilience.airflow.runtime import settings

    store = runner_store(ti, retrying=False)
    days = settings().bookkeeping_retention_days

    class _Bookkeeping:
        get = staticmethod(store.get)

        @staticmethod
        def set(key: str, value: Any) -> None:
            store.set(key, value, retention_days=days)

    return _Bookkeeping


def attempt_had_checkpoint(store: Any, try_number: int) -> bool:
    from airflow_resilience.attempt import HEAD_KEY

    try:
        head = store.get(HEAD_KEY)
    except Exception:
        return False
    return isinstance(head, dict) and head.get("try_number") == try_number


def _now() -> str:
    return now()


def budget_numbers(policy: Any) -> dict[str, int]:
    """The task's budget as recorded at attempt start (validated where it is used)."""
    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    mine = getattr(policy, "infra_retries", None), getattr(policy, "breaker_threshold", None)
    return {
        "infra_retries": cfg.infra_retries if mine[0] is None else mine[0],
        "breaker_threshold": cfg.breaker_threshold if mine[1] is None else mine[1],
    }


def budget_for(policy: Any):
    """The infra budget of a task: its ``InfraRetryPolicy``'s, with ``[resilience]`` defaults."""
    from airflow_resilience.airflow.runtime import settings
    from airflow_resilience.budget import BudgetPolicy

    cfg = settings()
    defaults = BudgetPolicy(infra_retries=cfg.infra_retries, breaker_threshold=cfg.breaker_threshold)
    return policy.budget(defaults) if hasattr(policy, "budget") else defaults


def clear_number_of(context: Any) -> int | None:
    try:
        value = getattr(context.get("dag_run"), "clear_number", None)
        return int(value) if value is not None else None
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------- start
def on_attempt_start(task: Any, context: Any) -> None:
    """``pre_execute`` of every task it applies to: record this attempt; never fails the task."""
    from airflow_resilience.airflow.runtime import settings

    _state.draining = False  # a new attempt (a reschedule re-enters in the same process kind)
    ti = context["ti"]
    try_number = int(ti.try_number)
    try:
        store = bookkeeping_store(ti)
        record = {
            "try_number": try_number,
            "runner_pid": os.getpid(),
            "supervisor_pid": os.getppid(),
            "host": socket.gethostname(),  # not getfqdn(): a DNS lookup (~5 ms) on every task start
            "started_at": time.time(),
            "oom_kills": read_oom_kills(),
            "max_tries": int(getattr(ti, "max_tries", 0) or 0),
            "budget": budget_numbers(task.retry_policy),
        }
        if os.environ.get("KUBERNETES_SERVICE_HOST"):  # in a pod: HOSTNAME is the pod's name
            record["k8s_pod"] = os.environ.get("HOSTNAME", "")
        store.set(ATTEMPT_KEY, record)
    except Exception as exc:
        bookkeeping_failed("attempt record", exc)
        return
    _recorded[str(ti.id)] = record
    if try_number > 1:  # a first try has no history to tell (one state-store call saved per task)
        from airflow_resilience.ledger import Ledger

        try:
            ledger = Ledger.from_json(store.get(LEDGER_KEY))
        except Exception as exc:
            bookkeeping_failed("ledger read", exc)
            ledger = Ledger()
        if ledger.attempts:
            last = ledger.attempts[-1]
            log.info(
                "airflow-resilience: attempt %s follows %d recorded failure(s); last: try %s %s/%s (%s)",
                try_number, len(ledger.attempts), last.try_number, last.cause.kind.value, last.cause.reason.value,
                last.verdict,
            )
            _observe_recovery(ledger, try_number)
    if settings().drain_on_sigterm:
        install_drain_handler()


def recovery_ms(ledger: Any, try_number: int, now: datetime | None = None) -> tuple[float, Any] | None:
    """Milliseconds from the recorded failure of the previous try to now, and that try's cause, when the
    previous try was granted from the infrastructure budget; ``None`` otherwise (or without a usable time)."""
    previous = ledger.record_for(try_number - 1)
    if previous is None or previous.verdict != "grant" or previous.cause.kind.value != "infrastructure":
        return None
    try:
        at = datetime.fromisoformat(previous.at)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    elapsed = ((now or datetime.now(timezone.utc)) - at).total_seconds() * 1000
    return max(0.0, elapsed), previous.cause  # a clock behind the API server's reads as 0, not negative


def _observe_recovery(ledger: Any, try_number: int) -> None:
    """``resilience.recovery``: how long the task instance took to run again after an infrastructure loss."""
    try:
        found = recovery_ms(ledger, try_number)
    except Exception:
        return
    if found is not None:
        elapsed, cause = found
        metrics.timing("resilience.recovery", elapsed, reason=cause.reason)


#: The attempt record this process wrote, per task instance id (so ending it costs one write, no read).
_recorded: dict[str, dict] = {}


def mark_attempt_ended(ti: Any, state: str) -> None:
    """Note in the attempt record that this try reported its failure itself (so the failure gate does not
    take it for a silent death). One write; best effort: after a retry the task instance id has moved on
    and the write is refused. A success needs no mark (the gate judges failure reports only)."""
    current = _recorded.get(str(ti.id))
    if current is None or current.get("ended") or current.get("try_number") != int(ti.try_number):
        return
    try:
        ended = {**current, "ended": state}
        bookkeeping_store(ti).set(ATTEMPT_KEY, ended)
        _recorded[str(ti.id)] = ended
    except Exception:
        log.debug("attempt end not recorded", exc_info=True)


# ---------------------------------------------------------------------------------------------- drain
_state = threading.local()

#: Modules in which a SIGTERM must not raise, wherever they are on the stack: the task would be interrupted
#: in the middle of a request to its supervisor (the reply would then be read by the next request), of a log
#: write or of an import. (A user's own ``httpx`` call is interruptible: only ours are listed.)
UNSAFE_MODULES = (
    *SUPERVISOR_MODULES,
    "airflow_resilience.airflow.store",
    "airflow_resilience.airflow.watermark_client",
    "airflow_resilience.airflow.metrics",
    "structlog",
    "logging",
    "msgspec",
    "importlib",
)
#: Modules in which a SIGTERM must not raise when they are the innermost frame: the package's own code
#: between a user function returning and its result being saved (``step()``), while user code these
#: modules call stays interruptible. (Not the operators' module: its polling loop sleeps in its own frame
#: and must drain.) Neither module waits in its own frames.
OWN_MODULES = ("airflow_resilience.checkpoint", "airflow_resilience.resumable")


def _unsafe_to_interrupt(frame: Any) -> bool:
    """True when ``frame`` (where the signal landed) is inside a request, a log write, an import, a
    critical section of the package, or the package's own code.

    Only the frames inside the task's ``execute`` count: the task runner was forked from the supervisor's
    code, so the supervisor's module is always at the bottom of its stack.
    """
    from airflow_resilience import critical

    if critical.active():
        return True
    if frame is not None and (frame.f_globals.get("__name__", "") or "").startswith(OWN_MODULES):
        return True
    stop = getattr(_state, "execute_frame", None)
    while frame is not None and frame is not stop:
        name = frame.f_globals.get("__name__", "") or ""
        if name.startswith(UNSAFE_MODULES):
            return True
        frame = frame.f_back
    return False


class _Redeliverer:
    """A daemon thread, started with the handler (never from it), that delivers a deferred SIGTERM again
    50 ms later when it landed in a request or a log write (critical sections redeliver themselves)."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="airflow-resilience-drain", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from airflow_resilience import critical

        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(0.05)
            if not critical.active() and critical.take_pending():
                os.kill(os.getpid(), signal.SIGTERM)


_redeliverer: _Redeliverer | None = None


def install_drain_handler() -> None:
    global _redeliverer
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if getattr(current, "_airflow_resilience_drain", False):
        return
    if _redeliverer is None:
        _redeliverer = _Redeliverer()
    redeliverer = _redeliverer
    previous = current

    def on_term(signum, frame):
        from airflow_resilience import context, critical

        for ckpt in context.open_checkpoints():
            ckpt.request_flush()
        if getattr(_state, "draining", False):
            return
        if not getattr(_state, "in_execute", False):
            # Outside execute (XCom push, post_execute, the retry policy...): no drain, stock behaviour.
            if callable(previous):
                previous(signum, frame)
            return
        if _unsafe_to_interrupt(frame):
            critical.defer()  # delivered again when the section ends, or 50 ms later
            redeliverer.wake.set()
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

    from airflow_resilience.causes import Evidence, classify

    ti = context["ti"]
    try:
        runtime.flush_open_checkpoints()
    except Exception:
        log.exception("airflow-resilience: could not write the checkpoint while draining")
    running = _still_running(ti)
    if running is False:
        cause = classify(Evidence(user_marked_state="failed/success", received_signal=signal.SIGTERM))
        _record_manual(ti, context, cause)
        log.warning("airflow-resilience: SIGTERM after a user changed the task state: not drained (manual)")
        try:
            task.on_kill()
        except Exception:
            log.exception("airflow-resilience: on_kill() raised during a manual stop")
        raise AirflowFailException("task stopped: a user changed its state while it was running (manual)")
    cause = classify(_sigterm_evidence())
    _record_pending(ti, context, cause)
    log.warning(
        "airflow-resilience: drained on SIGTERM (%s/%s): checkpoint written, handing the task back to "
        "Airflow; the API server pays the next attempt from the infrastructure budget",
        cause.kind.value, cause.reason.value,
    )
    raise InfrastructureInterruption(cause)


def hand_back(context: Any, cause: FailureCause) -> None:
    """End this try as the infrastructure's doing, as a drain does: ``cause`` is recorded for the failure gate
    (which grants the next try from the infrastructure budget, or fails the task when it is exhausted) and
    :class:`InfrastructureInterruption` is raised. For operators that see their own workload disrupted
    (a workload pod evicted): only with positive evidence."""
    _record_pending(context["ti"], context, cause)
    raise InfrastructureInterruption(cause)


def _record_pending(ti: Any, context: Any, cause: FailureCause) -> None:
    """The drained try's cause, for the failure gate to judge when the failure is reported."""
    from airflow_resilience.judge import pending
    from airflow_resilience.ledger import Ledger

    try:
        store = bookkeeping_store(ti)
        ledger = Ledger.from_json(store.get(LEDGER_KEY))
        try_number = int(ti.try_number)
        store.set(
            LEDGER_KEY,
            pending(
                ledger, try_number=try_number, cause=cause, max_tries=int(getattr(ti, "max_tries", 0) or 0),
                at=_now(), clear_number=clear_number_of(context), checkpoint=attempt_had_checkpoint(store, try_number),
            ).to_json(),
        )
    except Exception as exc:
        bookkeeping_failed("drain record", exc)


def _record_manual(ti: Any, context: Any, cause: FailureCause) -> None:
    from airflow_resilience.airflow import accounting
    from airflow_resilience.airflow.runtime import settings
    from airflow_resilience.judge import judge
    from airflow_resilience.ledger import Ledger

    try:
        store = bookkeeping_store(ti)
        ledger = Ledger.from_json(store.get(LEDGER_KEY))
        try_number = int(ti.try_number)
        judgement = judge(
            ledger, try_number=try_number, max_tries=int(getattr(ti, "max_tries", 0) or 0), cause=cause,
            budget=budget_for(getattr(ti.task, "retry_policy", None)), infra_retry_delay=settings().infra_retry_delay,
            at=_now(), clear_number=clear_number_of(context),
        )
        accounting.write(judgement, store.set)
    except Exception as exc:
        bookkeeping_failed("manual record", exc)


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
