"""Why an attempt ended: kinds, dotted reasons, and ``classify(evidence) -> FailureCause`` (pure).

Evidence is gathered at the edge (the task's own exception and signals, the supervisor's exit status, the
scheduler's view of a lost worker, Kubernetes pod conditions, cloud interruption notices, cgroup OOM
counters) into one frozen :class:`Evidence` value; :func:`classify` reads only that value. The same
:class:`FailureKind` and :class:`Reason` labels are used in logs, metrics, the ledger and ``retry_reason``.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field


class FailureKind(str, enum.Enum):
    """Who is to blame for a failed attempt."""

    APPLICATION = "application"
    INFRASTRUCTURE = "infrastructure"
    TIMEOUT = "timeout"
    MANUAL = "manual"
    UNKNOWN = "unknown"


class Reason(str, enum.Enum):
    """Dotted reasons (a compatibility contract: they appear in metrics tags and stored ledgers)."""

    APP_EXCEPTION = "app.exception"
    K8S_EVICTION = "k8s.eviction"
    K8S_PREEMPTION = "k8s.preemption"
    K8S_TAINT = "k8s.taint_eviction"
    K8S_DELETED = "k8s.pod_deleted"
    K8S_DISRUPTION = "k8s.disruption"
    NODE_DRAIN = "node.drain"
    SPOT_INTERRUPTION = "spot.interruption"
    MAINTENANCE = "cloud.maintenance"
    WORKER_LOST = "worker.lost"
    OOM_KILLED = "oom.killed"
    SIGNAL_SIGTERM = "signal.sigterm"
    SIGNAL_SIGKILL = "signal.sigkill"
    SIGNAL_OTHER = "signal.other"
    EXECUTION_TIMEOUT = "timeout.execution"
    USER_MARKED = "user.marked_state"
    USER_CLEARED = "user.cleared"
    USER_DELETED_POD = "user.pod_deleted"
    UNKNOWN = "unknown"


#: Kubernetes ``DisruptionTarget`` condition reasons -> our reasons.
K8S_DISRUPTION_REASONS: dict[str, Reason] = {
    "EvictionByEvictionAPI": Reason.K8S_EVICTION,
    "PreemptionByScheduler": Reason.K8S_PREEMPTION,
    "PreemptionByKubeScheduler": Reason.K8S_PREEMPTION,
    "DeletionByTaintManager": Reason.K8S_TAINT,
    "DeletionByPodGC": Reason.K8S_DELETED,
    "TerminationByKubelet": Reason.NODE_DRAIN,
}


@dataclass(frozen=True)
class Evidence:
    """Everything known about how an attempt ended. Every field is optional (``None`` = not observed)."""

    #: Qualified name of the exception the task raised, if it raised one.
    exception: str | None = None
    #: The task exceeded ``execution_timeout`` (``AirflowTaskTimeout``).
    execution_timeout: bool = False
    #: State a user set on the running task instance (``failed``/``success``), if any.
    user_marked_state: str | None = None
    #: Signal the task process received while running (e.g. 15 for SIGTERM).
    received_signal: int | None = None
    #: Signal the task runner was killed by, from its exit status (e.g. 9 for SIGKILL).
    exit_signal: int | None = None
    #: Increase of the cgroup's ``oom_kill`` counter during the attempt.
    oom_kills: int | None = None
    #: Kubernetes ``DisruptionTarget`` condition reason of the task's pod.
    k8s_disruption: str | None = None
    #: The pod has a deletion timestamp (it is being deleted).
    k8s_deleting: bool = False
    #: The pod's node was cordoned (``spec.unschedulable``) when the pod was disrupted: a drain.
    k8s_node_cordoned: bool = False
    #: A cloud interruption notice: ``"aws:terminate"``, ``"aws:stop"``, ``"gcp:preempted"``,
    #: ``"gcp:maintenance"``, ``"azure:Preempt"``, ``"azure:Terminate"``, ...
    cloud_notice: str | None = None
    #: The scheduler found the worker gone (dead process, missing heartbeats) with positive evidence.
    worker_lost: bool = False
    #: The scheduler's heartbeat timeout fired (no positive evidence of what happened).
    heartbeat_timeout: bool = False
    #: Free-form facts for the ledger and logs (``source -> fact``).
    notes: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FailureCause:
    """Why an attempt ended."""

    kind: FailureKind
    reason: Reason
    #: One line saying which evidence decided, for logs, ``retry_reason`` and the ledger.
    summary: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "reason": self.reason.value, "summary": self.summary}

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> FailureCause:
        """Read a stored cause; labels written by a newer version read as ``unknown`` (never an error)."""
        try:
            kind = FailureKind(raw["kind"])
        except ValueError:
            kind = FailureKind.UNKNOWN
        try:
            reason = Reason(raw["reason"])
        except ValueError:
            reason = Reason.UNKNOWN
        return cls(kind=kind, reason=reason, summary=raw.get("summary", ""))


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _cloud_reason(notice: str) -> Reason:
    provider, _, action = notice.partition(":")
    if provider == "gcp" and action == "maintenance":
        return Reason.MAINTENANCE
    if provider == "azure" and action in {"Reboot", "Redeploy", "Freeze"}:
        return Reason.MAINTENANCE
    return Reason.SPOT_INTERRUPTION


def classify(ev: Evidence) -> FailureCause:
    """The cause of a failed attempt, from the most specific evidence available.

    Precedence: a user's hand (manual) > execution timeout > named infrastructure events (cloud notice,
    Kubernetes disruption, OOM kill) > a pod deleted by a client (manual) > a lost worker > a signal >
    an exception (application) > unknown.
    A user marking the task is checked first because it is what *sends* the SIGTERM in that case.
    """
    infra = FailureKind.INFRASTRUCTURE
    if ev.user_marked_state:
        return FailureCause(FailureKind.MANUAL, Reason.USER_MARKED, f"a user marked the task {ev.user_marked_state}")
    if ev.execution_timeout:
        return FailureCause(FailureKind.TIMEOUT, Reason.EXECUTION_TIMEOUT, "the task exceeded execution_timeout")
    if ev.cloud_notice:
        return FailureCause(infra, _cloud_reason(ev.cloud_notice), f"cloud interruption notice {ev.cloud_notice}")
    if ev.k8s_disruption:
        reason = K8S_DISRUPTION_REASONS.get(ev.k8s_disruption, Reason.K8S_DISRUPTION)
        if ev.k8s_node_cordoned and ev.k8s_disruption == "EvictionByEvictionAPI":
            return FailureCause(infra, Reason.NODE_DRAIN, "pod evicted (DisruptionTarget reason=EvictionByEvictionAPI) from a cordoned node: a drain")
        return FailureCause(infra, reason, f"pod condition DisruptionTarget reason={ev.k8s_disruption}")
    if ev.oom_kills is not None and ev.oom_kills > 0:
        return FailureCause(infra, Reason.OOM_KILLED, f"cgroup oom_kill counter rose by {ev.oom_kills}")
    if ev.k8s_deleting and not ev.worker_lost:
        # Every deletion by the cluster (eviction, preemption, taint manager, PodGC, kubelet) carries a
        # DisruptionTarget condition (GA since Kubernetes 1.31); one without it came from a client: a user.
        return FailureCause(FailureKind.MANUAL, Reason.USER_DELETED_POD, "the pod was deleted without a DisruptionTarget condition (a user or a client, not the cluster)")
    if ev.worker_lost:
        seen = "; ".join(fact for _source, fact in ev.notes if fact)[:300]
        return FailureCause(infra, Reason.WORKER_LOST, "the worker running the task is gone" + (f": {seen}" if seen else ""))
    if ev.received_signal == signal.SIGTERM or ev.exit_signal == signal.SIGTERM:
        return FailureCause(infra, Reason.SIGNAL_SIGTERM, "the task was sent SIGTERM (eviction, drain, shutdown)")
    if ev.exit_signal is not None:
        reason = Reason.SIGNAL_SIGKILL if ev.exit_signal == signal.SIGKILL else Reason.SIGNAL_OTHER
        return FailureCause(infra, reason, f"the task runner was killed by {_signame(ev.exit_signal)}")
    if ev.heartbeat_timeout:
        return FailureCause(infra, Reason.WORKER_LOST, "no heartbeat from the task within the heartbeat timeout")
    if ev.exception:
        return FailureCause(FailureKind.APPLICATION, Reason.APP_EXCEPTION, f"the task raised {ev.exception}")
    return FailureCause(FailureKind.UNKNOWN, Reason.UNKNOWN, "no evidence of why the attempt ended")
