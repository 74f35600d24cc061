"""A state-store call holds SIGALRM (Airflow's execution_timeout) until its answer is read."""

from __future__ import annotations

import os
import signal
import time

from airflow_resilience.airflow.store import _hold_alarm, _release_alarm


def test_alarm_is_delivered_after_the_call_not_during_it():
    fired: list[float] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))
    try:
        held = _hold_alarm()
        assert held
        os.kill(os.getpid(), signal.SIGALRM)
        time.sleep(0.05)
        assert fired == []  # held while "the request is in flight"
        _release_alarm(held)
        assert len(fired) == 1  # delivered as soon as it is released
    finally:
        signal.signal(signal.SIGALRM, previous)
