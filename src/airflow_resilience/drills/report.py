"""Drill reports: a terminal summary and a self-contained HTML file with plots (matplotlib, PNG inlined)."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

from airflow_resilience.drills.model import BASELINES, DrillResult, chaos_summary

COLORS = {"stock": "#c0504d", "stock-checkpointed": "#e39b2d", "ours": "#4f81bd"}
LABELS = {"stock": "stock (plain loop)", "stock-checkpointed": "stock-checkpointed (task_state_store)",
          "ours": "ours (airflow-resilience)"}
#: what each side is, when the results file does not say (its meta "given" does)
DEFAULT_GIVEN = {
    "stock": "stock Airflow, package off, a plain loop",
    "stock-checkpointed": "stock Airflow, package off, a hand-written task_state_store checkpoint",
    "ours": "airflow-resilience on, Checkpoint.iterate",
}
#: attempt states in the timeline: apart from the side colours (the side is the strip left of each row)
STATE_COLORS = {"running": "#8c8c8c", "resumed": "#2e9e5b", "failed": "#7b3294", "waiting": "#d9d9d9"}


# ---------------------------------------------------------------------------------------------- terminal
def terminal_summary(result: DrillResult) -> str:
    lines = []
    meta = result.meta
    lines.append(
        f"{meta.get('kind', 'drill')} on Airflow {meta.get('airflow')} ({meta.get('database')}), "
        f"{len(result.runs)} runs, {meta.get('duration_s')} s"
    )
    if meta.get("heartbeat_timeout_shortened"):
        lines.append(
            f"note: [scheduler] task_instance_heartbeat_timeout = {meta['heartbeat_timeout_s']} s on every side "
            "(stock: 300 s) to keep the drill short; stock's lost-worker times scale with it"
        )
    for side in result.sides():
        lines.append(f"{side}: {_given(meta, side)}")
    width = max([22] + [len(r.scenario) + 2 for r in result.runs])
    head = (f"{'scenario':<{width}}{'side':<20}{'retries':>8}{'runs':>5}{'ok':>4}{'failed':>7}{'recover s':>11}"
            f"{'redone s':>10}{'spent':>7}{'grants':>8}{'tries':>7}{'job runs':>10}{'violations':>11}")
    lines.append(head)
    lines.append("-" * len(head))
    for row in result.summary():
        lines.append(
            f"{row['scenario']:<{width}}{row['side']:<20}{_retries(row):>8}{row['runs']:>5}{row['success']:>4}"
            f"{row['failed']:>7}{_fmt(row['recovered_s_median']):>11}{_fmt(row['work_redone_s_median']):>10}"
            f"{row['retries_spent_total']:>7}{row['grants_total']:>8}{_fmt(row['tries_median']):>7}"
            f"{_fmt(row['job_runs_total']):>10}{row['violations']:>11}"
        )
    lines.append("(retries: what the task was given; spent: tries paid from retries; grants: max_tries raised by "
                 "the package; all from Airflow's task_instance / task_instance_history)")
    ratios = result.ratios()
    for baseline in BASELINES:
        mine = [r for r in ratios if r["baseline"] == baseline]
        if mine:
            lines.append(f"{baseline} / ours (medians): " + "; ".join(f"{r['scenario']}: {_ratio_text(r)}" for r in mine))
    if meta.get("kind") == "chaos":
        lines.extend(chaos_lines(result))
    bad = [(r, v) for r in result.runs for v in r.violations]
    if bad:
        lines.append(f"INVARIANTS FAILED ({len(bad)}):")
        for r, v in bad:
            lines.append(f"  {r.run_id}: {v.invariant}: {v.evidence} (disruptions {[d['kind'] for d in r.disruptions]})")
    elif any(r.side == "ours" for r in result.runs):
        lines.append("invariants: all held")
    if meta.get("sides_skipped"):
        lines.append(f"sides not run: {', '.join(meta['sides_skipped'])}")
    if meta.get("failed_runs"):
        lines.append(f"runs that could not be measured: {meta['failed_runs']}")
    return "\n".join(lines)


def chaos_lines(result: DrillResult) -> list[str]:
    """The chaos figures (:func:`~airflow_resilience.drills.model.chaos_summary`) as terminal lines."""
    summary = chaos_summary(result)
    lines = [f"chaos: {summary['disruptions']} disruptions on {summary['runs']} runs ({summary['success']} succeeded); "
             f"{summary['overlaps']} more hits of control-plane disruptions on runs in flight"]
    head = f"{'kind':<20}{'disruptions':>12}{'runs':>6}{'recover p50':>13}{'p95':>7}{'redone/disr. p50':>18}{'max':>6}{'violations':>12}"
    lines += [head, "-" * len(head)]
    for kind, row in summary["kinds"].items():
        lines.append(f"{kind:<20}{row['disruptions']:>12}{row['runs']:>6}{_fmt(row['recovered_s_median']):>13}"
                     f"{_fmt(row['recovered_s_p95']):>7}{_fmt(row['redone_s_per_disruption_median']):>18}"
                     f"{_fmt(row['redone_s_per_disruption_max']):>6}{row['violations']:>12}")
    broken = summary["violations"]
    lines.append("invariants broken: " + (", ".join(f"{k}: {n}" for k, n in broken.items()) if broken else
                 "none (no lost checkpoint, no duplicate external submission, no SUCCESS without the work, no "
                 "application retry spent on an infrastructure cause, every run succeeded)"))
    return lines


def _given(meta: dict[str, Any], side: str) -> str:
    given = (meta.get("given") or {}).get(side)
    if given:
        return given
    retries = (meta.get("retries") or {}).get(side)
    return (f"retries={retries}; " if retries is not None else "") + DEFAULT_GIVEN.get(side, side)


def _retries(row: dict[str, Any]) -> str:
    return "/".join(str(r) for r in row.get("retries", [])) or "-"


def _ratio_text(ratio: dict[str, Any]) -> str:
    """``recover xN, redone ...`` or, where a side failed in every run, why there is no number."""
    if _no_number(ratio):
        return ratio["note"]
    text = f"recover {_recover(ratio)}, redone {_redone(ratio)}"
    return f"{text} ({ratio['note']})" if ratio.get("note") else text


def _no_number(ratio: dict[str, Any]) -> bool:
    """A side failed in every run: there is no recovery to compare (``ratios()`` says which in the note)."""
    return ratio["recover_ratio"] is None and ratio["redone_ratio"] is None and "every run" in (ratio.get("note") or "")


def _recover(ratio: dict[str, Any]) -> str:
    if _no_number(ratio):
        return "n/a"
    if ratio["recover_ratio"] is not None:
        return f"x{_fmt(ratio['recover_ratio'])}"
    base, ours = ratio.get("recovered_s", (None, None))
    return f"{_fmt(base)} s vs {_fmt(ours)} s"


def _redone(ratio: dict[str, Any]) -> str:
    if _no_number(ratio):
        return "n/a"
    if ratio["redone_ratio"] is not None:
        return f"x{_fmt(ratio['redone_ratio'])}"
    base, ours = ratio["redone_s"]
    return f"{_fmt(base)} s vs {_fmt(ours)} s"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


# ---------------------------------------------------------------------------------------------- plots
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def timeline_png(result: DrillResult) -> str:
    """One row per run: attempts as bars (running / resumed / failed), gaps as waiting, disruptions as x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    runs = result.runs
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(runs) + 1.8))
    labels = []
    span = max([10.0] + [(a.end or a.start) - r.triggered_at for r in runs for a in r.attempts if a.start is not None])
    strip = span * 0.015
    for row, run in enumerate(reversed(runs)):
        t0 = run.triggered_at
        labels.append(f"{run.side} · {run.scenario}" + ("" if run.final_state == "success" else f" ({run.final_state})"))
        # the side's colour as a strip left of the row
        ax.barh(row, strip, left=-2 * strip, color=COLORS.get(run.side, "#888"), height=0.8)
        prev_end = None
        hits = sorted(d["at"] for d in run.disruptions)
        for a in sorted(run.attempts, key=lambda a: a.try_number):
            if a.start is None:
                continue
            end = a.end if a.end is not None else a.start
            if prev_end is not None and a.start > prev_end:
                ax.barh(row, a.start - prev_end, left=prev_end - t0, color=STATE_COLORS["waiting"], height=0.5)
            color = STATE_COLORS["resumed" if a.try_number > 1 else "running"]
            if a.state in ("failed", "up_for_retry") and a is run.attempts[-1]:
                color = STATE_COLORS["failed"]  # the last try failed: the run failed
            hit = next((h for h in hits if a.start <= h < end), None)
            if hit is None:
                ax.barh(row, max(end - a.start, 0.1), left=a.start - t0, color=color, height=0.5)
            else:  # running until the disruption, then disrupted until Airflow ended the attempt
                ax.barh(row, hit - a.start, left=a.start - t0, color=color, height=0.5)
                ax.barh(row, max(end - hit, 0.1), left=hit - t0, color=STATE_COLORS["failed"], height=0.5)
            prev_end = end
        for d in run.disruptions:
            ax.plot(d["at"] - t0, row, marker="x", color="black", markersize=9, mew=2)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels(labels, fontsize=8)
    for tick, run in zip(ax.get_yticklabels(), reversed(runs)):
        tick.set_color(COLORS.get(run.side, "black"))
    ax.set_xlabel("seconds since the DAG run was triggered")
    ax.set_title("Attempts per run (x = disruption)")
    ax.legend(handles=[
        Patch(color=STATE_COLORS["running"], label="running (first attempt)"),
        Patch(color=STATE_COLORS["failed"], label="disrupted, until Airflow ended the attempt"),
        Patch(color=STATE_COLORS["waiting"], label="waiting for the next attempt"),
        Patch(color=STATE_COLORS["resumed"], label="next attempt (checkpointed sides: resumed)"),
        *[Patch(color=COLORS[side], label=f"side: {LABELS[side]}") for side in result.sides()],
    ], loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.8 * (0.42 * len(runs) + 1.8))), ncol=3, fontsize=7)
    return _png(fig)


def bars_png(result: DrillResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    scenarios = result.scenarios()
    sides = result.sides()
    metrics = [("recovered_s_median", "time to recover (s, median)"),
               ("work_redone_s_median", "work redone (s, median)"),
               ("retries_spent_total", "retries spent (total)"),
               ("failed", "runs failed")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(14, 3.8))
    width = 0.8 / max(1, len(sides))
    for ax, (key, title) in zip(axes, metrics):
        for i, side in enumerate(sides):
            values, texts = [], []
            for sc in scenarios:
                row = next((r for r in summary if r["scenario"] == sc and r["side"] == side), None) or {}
                value = row.get(key)
                values.append(value or 0)
                # no number for a side that failed in every run: say so on the bar instead of drawing a 0
                texts.append("failed" if value is None and row and row.get("success") == 0 else _fmt(value))
            xs = [x + i * width for x in range(len(scenarios))]
            ax.bar(xs, values, width=width, color=COLORS[side], label=LABELS[side])
            for x, v, t in zip(xs, values, texts):
                ax.text(x, v, t, ha="center", va="bottom", fontsize=7)
        ax.set_xticks([x + width * (len(sides) - 1) / 2 for x in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0, top=max(1.0, ax.get_ylim()[1]))  # counts that are all 0 still start at 0
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(sides), fontsize=8, bbox_to_anchor=(0.5, -0.08))
    return _png(fig)


# ---------------------------------------------------------------------------------------------- HTML
def html_report(result: DrillResult) -> str:
    meta = result.meta
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>airflow-resilience drill report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}.bad{color:#b00}.note{color:#555;font-size:13px}</style>",
        "</head><body>",
        f"<h1>Disruption drill: {e(str(meta.get('kind', 'drill')))}</h1>",
        f"<p class='note'>Airflow {e(str(meta.get('airflow')))} · {e(str(meta.get('database')))} · "
        f"{len(result.runs)} runs · {e(str(meta.get('duration_s')))} s · generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>",
    ]
    if meta.get("heartbeat_timeout_shortened"):
        parts.append(
            f"<p class='note'><b>Shortened for this drill:</b> <code>[scheduler] task_instance_heartbeat_timeout = "
            f"{meta['heartbeat_timeout_s']}</code> s on every side (stock default 300 s). Stock Airflow notices a "
            "lost worker only at that timeout, so its lost-worker recovery time grows with it.</p>"
        )
    parts.append("<h2>The sides</h2><ul>")
    for side in result.sides():
        parts.append(f"<li><b style='color:{COLORS.get(side, 'black')}'>{e(side)}</b>: {e(_given(meta, side))}</li>")
    parts.append("</ul>")
    if meta.get("sides_skipped"):
        parts.append(f"<p class='note'>Not run: {e(', '.join(meta['sides_skipped']))}.</p>")
    parts.append(
        "<p class='note'>Tries, their states, final states, <code>max_tries</code> and the configured "
        "<code>retries</code> come from Airflow's own records (<code>task_instance</code>, "
        "<code>task_instance_history</code>, the task's definition), on every side. <b>Retries spent</b> = tries "
        "after the first that no infrastructure grant paid for; <b>grants</b> = final <code>max_tries</code> − "
        "configured <code>retries</code> (the package raises <code>max_tries</code> by one per grant). Work redone "
        "comes from the task's own progress marks; the causes from the package's ledger, as information only. "
        "A side that failed has no time to recover and no work redone (n/a): it never finished.</p>"
    )
    summary = result.summary()
    parts.append("<h2>Per scenario (medians)</h2>")
    for scenario in result.scenarios():
        rows = [r for r in summary if r["scenario"] == scenario]
        parts.append(f"<h3>{e(scenario)}</h3>")
        parts.append(_table(
            ["side", "retries given", "runs", "success", "failed", "time to recover (s)", "work redone (s)",
             "retries spent (total)", "grants (total)", "tries", "external job runs", "invariant violations"],
            [[r["side"], _retries(r), r["runs"], r["success"], r["failed"],
              _fmt(r["recovered_s_median"]) if r["success"] else "n/a (failed)",
              _fmt(r["work_redone_s_median"]) if r["success"] else "n/a (failed)",
              r["retries_spent_total"], r["grants_total"], _fmt(r["tries_median"]), _fmt(r["job_runs_total"]),
              r["violations"]] for r in rows],
        ))
    ratios = result.ratios()
    if ratios:
        parts.append("<h3>Ratios: baseline ÷ ours</h3>")
        parts.append("<p class='note'>Each ratio names its baseline: <i>stock</i> (plain loop) or "
                     "<i>stock-checkpointed</i> (hand-written <code>task_state_store</code> checkpoint). Where a "
                     "side failed in every run there is no recovery to compare, and the table says so.</p>")
        parts.append(_table(["scenario", "baseline", "time to recover", "work redone", "note"],
                            [[r["scenario"], r["baseline"], _recover(r), _redone(r), r["note"] or ""] for r in ratios]))
    try:
        parts.append(f"<h2>Cost per scenario</h2><img alt='bars' src='data:image/png;base64,{bars_png(result)}'>")
        parts.append(f"<h2>Timeline</h2><img alt='timeline' src='data:image/png;base64,{timeline_png(result)}'>")
    except ImportError:
        parts.append("<p class='bad'>matplotlib is not installed: no plots (pip install 'airflow-resilience[drills]')</p>")
    bad = [(r, v) for r in result.runs for v in r.violations]
    if any(r.side == "ours" for r in result.runs):
        parts.append("<h2>Invariants</h2>")
        if bad:
            parts.append(_table(["run", "disruptions", "invariant", "evidence"],
                                [[r.run_id, ", ".join(d["kind"] for d in r.disruptions), v.invariant, v.evidence] for r, v in bad],
                                cls="bad"))
        else:
            parts.append("<p>All held: no lost checkpoint, no duplicate external submission, no SUCCESS without the "
                         "work done, no application retry spent on an infrastructure cause.</p>")
    parts.append("<h2>Runs</h2>")
    parts.append(_table(
        ["run", "side", "disruptions", "final state", "tries (state)", "retries / max_tries", "recover (s)",
         "redone (s)", "retries spent", "grants", "causes (ledger)"],
        [[r.run_id, r.side, ", ".join(d["kind"] for d in r.disruptions), r.final_state,
          ", ".join(f"{a.try_number}:{a.state}" for a in r.attempts), f"{r.retries} / {r.max_tries}",
          _fmt(r.recovered_s), _fmt(r.work_redone_s), r.retries_spent, r.grants, "; ".join(r.causes) or "-"]
         for r in result.runs],
    ))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    e = html.escape
    out = [f"<table class='{cls}'><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(result: DrillResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.html`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.json"
    report = out_dir / "report.html"
    result.save(results)
    report.write_text(html_report(result))
    return results, report

