"""Drill measurements and invariants (pure), and the report rebuilt from a saved results file."""

from __future__ import annotations

import json

import pytest

from airflow_resilience.drills.cli import add_arguments, main, side_retries
from airflow_resilience.drills.model import (
    FORMAT,
    SIDES,
    Attempt,
    DrillResult,
    RunRecord,
    TryCounts,
    check_invariants,
    count_tries,
    time_to_recover,
    work_redone,
)
from airflow_resilience.drills.report import html_report, terminal_summary
from airflow_resilience.drills.runner import DrillConfig, dag_for


def record(side="ours", scenario="oom", counts=None, items=4, state="success", job_runs=None, n_disruptions=1,
           causes=(), states=("failed", "success"), retries=0, max_tries=1, recovered=2.0, redone=0.0):
    tries = count_tries(list(states), max_tries, retries)
    return RunRecord(
        side=side, scenario=scenario, dag_id="d", run_id=f"{side}-{scenario}",
        disruptions=[{"kind": scenario, "at": 10.0, "try_number": 1}] * n_disruptions, triggered_at=0.0,
        attempts=[Attempt(n + 1, 1.0 + 10 * n, 10.0 + 10 * n, st) for n, st in enumerate(states)],
        final_state=state, item_seconds=1.0, items=items,
        finished_counts=counts if counts is not None else {str(i): 1 for i in range(items)},
        attempt_starts=[], causes=list(causes), retries_spent=tries.retries_spent, recovered_s=recovered,
        work_redone_s=redone, job_runs=job_runs, retries=retries, max_tries=max_tries, failed_tries=tries.failed,
        grants=tries.grants,
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
    "states, max_tries, retries, expected",
    [
        # (tries' states oldest first, final task_instance.max_tries, configured retries) -> counts
        (["success"], 0, 0, TryCounts(tries=1, failed=0, grants=0, retries_spent=0)),
        (["failed"], 0, 0, TryCounts(1, 1, 0, 0)),  # stock, retries=0: the run failed, no retry to spend
        (["failed", "success"], 1, 1, TryCounts(2, 1, 0, 1)),  # stock, retries=1: the retry paid
        (["failed", "failed"], 1, 1, TryCounts(2, 2, 0, 1)),  # stock, retries exhausted
        (["failed", "success"], 1, 0, TryCounts(2, 1, 1, 0)),  # ours, retries=0 + one grant -> max_tries 1
        (["failed", "failed", "success"], 2, 0, TryCounts(3, 2, 2, 0)),  # two grants
        (["failed", "failed", "success"], 2, 1, TryCounts(3, 2, 1, 1)),  # one grant, one retry
        (["failed", "up_for_retry", "success"], 3, 1, TryCounts(3, 2, 2, 0)),  # archived unfinished try
        (["failed", "failed"], 1, 0, TryCounts(2, 2, 1, 0)),  # a grant, then a failure with retries=0: none spent
        (["failed"], 1, 0, TryCounts(1, 1, 1, 0)),  # a grant its try never used: nothing spent, never < 0
        (["failed", "success"], 1, 1, TryCounts(2, 1, 0, 1)),  # an empty ledger changes nothing: Airflow's counts
    ],
)
def test_tries_and_retries_spent_come_from_max_tries_and_the_try_history(states, max_tries, retries, expected):
    assert count_tries(states, max_tries, retries) == expected


@pytest.mark.parametrize(
    "kwargs, broken",
    [
        ({}, []),
        ({"counts": {"0": 1, "1": 1, "2": 1}}, ["no SUCCESS without the work done"]),
        # the checkpoint's hard-kill bound with write-behind: 2 items redone per disruption, never 3
        ({"counts": {"0": 1, "1": 3, "2": 2, "3": 1}}, ["no lost checkpoint"]),  # 3 redone after 1 disruption
        ({"counts": {"0": 1, "1": 2, "2": 2, "3": 1}}, []),  # 2 after 1 disruption: within the bound
        ({"counts": {"0": 3, "1": 2, "2": 2, "3": 1}, "n_disruptions": 2}, []),  # 4 after 2: 2 per disruption is allowed
        ({"counts": {"0": 3, "1": 3, "2": 2, "3": 1}, "n_disruptions": 2}, ["no lost checkpoint"]),  # 5 after 2
        # a retry paid from `retries` (max_tries never raised), whatever the ledger says or if it is empty
        ({"retries": 1, "max_tries": 1, "causes": ["infrastructure/worker.lost:grant"]},
         ["no application retry spent on an infrastructure cause"]),
        ({"retries": 1, "max_tries": 1, "causes": []}, ["no application retry spent on an infrastructure cause"]),
        ({"causes": []}, []),  # a grant in Airflow's records (max_tries 1 with retries 0): holds without a ledger
        ({"job_runs": 2, "counts": {}}, ["no duplicate external submission"]),
        ({"job_runs": 1, "counts": {}}, []),
        ({"state": "failed", "states": ("failed",), "max_tries": 0}, ["the run ends in success"]),
    ],
)
def test_invariants(kwargs, broken):
    assert [v.invariant for v in check_invariants(record(**kwargs))] == broken


def three_sides(stock_fails=False):
    if stock_fails:
        stock = record("stock", "eviction", state="failed", states=("failed",), retries=0, max_tries=0,
                       recovered=None, redone=None)
    else:
        stock = record("stock", "eviction", counts={"0": 2, "1": 2, "2": 1, "3": 1}, retries=1, max_tries=1,
                       recovered=30.0, redone=2.0)
    checkpointed = record("stock-checkpointed", "eviction", counts={"0": 1, "1": 2, "2": 1, "3": 1}, retries=1,
                          max_tries=1, recovered=6.0, redone=1.0)
    ours = record("ours", "eviction", recovered=3.0, redone=0.0)
    return DrillResult({"kind": "drill", "database": "postgres", "heartbeat_timeout_shortened": True,
                        "heartbeat_timeout_s": 30, "retries": {"stock": 1, "stock-checkpointed": 1, "ours": 0}},
                       [stock, checkpointed, ours])


def test_summary_and_ratios_against_both_stock_sides():
    result = three_sides()
    summary = {row["side"]: row for row in result.summary()}
    assert list(summary) == list(SIDES)
    assert summary["stock"]["retries_spent_total"] == 1 and summary["stock"]["grants_total"] == 0
    assert summary["ours"]["retries_spent_total"] == 0 and summary["ours"]["grants_total"] == 1
    assert summary["stock-checkpointed"]["work_redone_s_median"] == 1.0
    assert result.ratios() == [
        {"scenario": "eviction", "baseline": "stock", "recover_ratio": 10.0, "redone_ratio": None,
         "recovered_s": (30.0, 3.0), "redone_s": (2.0, 0.0), "baseline_failed": 0, "note": None},
        {"scenario": "eviction", "baseline": "stock-checkpointed", "recover_ratio": 2.0, "redone_ratio": None,
         "recovered_s": (6.0, 3.0), "redone_s": (1.0, 0.0), "baseline_failed": 0, "note": None},
    ]


def test_a_ratio_against_a_baseline_that_failed_says_so_instead_of_a_number():
    result = three_sides(stock_fails=True)
    stock, checkpointed = result.ratios()
    assert stock["baseline"] == "stock" and stock["recover_ratio"] is None and stock["redone_ratio"] is None
    assert stock["note"] == "stock failed in every run (1 of 1, retries=0): no recovery to compare"
    assert checkpointed["recover_ratio"] == 2.0 and checkpointed["note"] is None
    text = terminal_summary(result)
    assert "stock / ours (medians): eviction: stock failed in every run (1 of 1, retries=0)" in text
    assert "stock-checkpointed / ours (medians): eviction: recover x2.0, redone 1.0 s vs 0.0 s" in text
    page = html_report(result)
    assert "n/a (failed)" in page and "stock failed in every run" in page


@pytest.mark.parametrize(
    "ours_states, ours_state, baseline_state, note",
    [
        (("failed",), "failed", "success", "ours failed in every run (1 of 1): no recovery to compare"),
        (("failed", "success"), "success", "mixed", "stock failed in 1 of 2 runs: medians over its successful runs"),
    ],
)
def test_ratio_notes(ours_states, ours_state, baseline_state, note):
    ours = record("ours", "oom", state=ours_state, states=ours_states, recovered=3.0 if ours_state == "success" else None)
    stock = [record("stock", "oom", retries=1, recovered=9.0, redone=1.0)]
    if baseline_state == "mixed":
        stock.append(record("stock", "oom", state="failed", states=("failed",), max_tries=0, recovered=None, redone=None))
    (ratio,) = DrillResult({}, [*stock, ours]).ratios()
    assert ratio["note"] == note
    assert (ratio["recover_ratio"] is None) == (ours_state != "success")


def test_report_round_trip_and_rebuild_from_the_file(tmp_path):
    result = three_sides()
    text = terminal_summary(result)
    assert "task_instance_heartbeat_timeout = 30 s" in text and "invariants: all held" in text
    assert "stock / ours (medians): eviction: recover x10.0, redone 2.0 s vs 0.0 s" in text
    assert all(f"\n{side}: retries=" in text for side in SIDES)  # what each side was given

    path = tmp_path / "results.json"
    result.save(path)
    raw = json.loads(path.read_text())
    assert raw["format"] == FORMAT == 2 and {r["side"] for r in raw["runs"]} == set(SIDES)
    assert {(r["side"], r["retries"], r["max_tries"], r["grants"], r["retries_spent"]) for r in raw["runs"]} == {
        ("stock", 1, 1, 0, 1), ("stock-checkpointed", 1, 1, 0, 1), ("ours", 0, 1, 1, 0)}
    again = DrillResult.load(path)
    assert again.to_json() == result.to_json()
    page = html_report(again)
    assert "data:image/png;base64," in page and "Shortened for this drill" in page
    assert all(f"<td>{side}</td>" in page for side in SIDES)
    assert "<th>baseline</th>" in page and "<td>eviction</td><td>stock-checkpointed</td><td>x2.0</td>" in page

    out = tmp_path / "rebuilt"
    assert main(["--from", str(path), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == result.to_json()
    assert (out / "report.html").read_text().count("<img") == 2


def test_from_a_file_that_is_not_results_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"runs": "no"}))
    assert main(["--from", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a drill results file" in capsys.readouterr().err


def test_from_an_old_format_results_file_names_the_fix(tmp_path, capsys):
    old = tmp_path / "results.json"
    old.write_text(json.dumps({"format": 1, "meta": {}, "runs": []}))
    assert main(["--from", str(old), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "format 1" in err and "run the drill again" in err


@pytest.mark.parametrize(
    "workload, side, retries, dag_id",
    [
        ("load", "stock", 0, "resilience_drill_load"),
        ("load", "stock-checkpointed", 1, "resilience_drill_load_r1"),
        ("load", "ours", 3, "resilience_drill_load_r3"),
        ("job", "ours", 0, "resilience_drill_job"),
        ("job", "stock", 2, "resilience_drill_job_stock_r2"),
        ("job", "stock-checkpointed", 0, "resilience_drill_job_stock"),  # the provider's operator checkpoints
    ],
)
def test_dag_variant_per_side_and_retries(workload, side, retries, dag_id):
    assert dag_for(workload, side, retries) == dag_id


@pytest.mark.parametrize(
    "retries, message",
    [({"stock": 4}, r"retries\['stock'\] = 4: retries must be 0..3"), ({"stok": 1}, "unknown side 'stok'")],
)
def test_drill_retries_are_checked(retries, message):
    with pytest.raises(ValueError, match=message):
        DrillConfig(retries=retries).check()


def test_every_side_has_retries_0_unless_told():
    assert [DrillConfig().retries_for(side) for side in SIDES] == [0, 0, 0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], {"stock": 0, "stock-checkpointed": 0, "ours": 0}),
        (["--retries", "2"], {"stock": 2, "stock-checkpointed": 2, "ours": 2}),
        (["--stock-retries", "1"], {"stock": 1, "stock-checkpointed": 1, "ours": 0}),
        (["--retries", "1", "--stock-retries", "0"], {"stock": 0, "stock-checkpointed": 0, "ours": 1}),
    ],
)
def test_retries_options(argv, expected):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert side_retries(parser.parse_args(argv)) == expected


def test_chaos_summary_counts_each_disruption_once_at_the_run_it_was_aimed_at():
    from airflow_resilience.drills.model import DrillResult, Violation, chaos_summary

    a = record(scenario="oom", recovered=2.0, redone=1.0)
    b = record(scenario="oom", recovered=4.0, redone=0.0, n_disruptions=2)
    c = record(scenario="db_restart", recovered=None, redone=0.0)
    c.run_id = "c"
    a.disruptions = a.disruptions + [{"kind": "db_restart", "at": 11.0, "overlap": True}]  # c's, seen by a
    b.violations = [Violation("no lost checkpoint", "x")]
    summary = chaos_summary(DrillResult({"kind": "chaos"}, [a, b, c]))
    assert summary["disruptions"] == 4 and summary["runs"] == 3 and summary["overlaps"] == 1
    assert summary["violations"] == {"no lost checkpoint": 1}
    oom = summary["kinds"]["oom"]
    assert (oom["disruptions"], oom["runs"], oom["violations"]) == (3, 2, 1)
    assert (oom["recovered_s_median"], oom["recovered_s_p95"]) == (3.0, 4.0)
    assert oom["redone_s_per_disruption_median"] == 0.5 and oom["redone_s_per_disruption_max"] == 1.0  # 1/1, 0/2
    assert summary["kinds"]["db_restart"]["recovered_s_median"] is None  # no later try: nothing to time


def test_a_control_plane_disruption_counts_for_every_run_in_flight():
    from airflow_resilience.drills.runner import attribute_control_plane

    owner = record(scenario="scheduler_restart")
    owner.run_id = "owner"
    owner.disruptions = [{"kind": "scheduler_restart", "at": 15.0, "try_number": 1}]
    during = record(scenario="oom", counts={"0": 1, "1": 4, "2": 1, "3": 1})  # 3 redone: broken with 1 disruption...
    during.run_id, during.triggered_at = "during", 5.0
    during.violations = check_invariants(during)
    assert [v.invariant for v in during.violations] == ["no lost checkpoint"]
    after = record(scenario="oom")
    after.run_id, after.triggered_at = "after", 25.0  # triggered after the restart: untouched
    assert attribute_control_plane([owner, during, after]) == 1
    assert [d["kind"] for d in during.disruptions] == ["oom", "scheduler_restart"] and during.disruptions[1]["overlap"]
    assert during.violations == []  # ...within the bound once the restart that also hit it is counted
    assert [d["kind"] for d in after.disruptions] == ["oom"] and [d["kind"] for d in owner.disruptions] == ["scheduler_restart"]
