"""exit_evidence (exit statuses) and pid_alive (liveness guarded against PID reuse), with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from airflow_resilience.causes import Reason, classify
from airflow_resilience.signals import exit_evidence, merge, pid_alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(SLEEPER)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (None, {}),
        (0, {}),
        (1, {}),
        (137, {}),  # maybe 128 + SIGKILL from a shell, maybe a plain exit code: not guessed
        (-9, {"exit_signal": 9}),
        (-15, {"exit_signal": 15}),
        (-11, {"exit_signal": 11}),
        (-signal.SIGKILL, {"exit_signal": 9}),
        (-10_000, {}),
        (True, {}),
        ("-9", {"exit_signal": 9}),
        ("x", {}),
    ],
)
def test_returncode(returncode: object, expected: dict) -> None:
    assert exit_evidence(returncode) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, {}),
        (3 << 8, {}),  # exited with code 3
        (9, {"exit_signal": 9}),  # killed by SIGKILL
        (15, {"exit_signal": 15}),
        (11 | 0x80, {"exit_signal": 11}),  # SIGSEGV with a core dump
        (-1, {}),
        (None, {}),
    ],
)
def test_wait_status(status: int | None, expected: dict) -> None:
    assert exit_evidence(status, wait_status=True) == expected


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_real_processes(sig: signal.Signals) -> None:
    proc = subprocess.Popen(SLEEPER)
    proc.send_signal(sig)
    assert exit_evidence(proc.wait(timeout=5)) == {"exit_signal": int(sig)}

    raw = subprocess.Popen(SLEEPER)
    os.kill(raw.pid, sig)
    _, status = os.waitpid(raw.pid, 0)
    raw.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    assert exit_evidence(status, wait_status=True) == {"exit_signal": int(sig)}
    assert exit_evidence(raw.returncode) == {"exit_signal": int(sig)}


def test_clean_exit_is_no_evidence() -> None:
    assert exit_evidence(subprocess.run([sys.executable, "-c", "raise SystemExit(3)"]).returncode) == {}


def test_pid_alive_running_child(child: subprocess.Popen[bytes]) -> None:
    assert pid_alive(child.pid)
    assert pid_alive(child.pid, started_before=time.time())


def test_pid_alive_detects_reuse(child: subprocess.Popen[bytes]) -> None:
    """The PID belongs to a process created after the time we knew ours was running: not ours."""
    created = psutil.Process(child.pid).create_time()
    assert not pid_alive(child.pid, started_before=created - 60)
    assert pid_alive(child.pid, started_before=created - 60, tolerance=120)


def test_pid_alive_zombie_and_reaped(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    deadline = time.monotonic() + 2
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pid_alive(child.pid)  # exited, not yet reaped
    child.wait(timeout=5)
    assert not pid_alive(child.pid)


def test_pid_alive_self() -> None:
    assert pid_alive(os.getpid(), started_before=time.time())


@pytest.mark.parametrize(
    ("pid", "answer"),
    [
        (2**31 - 1, False),  # no such process: positively gone
        (0, None),  # not a process id: unknown, never evidence of a death
        (-1, None),
        (True, None),
        ("abc", None),
        (None, None),
    ],
)
def test_pid_alive_bad_pids(pid: object, answer: bool | None) -> None:
    assert pid_alive(pid) is answer  # type: ignore[arg-type]


def test_pid_alive_unexpected_error_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error psutil was not expected to raise means "unknown" (the detector then does nothing), never
    "dead" (which would SIGKILL a healthy runner)."""

    def broken(self: psutil.Process) -> str:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(psutil.Process, "status", broken)
    assert pid_alive(os.getpid()) is None
    assert pid_alive(os.getpid(), started_before=time.time()) is None


def test_pid_alive_access_denied_counts_as_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(self: psutil.Process) -> str:
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "status", denied)
    assert pid_alive(os.getpid()) is True


@pytest.mark.parametrize(
    ("returncode", "reason"),
    [
        (-signal.SIGKILL, Reason.SIGNAL_SIGKILL),
        (-signal.SIGSEGV, Reason.SIGNAL_OTHER),
        (1, Reason.APP_EXCEPTION),
    ],
)
def test_end_to_end_classification(returncode: int, reason: Reason) -> None:
    evidence = merge({"exception": "RuntimeError"}, exit_evidence(returncode))
    assert classify(evidence).reason is reason
