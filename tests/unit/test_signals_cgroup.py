"""read_oom_kills / oom_evidence against temporary cgroup fixtures in the documented file formats."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from airflow_resilience.causes import Reason, classify
from airflow_resilience.signals import exit_evidence, merge, oom_evidence, read_oom_kills

MEMORY_EVENTS = "low 0\nhigh 0\nmax {max}\noom {oom}\noom_kill {kills}\noom_group_kill 0\n"
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n"
OOM_CONTROL_OLD_KERNEL = "oom_kill_disable 0\nunder_oom 0\n"  # before Linux 4.13

V1_PROC = (
    "12:pids:/docker/abc\n"
    "11:cpu,cpuacct:/docker/abc\n"
    "4:memory:/docker/abc\n"
    "1:name=systemd:/docker/abc\n"
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sys-fs-cgroup"


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    return tmp_path / "proc-self-cgroup"


def test_v2_own_cgroup(root: Path, proc: Path) -> None:
    write(proc, "0::/system.slice/airflow-worker.service\n")
    own = root / "system.slice/airflow-worker.service"
    write(own / "memory.events", MEMORY_EVENTS.format(max=9, oom=3, kills=2))
    write(root / "memory.events", MEMORY_EVENTS.format(max=0, oom=0, kills=99))  # not ours
    assert read_oom_kills(root, proc) == 2


def test_v2_cgroup_namespace_root(root: Path, proc: Path) -> None:
    """In a container with its own cgroup namespace the path is ``/`` and the mount is our cgroup."""
    write(proc, "0::/\n")
    write(root / "memory.events", MEMORY_EVENTS.format(max=1, oom=1, kills=1))
    assert read_oom_kills(root, proc) == 1


def test_v2_host_path_not_visible_in_container(root: Path, proc: Path) -> None:
    write(proc, "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-1f2e.scope\n")
    write(root / "memory.events", MEMORY_EVENTS.format(max=0, oom=0, kills=4))
    assert read_oom_kills(root, proc) == 4


def test_v1_memory_controller(root: Path, proc: Path) -> None:
    write(proc, V1_PROC)
    write(root / "memory/docker/abc/memory.oom_control", OOM_CONTROL.format(kills=5))
    assert read_oom_kills(root, proc) == 5


def test_v1_container_view(root: Path, proc: Path) -> None:
    write(proc, V1_PROC)
    write(root / "memory/memory.oom_control", OOM_CONTROL.format(kills=6))
    assert read_oom_kills(root, proc) == 6


def test_hybrid_prefers_v2_memory_events_then_v1(root: Path, proc: Path) -> None:
    """Hybrid hosts list ``0::/...`` and v1 controllers; the unified tree may lack the memory controller."""
    write(proc, "4:memory:/job\n0::/job\n")
    write(root / "memory/job/memory.oom_control", OOM_CONTROL.format(kills=7))
    (root / "job").mkdir(parents=True)  # unified cgroup without memory.events
    assert read_oom_kills(root, proc) == 7
    write(root / "job/memory.events", MEMORY_EVENTS.format(max=0, oom=0, kills=8))
    assert read_oom_kills(root, proc) == 8


@pytest.mark.parametrize(
    ("proc_text", "files"),
    [
        (V1_PROC, {"memory/docker/abc/memory.oom_control": OOM_CONTROL_OLD_KERNEL}),
        ("0::/job\n", {"job/memory.events": "low 0\nhigh 0\nmax 0\noom 0\n"}),
        ("0::/job\n", {"job/memory.events": "oom_kill many\n"}),
        ("0::/job\n", {"job/memory.events": "oom_kill -1\n"}),
        ("0::/job\n", {}),
        ("0::/job\n", {"job/memory.events/oops": ""}),  # a directory where the file should be
        ("garbage\n\n:::\n", {"memory.events": MEMORY_EVENTS.format(max=0, oom=0, kills=1)}),
        ("", {"memory.events": MEMORY_EVENTS.format(max=0, oom=0, kills=1)}),
        ("3:cpu:/job\n", {"memory/job/memory.oom_control": OOM_CONTROL.format(kills=1)}),
    ],
)
def test_unreadable_counters_are_none(root: Path, proc: Path, proc_text: str, files: dict[str, str]) -> None:
    write(proc, proc_text)
    for relative, text in files.items():
        write(root / relative, text)
    assert read_oom_kills(root, proc) is None


def test_missing_proc_file_and_root(tmp_path: Path) -> None:
    assert read_oom_kills(tmp_path / "no-root", tmp_path / "no-proc") is None


def test_binary_garbage_is_none(root: Path, proc: Path) -> None:
    proc.parent.mkdir(parents=True, exist_ok=True)
    proc.write_bytes(b"\xff\xfe\x00\x01")
    assert read_oom_kills(root, proc) is None


def test_this_machine_does_not_raise() -> None:
    value = read_oom_kills()
    assert value is None or (isinstance(value, int) and value >= 0)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (0, 1, {"oom_kills": 1}),
        (2, 5, {"oom_kills": 3}),
        (3, 3, {}),
        (5, 0, {}),  # counter reset: a new cgroup, not evidence
        (None, 1, {}),
        (1, None, {}),
        (None, None, {}),
        (False, True, {}),
    ],
)
def test_oom_evidence(before: int | None, after: int | None, expected: dict) -> None:
    assert oom_evidence(before, after) == expected


def test_end_to_end_oom_during_attempt(root: Path, proc: Path) -> None:
    """Counter read at start and end of the attempt; the runner died by SIGKILL: an OOM kill."""
    write(proc, "0::/job\n")
    events = write(root / "job/memory.events", MEMORY_EVENTS.format(max=0, oom=0, kills=1))
    before = read_oom_kills(root, proc)
    events.write_text(MEMORY_EVENTS.format(max=12, oom=1, kills=2))
    after = read_oom_kills(root, proc)
    evidence = merge(exit_evidence(-signal.SIGKILL), oom_evidence(before, after))
    assert evidence.oom_kills == 1
    assert classify(evidence).reason is Reason.OOM_KILLED


def test_end_to_end_sigkill_without_oom(root: Path, proc: Path) -> None:
    write(proc, "0::/job\n")
    write(root / "job/memory.events", MEMORY_EVENTS.format(max=0, oom=0, kills=1))
    before = after = read_oom_kills(root, proc)
    evidence = merge(exit_evidence(-signal.SIGKILL), oom_evidence(before, after))
    assert classify(evidence).reason is Reason.SIGNAL_SIGKILL
