"""merge(*parts) -> Evidence: later parts win, booleans OR, notes concatenate, None is "not observed"."""

from __future__ import annotations

import logging

import pytest

import airflow_resilience.signals as signals
from airflow_resilience.causes import Evidence, Reason, classify
from airflow_resilience.signals import merge


def test_nothing_is_empty_evidence() -> None:
    assert merge() == Evidence()
    assert merge({}, {}) == Evidence()


def test_later_parts_override() -> None:
    evidence = merge({"exit_signal": 15, "cloud_notice": "gcp:maintenance"}, {"exit_signal": 9})
    assert evidence == Evidence(exit_signal=9, cloud_notice="gcp:maintenance")


def test_booleans_or() -> None:
    evidence = merge(
        {"k8s_deleting": True, "worker_lost": False}, {"k8s_deleting": False}, {"worker_lost": True}
    )
    assert evidence.k8s_deleting is True and evidence.worker_lost is True
    assert merge({"heartbeat_timeout": False}).heartbeat_timeout is False


def test_none_never_clears() -> None:
    assert merge({"oom_kills": 2}, {"oom_kills": None}).oom_kills == 2


def test_notes_concatenate() -> None:
    evidence = merge(
        {"notes": (("kubernetes", "DisruptionTarget"),)},
        {"notes": [("cgroup", "oom_kill 1->2")]},
        {"notes": ("aws", "terminate at 07:37")},
    )
    assert evidence.notes == (
        ("kubernetes", "DisruptionTarget"),
        ("cgroup", "oom_kill 1->2"),
        ("aws", "terminate at 07:37"),
    )


def test_evidence_values_merge_like_dicts() -> None:
    base = Evidence(exception="ValueError", worker_lost=True, notes=(("a", "b"),))
    evidence = merge(base, {"worker_lost": False, "exit_signal": 9, "notes": (("c", "d"),)})
    assert evidence == Evidence(
        exception="ValueError", worker_lost=True, exit_signal=9, notes=(("a", "b"), ("c", "d"))
    )


def test_unknown_fields_and_malformed_notes_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="airflow_resilience.signals"):
        evidence = merge({"k8s_disrupton": "EvictionByEvictionAPI", "notes": 5}, {"exit_signal": 9})
    assert evidence == Evidence(exit_signal=9)
    assert "k8s_disrupton" in caplog.text and "notes" in caplog.text


def test_merged_evidence_classifies() -> None:
    evidence = merge(
        {"received_signal": 15, "exception": "AirflowTaskTerminated"},
        {"k8s_disruption": "EvictionByEvictionAPI"},
        {"k8s_deleting": True},
        {"oom_kills": None},
    )
    assert classify(evidence).reason is Reason.K8S_EVICTION


def test_public_names() -> None:
    for name in signals.__all__:
        assert callable(getattr(signals, name))
