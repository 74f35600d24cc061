"""Drill measurements and invariants (pure), and the report rebuilt from a saved results file."""

from __future__ import annotations

import json

import pytest

from airflow_resilience.drills.cli import main
from airflow_resilience.drills.model import (
    Attempt,
    DrillResult,
    RunRecord,
    check_invariants,
    retries_spent,
    time_to_recover,
    work_redone,
)
from airflow_resilience.drills.report import html_report, terminal_summary


def record(side="ours", scenario="oom", counts=None, items=4, state="success", spent=0, job_runs=None, n_disruptions=1, causes=()):
    return RunRecord(
        side=side, scenario=scenario, dag_id="d", run_id=f"{side}-{scenario}", disruptions=[{"kind": scenario, "at": 10.0, "try_number": 1}] * n_disruptions,
        triggered_at=0.0, attempts=[Attempt(1, 1.0, 10.0, "up_for_retry"), Attempt(2, 12.0, 20.0, "success")],
        final_state=state, item_seconds=1.0, items=items, finished_counts=counts if counts is not None else {str(i): 1 for i in range(items)},
        attempt_starts=[], causes=list(causes), retries_spent=spent, recovered_s=2.0, work_redone_s=0.0, job_runs=job_runs,
    )


@pytest.mark.parametrize(
    "counts, seconds, expected",
    [({"0": 1, "1": 1}, 1.0, 0.0), ({"0": 2, "1": 3}, 0.5, 1.5), ({}, 1.0, 0.0)],
)
def test_work_redone(counts, seconds, expected):
    assert work_redone(counts, seconds) == expected


@pytest.mark.parametrize(
    "progress, expected",
    [
        ([(1, 5.0), (2, 13.5), (2, 14.0)], 3.5),  # first progress of a later try after the disruption
        ([(1, 11.0), (2, 12.0)], 2.0),  # try 1's marks after the disruption do not count
        ([(1, 11.0)], None),  # never recovered
    ],
)
def test_time_to_recover(progress, expected):
    assert time_to_recover(10.0, progress, 1) == expected


@pytest.mark.parametrize(
    "side, tries, kinds, expected",
    [
        ("stock", 2, [], 1),
        ("stock", 1, [], 0),
        ("ours", 2, ["infrastructure"], 0),
        ("ours", 3, ["infrastructure", "application"], 1),
        ("ours", 2, ["timeout"], 1),
    ],
)
def test_retries_spent(side, tries, kinds, expected):
    assert retries_spent(side, tries, kinds) == expected


@pytest.mark.parametrize(
    "kwargs, broken",
    [
        ({}, []),
        ({"counts": {"0": 1, "1": 1, "2": 1}}, ["no SUCCESS without the work done"]),
        ({"counts": {"0": 1, "1": 3, "2": 1, "3": 1}}, ["no lost checkpoint"]),  # 2 redone after 1 disruption
        ({"counts": {"0": 1, "1": 2, "2": 2, "3": 1}, "n_disruptions": 2}, []),  # 1 per disruption is allowed
        ({"spent": 1, "causes": ["infrastructure/worker.lost:grant", "application/app.exception:retry"]},
         ["no application retry spent on an infrastructure cause"]),
        ({"job_runs": 2, "counts": {}}, ["no duplicate external submission"]),
        ({"job_runs": 1, "counts": {}}, []),
        ({"state": "failed"}, ["the run ends in success"]),
    ],
)
def test_invariants(kwargs, broken):
    assert [v.invariant for v in check_invariants(record(**kwargs))] == broken


def test_summary_ratios_and_report_round_trip(tmp_path):
    stock = record("stock", "eviction", counts={"0": 2, "1": 2, "2": 1, "3": 1}, spent=1)
    stock.recovered_s, stock.work_redone_s = 30.0, 2.0
    ours = record("ours", "eviction")
    ours.recovered_s, ours.work_redone_s = 3.0, 0.0
    result = DrillResult({"kind": "drill", "database": "postgres", "heartbeat_timeout_shortened": True, "heartbeat_timeout_s": 30}, [stock, ours])
    summary = {row["side"]: row for row in result.summary()}
    assert summary["stock"]["recovered_s_median"] == 30.0 and summary["ours"]["retries_spent_total"] == 0
    assert result.ratios() == [{"scenario": "eviction", "recover_ratio": 10.0, "redone_ratio": None, "redone_s": (2.0, 0.0)}]

    text = terminal_summary(result)
    assert "task_instance_heartbeat_timeout = 30 s" in text and "invariants: all held" in text
    assert "eviction: recover x10.0, redone 2.0 s vs 0.0 s" in text

    path = tmp_path / "results.json"
    result.save(path)
    again = DrillResult.load(path)
    assert again.to_json() == result.to_json()
    page = html_report(again)
    assert "data:image/png;base64," in page and "Shortened for this drill" in page

    out = tmp_path / "rebuilt"
    assert main(["--from", str(path), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == result.to_json()
    assert (out / "report.html").read_text().count("<img") == 2


def test_from_a_file_that_is_not_results_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"runs": "no"}))
    assert main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a drill results file" in capsys.readouterr().err
