"""A state-store call holds Airflow's execution-timeout alarm (SIGALRM) until its answer is read."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from airflow_resilience.airflow.store import _hold_alarm, _release_alarm


class Timeout(Exception):
    pass


def raise_timeout(signum, frame):
    raise Timeout()


def test_alarm_is_delivered_after_the_call_not_during_it():
    # another thread that does not block anything: the kernel may hand it the signal
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    previous = signal.signal(signal.SIGALRM, raise_timeout)
    try:
        held = _hold_alarm()
        assert held is not None
        os.kill(os.getpid(), signal.SIGALRM)
        time.sleep(0.05)  # "the request is in flight": no Timeout raised here
        with pytest.raises(Timeout):
            _release_alarm(held)  # raised as soon as the call is over
        assert signal.getsignal(signal.SIGALRM) is raise_timeout
    finally:
        signal.signal(signal.SIGALRM, previous)
        stop.set()


def test_no_alarm_no_change():
    previous = signal.signal(signal.SIGALRM, raise_timeout)
    try:
        held = _hold_alarm()
        _release_alarm(held)  # nothing pending: nothing raised
        assert signal.getsignal(signal.SIGALRM) is raise_timeout
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_without_a_timeout_handler_nothing_is_swapped():
    previous = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    try:
        assert _hold_alarm() is None
        assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGALRM, previous)
