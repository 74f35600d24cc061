"""DAGs of the cost benchmarks (what the package costs: bench_overhead, bench_storm, bench_recovery).

Every task that the benchmark needs to time writes JSON-line marks (``time.time()`` on the shared host clock)
to the file or directory named in the run conf.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task


def mark(path: str, **event) -> None:
    event["at"] = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_cost_second():
    """A task of 1 s that never checkpoints (the +2 % goal is stated for tasks of this order)."""

    @task(retries=1)
    def second():
        time.sleep(1.0)

    second()


bench_cost_second()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, max_active_tasks=1000,
     tags=["resilience-bench"])
def bench_cost_hold():
    """``conf.tasks`` mapped tasks that stay running while the file ``conf.hold`` exists (at most
    ``conf.seconds``): the scheduler loop is measured while they run. A task that starts when less than
    ``conf.min_free_mib`` of memory is available ends at once (so the benchmark never fills the machine)."""

    @task
    def slots():
        return list(range(int(get_current_context()["dag_run"].conf.get("tasks", 4))))

    @task(retries=0)
    def hold(i):
        import psutil

        conf = get_current_context()["dag_run"].conf
        if psutil.virtual_memory().available < float(conf.get("min_free_mib", 3072)) * 2**20:
            return "no room"  # the machine is full: this one ends at once, the ones running are what fits
        deadline = time.monotonic() + float(conf.get("seconds", 600))
        while os.path.exists(conf["hold"]) and time.monotonic() < deadline:
            time.sleep(0.5)

    hold.expand(i=slots())


bench_cost_hold()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, max_active_tasks=1000,
     tags=["resilience-bench"])
def bench_cost_storm():
    """``conf.tasks`` mapped writers: each marks ``ready``, waits for the file ``conf.go``, then writes its
    counter once a second for ``conf.seconds`` — ``Checkpoint.set`` (``conf.side == "ours"``) or a raw
    ``task_state_store.set`` (``"stock"``: the hand-written stock checkpoint) — and marks every write it got
    an answer for (``ack``: the value and the call's duration) in ``conf.marks/<map_index>.jsonl``."""

    @task
    def slots():
        return list(range(int(get_current_context()["dag_run"].conf.get("tasks", 4))))

    @task(retries=0)
    def writer(i):
        ctx = get_current_context()
        conf = ctx["dag_run"].conf
        marks = os.path.join(conf["marks"], f"{i}.jsonl")
        mark(marks, ev="ready", pid=os.getpid())
        deadline = time.monotonic() + 900
        while not os.path.exists(conf["go"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if conf.get("side") == "ours":
            from airflow_resilience import Checkpoint

            ckpt = Checkpoint.current(flush_interval=0)

            def write(n):
                ckpt.set("n", n)
                ckpt.flush()  # acknowledged = written (a no-op when set already wrote it)
        else:
            store = ctx["task_state_store"]

            def write(n):
                store.set("n", n)

        start = time.monotonic()
        for n in range(1, int(conf.get("seconds", 10)) + 1):
            t0 = time.perf_counter()
            try:
                write(n)
            except Exception as exc:  # a refused write is counted, not hidden
                mark(marks, ev="error", n=n, error=repr(exc)[:300])
                continue
            mark(marks, ev="ack", n=n, ms=(time.perf_counter() - t0) * 1000)
            time.sleep(max(0.0, start + n - time.monotonic()))

    writer.expand(i=slots())


bench_cost_storm()


def _recovering(marks: str, checkpoint: bool, items: int, seconds: float) -> int:
    ctx = get_current_context()
    t = ctx["ti"].try_number
    mark(marks, t=t, ev="first-line", pid=os.getpid())
    if checkpoint:
        from airflow_resilience import Checkpoint

        loop = Checkpoint.current().iterate(range(items), key="items")
    else:
        loop = range(items)
    first = True
    for i in loop:
        if first:
            mark(marks, t=t, ev="first-item", i=i)
            first = False
        time.sleep(seconds)
        mark(marks, t=t, ev="item-end", i=i)
    return items


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_cost_recover_r1():
    """Stock's recovery: retries=1, retry_delay 2 s; a plain loop or a checkpointed one (conf.checkpoint)."""

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def work():
        conf = get_current_context()["dag_run"].conf
        return _recovering(conf["marks"], bool(conf.get("checkpoint")), int(conf.get("items", 10)),
                           float(conf.get("seconds", 0.5)))

    work()


bench_cost_recover_r1()


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-bench"])
def bench_cost_recover_r0():
    """Ours: retries=0 (the next try is the infrastructure grant, after ``[resilience] infra_retry_delay``)."""

    @task(retries=0, retry_delay=timedelta(seconds=2))
    def work():
        conf = get_current_context()["dag_run"].conf
        return _recovering(conf["marks"], bool(conf.get("checkpoint")), int(conf.get("items", 10)),
                           float(conf.get("seconds", 0.5)))

    work()


bench_cost_recover_r0()
