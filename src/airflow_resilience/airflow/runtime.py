"""Binding of the pure core to the running Airflow task (Task SDK context, config, signals)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from airflow_resilience import context
from airflow_resilience.attempt import AttemptId
from airflow_resilience.config import SECTION, Settings, load_settings
from airflow_resilience.errors import NoTaskContextError

if TYPE_CHECKING:
    from airflow_resilience.checkpoint import Checkpoint


def settings() -> Settings:
    from airflow.sdk.configuration import conf

    def get(option: str) -> str | None:
        if not conf.has_option(SECTION, option):
            return None
        return conf.get(SECTION, option)

    return load_settings(get)


def _context():
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception as exc:  # AirflowException outside a task, ImportError without the SDK
        raise NoTaskContextError(
            "Checkpoint.current() works only inside a running Airflow task; in unit tests use "
            "airflow_resilience.testing.CheckpointEnvironment"
        ) from exc


def running_attempt() -> AttemptId:
    ctx = _context()
    ti = ctx["ti"]
    dag_run = ctx.get("dag_run")
    clear_number = getattr(dag_run, "clear_number", 0) or 0
    return AttemptId(
        try_number=int(ti.try_number),
        max_tries=int(getattr(ti, "max_tries", 0) or 0),
        clear_number=int(clear_number),
        ti_id=str(ti.id),
    )


def checkpoint_for_running_task(keep_on_clear: bool | None, flush_interval: float | None) -> Checkpoint:
    from airflow_resilience.airflow.store import TaskStateStore
    from airflow_resilience.checkpoint import Checkpoint

    cfg = settings()
    attempt = running_attempt()
    store = TaskStateStore.for_task_instance(_context()["ti"], write_timer="resilience.checkpoint.write")
    ckpt = Checkpoint(
        store,
        attempt,
        keep_on_clear=cfg.checkpoint_keep_on_clear if keep_on_clear is None else keep_on_clear,
        flush_interval=cfg.checkpoint_flush_interval if flush_interval is None else flush_interval,
        write_behind=cfg.checkpoint_write_behind,
    )
    _hook_sigterm()
    return ckpt


def _hook_sigterm() -> None:
    """On SIGTERM, ask open checkpoints to write at the next item boundary, then run the old handler.

    The handler does no I/O (the main thread may be inside a supervisor request); it only sets a flag.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "_airflow_resilience", False):
        return  # already chained in front of the task runner's handler

    def on_term(signum, frame):
        for ckpt in context.open_checkpoints():
            ckpt.request_flush()
        if callable(previous):
            previous(signum, frame)

    on_term._airflow_resilience = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, on_term)


def flush_open_checkpoints() -> None:
    """Write pending checkpoint progress (called by the listener when the task ends)."""
    for ckpt in context.open_checkpoints():
        if not ckpt.fenced:
            ckpt.flush()
