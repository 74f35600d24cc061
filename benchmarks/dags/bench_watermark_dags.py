"""Benchmark DAGs: the cost of a watermark per run against a raw Variable.set, and the handoff between two
concurrent holders. Timings (perf_counter, ms) go to the marks file named by the run conf."""

from __future__ import annotations

import json
import os
import time

import pendulum

from airflow.sdk import Variable, dag, get_current_context, task

from airflow_resilience import Watermark


def _mark(path: str, **event) -> None:
    event["at"] = time.time()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, max_active_runs=4, tags=["bench"])
def bench_watermark():
    @task
    def load():
        ctx = get_current_context()
        conf = ctx["dag_run"].conf
        run = ctx["run_id"]
        if conf["mode"] == "variable":
            t0 = time.perf_counter()
            value = Variable.get(conf["name"], default=0)
            t1 = time.perf_counter()
            Variable.set(conf["name"], str(int(value) + 1))
            t2 = time.perf_counter()
            _mark(conf["marks"], mode="variable", run=run, read_ms=(t1 - t0) * 1000, write_ms=(t2 - t1) * 1000)
            return
        t0 = time.perf_counter()
        with Watermark(conf["name"], default=0, poll_interval=float(conf.get("poll", 0.5))) as wm:
            t1 = time.perf_counter()
            _mark(conf["marks"], mode="watermark-read", run=run, value=wm.value, waited=wm.waited)
            wm.advance(wm.value + 1)
            t2 = time.perf_counter()
            time.sleep(float(conf.get("hold", 0)))
        _mark(conf["marks"], mode="watermark", run=run, read_ms=(t1 - t0) * 1000, write_ms=(t2 - t1) * 1000,
              waited=wm.waited)

    load()


bench_watermark()
