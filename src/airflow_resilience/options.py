"""Declarations of the ``[resilience]`` options (data only: imported by Airflow while it loads providers)."""

from __future__ import annotations

SECTION = "resilience"

#: option -> (type, default as text, description). The single source of truth for config and docs.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "checkpoint_flush_interval": (
        "float",
        "0",
        "Seconds between writes of Checkpoint.set()/iterate() progress. 0 writes every change at once "
        "(a hard kill then redoes at most the item in progress). A positive value batches writes; a hard "
        "kill may then also redo the items finished in the last interval. step() results are always "
        "written at once.",
    ),
    "checkpoint_write_behind": (
        "boolean",
        "True",
        "Write Checkpoint.set()/iterate() progress on a background thread while the task goes on (at most one "
        "write in flight; a loop item waits only when the write before the previous one has not landed). A "
        "graceful end (success, failure, SIGTERM drain) still writes everything; a hard kill may redo at most "
        "two loop items instead of one. False writes synchronously. step() results are always written before "
        "step() returns. Per task: Checkpoint.current(write_behind=False).",
    ),
    "checkpoint_keep_on_clear": (
        "boolean",
        "False",
        "Keep checkpoints when a user clears a task instance. By default clear means rerun: the next "
        "attempt starts with no checkpoint. A task can opt out with Checkpoint.current(keep_on_clear=True).",
    ),
    "enabled": (
        "boolean",
        "True",
        "Master switch of infrastructure-aware execution (cause classification, infra budget, SIGTERM "
        "drain, lost-worker detection). False gives stock Airflow behaviour (used by drills to compare); "
        "checkpoints keep working either way.",
    ),
    "selective_enable": (
        "boolean",
        "False",
        "Roll out on a subset: when True, only tasks of DAGs tagged with enable_tag get infrastructure-aware "
        "execution (classification, infra budget, drain, lost-worker detection, grants); every other task "
        "behaves exactly as stock Airflow. Checkpoint, Watermark and the resumable operators keep working "
        "everywhere as libraries.",
    ),
    "enable_tag": (
        "tag",
        "resilience",
        "With selective_enable = True: the DAG tag that opts a DAG's tasks in.",
    ),
    "infra_retries": (
        "integer",
        "3",
        "Attempts that infrastructure failures (lost worker, killed runner, OOM kill, eviction, spot "
        "interruption) may add to a task instance, on top of its retries (0 to 24). Each grant raises the "
        "task instance's max_tries by one at the moment of that failure, on the API server or the scheduler. "
        "Per task: retry_policy=InfraRetryPolicy(infra_retries=N). 0: stock Airflow rules (infrastructure "
        "failures spend retries).",
    ),
    "breaker_threshold": (
        "integer",
        "3",
        "Circuit breaker: when the same infrastructure reason ends this many attempts in a row, that "
        "failure is not granted and the task fails with a message naming the breaker.",
    ),
    "drain_on_sigterm": (
        "boolean",
        "True",
        "On SIGTERM to a running task (eviction, node drain, worker shutdown), write its checkpoint and hand "
        "the task instance back to Airflow at once: the next attempt starts after infra_retry_delay, paid "
        "from the infrastructure budget, retries untouched. A SIGTERM caused by a user marking the task "
        "failed/success is not drained.",
    ),
    "lost_worker_check_interval": (
        "float",
        "2",
        "Seconds between checks, in a child process of the scheduler, of the workers of running tasks. "
        "LocalExecutor: the supervisors on the scheduler's own host; a dead one is reported at once instead of "
        "after [scheduler] task_instance_heartbeat_timeout. CeleryExecutor: every worker is asked through the "
        "broker (see celery_worker_lost_after). 0 disables the check.",
    ),
    "bookkeeping_retention_days": (
        "integer",
        "30",
        "Days the package's own task-state-store rows (resilience:attempt, resilience:ledger, "
        "resilience:evidence) are kept after their last write; Airflow's state-store cleanup removes them "
        "after that. 0: kept until the task instance is deleted. Checkpoints follow [state_store] "
        "default_retention_days.",
    ),
    "infra_retry_delay": (
        "float",
        "2",
        "Seconds before the attempt that an infrastructure grant starts (the task's retry_delay is kept "
        "for application retries).",
    ),
    "cloud_providers": (
        "string",
        "",
        "Comma-separated cloud metadata services to ask for an interruption notice when a task gets SIGTERM "
        "(aws, gcp, azure), e.g. 'aws'. Empty: none is contacted. The notice names the cause "
        "(spot.interruption, cloud.maintenance) in the ledger.",
    ),
    "watermark_wait_timeout": (
        "float",
        "600",
        "Seconds a task opening a Watermark waits while another running attempt holds the name, before it "
        "fails with WatermarkHeldError naming the holder. Per watermark: Watermark(name, wait_timeout=...).",
    ),
    "watermark_history_retention_days": (
        "float",
        "90",
        "Days a watermark's history rows (commits, roll-forwards, discards, operator sets) are kept; older "
        "rows of a name are deleted when the name next changes. 0 keeps them all.",
    ),
    "watermark_poll_interval": (
        "float",
        "0.5",
        "Seconds between two asks of a task waiting for a held Watermark.",
    ),
    "api_url": (
        "url",
        "",
        "Address of the airflow-resilience endpoints on the API server, as tasks reach it (watermarks). "
        "Empty: the API server of [core] execution_api_server_url (its /execution/ replaced by /resilience), "
        "else [api] base_url + /resilience.",
    ),
    "celery_drain_grace": (
        "float",
        "20",
        "CeleryExecutor, with [celery] celery_config_options = airflow_resilience.airflow.celery.CELERY_CONFIG: "
        "on a worker's warm shutdown (SIGTERM), its running tasks are drained at once (checkpoint, hand back, "
        "no retry spent) instead of Celery waiting for them; a task runner still alive after this many seconds "
        "is SIGKILLed. Keep it below the platform's grace period (Kubernetes: terminationGracePeriodSeconds, 30 s).",
    ),
    "celery_worker_lost_after": (
        "float",
        "10",
        "CeleryExecutor: a worker that answered the scheduler-side watcher through the broker and then stays "
        "silent this many seconds is lost: its running task instances fail at once as worker.lost (paid from "
        "the infrastructure budget) and the workloads it had taken but not started are handed back. Checked "
        "every lost_worker_check_interval seconds. 0 disables the watcher.",
    ),
    "kubernetes_node_lost_after": (
        "float",
        "20",
        "KubernetesExecutor: a running task's pod is on a node lost when the node's Lease (kube-node-lease) "
        "has not been renewed for this many seconds and the task's own heartbeat is as old: the try fails at "
        "once as worker.lost (paid from the infrastructure budget) instead of after the heartbeat timeout or "
        "the 300 s taint toleration, and the next pod avoids that node. Keep it above the kubelet's renew "
        "interval (10 s). Checked every lost_worker_check_interval seconds. 0 disables it; the pod watch "
        "that records evidence (DisruptionTarget, OOMKilled, deletions) keeps running.",
    ),
}
