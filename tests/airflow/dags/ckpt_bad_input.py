"""Bad input on a real Airflow: non-JSON values, oversized values, corrupt saved state."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pendulum

from airflow.sdk import dag, get_current_context, task
from airflow_resilience import Checkpoint


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, tags=["resilience-test"])
def ckpt_bad_input():
    @task(retries=2, retry_delay=timedelta(seconds=2))
    def work():
        ctx = get_current_context()
        mode = (ctx["dag_run"].conf or {})["mode"]
        ckpt = Checkpoint.current()
        if mode == "non_json":
            ckpt.set("small", 1)
            ckpt.set("when", dt.datetime.now())
        elif mode == "too_large":
            ckpt.set("small", 1)
            ckpt.set("blob", "x" * 200_000)
        elif mode == "corrupt":
            if ctx["ti"].try_number == 1:
                ckpt.set("small", 1)
                raise RuntimeError("first attempt fails on purpose; the test corrupts the saved state now")
            ckpt.set("small", 2)
        return "unreachable"

    work()


ckpt_bad_input()
