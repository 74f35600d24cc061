"""Drill reports: a terminal summary and a self-contained HTML file with plots (matplotlib, PNG inlined)."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

from airflow_resilience.drills.model import DrillResult

COLORS = {"stock": "#c0504d", "ours": "#4f81bd"}
STATE_COLORS = {"running": "#4f81bd", "resumed": "#2e9e5b", "failed": "#c0504d", "waiting": "#d9d9d9"}


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
            f"note: [scheduler] task_instance_heartbeat_timeout = {meta['heartbeat_timeout_s']} s on both sides "
            "(stock: 300 s) to keep the drill short; stock's lost-worker times scale with it"
        )
    width = max([22] + [len(r.scenario) + 2 for r in result.runs])
    head = f"{'scenario':<{width}}{'side':<7}{'runs':>5}{'ok':>4}{'recover s':>11}{'redone s':>10}{'retries':>9}{'tries':>7}{'job runs':>10}{'violations':>11}"
    lines.append(head)
    lines.append("-" * len(head))
    for row in result.summary():
        lines.append(
            f"{row['scenario']:<{width}}{row['side']:<7}{row['runs']:>5}{row['success']:>4}"
            f"{_fmt(row['recovered_s_median']):>11}{_fmt(row['work_redone_s_median']):>10}"
            f"{row['retries_spent_total']:>9}{_fmt(row['tries_median']):>7}{_fmt(row['job_runs_total']):>10}"
            f"{row['violations']:>11}"
        )
    ratios = result.ratios()
    if ratios:
        lines.append("stock / ours (medians): " + "; ".join(
            f"{r['scenario']}: recover x{_fmt(r['recover_ratio'])}, redone {_redone(r)}" for r in ratios
        ))
    bad = [(r, v) for r in result.runs for v in r.violations]
    if bad:
        lines.append(f"INVARIANTS FAILED ({len(bad)}):")
        for r, v in bad:
            lines.append(f"  {r.run_id}: {v.invariant}: {v.evidence} (disruptions {[d['kind'] for d in r.disruptions]})")
    elif any(r.side == "ours" for r in result.runs):
        lines.append("invariants: all held")
    if meta.get("failed_runs"):
        lines.append(f"runs that could not be measured: {meta['failed_runs']}")
    return "\n".join(lines)


def _redone(ratio: dict[str, Any]) -> str:
    if ratio["redone_ratio"] is not None:
        return f"x{_fmt(ratio['redone_ratio'])}"
    stock, ours = ratio["redone_s"]
    return f"{_fmt(stock)} s vs {_fmt(ours)} s"


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
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(runs) + 1.4))
    labels = []
    for row, run in enumerate(reversed(runs)):
        t0 = run.triggered_at
        labels.append(f"{run.side} · {run.scenario}")
        prev_end = None
        hits = sorted(d["at"] for d in run.disruptions)
        for a in sorted(run.attempts, key=lambda a: a.try_number):
            if a.start is None:
                continue
            end = a.end if a.end is not None else a.start
            if prev_end is not None and a.start > prev_end:
                ax.barh(row, a.start - prev_end, left=prev_end - t0, color=STATE_COLORS["waiting"], height=0.5)
            color = STATE_COLORS["resumed" if a.try_number > 1 else "running"]
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
    ax.set_xlabel("seconds since the DAG run was triggered")
    ax.set_title("Attempts per run (x = disruption)")
    ax.legend(handles=[
        Patch(color=STATE_COLORS["running"], label="running (first attempt)"),
        Patch(color=STATE_COLORS["failed"], label="disrupted, until Airflow ended the attempt"),
        Patch(color=STATE_COLORS["waiting"], label="waiting for the next attempt"),
        Patch(color=STATE_COLORS["resumed"], label="next attempt (ours: resumed)"),
    ], loc="lower right", fontsize=7)
    return _png(fig)


def bars_png(result: DrillResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary()
    scenarios = result.scenarios()
    sides = [s for s in ("stock", "ours") if any(r["side"] == s for r in summary)]
    metrics = [("recovered_s_median", "time to recover (s, median)"),
               ("work_redone_s_median", "work redone (s, median)"),
               ("retries_spent_total", "retries spent (total)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.6))
    width = 0.8 / max(1, len(sides))
    for ax, (key, title) in zip(axes, metrics):
        for i, side in enumerate(sides):
            values = []
            for sc in scenarios:
                row = next((r for r in summary if r["scenario"] == sc and r["side"] == side), None)
                values.append((row or {}).get(key) or 0)
            xs = [x + i * width for x in range(len(scenarios))]
            ax.bar(xs, values, width=width, color=COLORS[side], label="stock Airflow" if side == "stock" else "airflow-resilience")
            for x, v in zip(xs, values):
                ax.text(x, v, _fmt(v), ha="center", va="bottom", fontsize=7)
        ax.set_xticks([x + width * (len(sides) - 1) / 2 for x in range(len(scenarios))])
        ax.set_xticklabels(scenarios, rotation=20, fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
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
            f"{meta['heartbeat_timeout_s']}</code> s on both sides (stock default 300 s). Stock Airflow notices a "
            "lost worker only at that timeout, so its lost-worker recovery time grows with it.</p>"
        )
    parts.append(
        "<p class='note'><i>stock</i> = Airflow with <code>[resilience] enabled = False</code>, the task as a plain "
        "loop; <i>ours</i> = the package on, the same loop through <code>Checkpoint.iterate</code>. Tries and "
        "states come from Airflow's task instance try history; work redone from the task's own progress marks; "
        "causes from the ledger.</p>"
    )
    parts.append("<h2>Summary (medians)</h2>")
    parts.append(_table(
        ["scenario", "side", "runs", "success", "time to recover (s)", "work redone (s)", "retries spent (total)",
         "tries", "external job runs", "invariant violations"],
        [[r["scenario"], r["side"], r["runs"], r["success"], _fmt(r["recovered_s_median"]), _fmt(r["work_redone_s_median"]),
          r["retries_spent_total"], _fmt(r["tries_median"]), _fmt(r["job_runs_total"]), r["violations"]] for r in result.summary()],
    ))
    ratios = result.ratios()
    if ratios:
        parts.append("<h3>Stock ÷ ours</h3>")
        parts.append(_table(["scenario", "time to recover", "work redone"],
                            [[r["scenario"], _fmt(r["recover_ratio"]), _redone(r)] for r in ratios]))
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
        ["run", "side", "disruptions", "final state", "tries (state)", "recover (s)", "redone (s)", "retries spent", "causes"],
        [[r.run_id, r.side, ", ".join(d["kind"] for d in r.disruptions), r.final_state,
          ", ".join(f"{a.try_number}:{a.state}" for a in r.attempts), _fmt(r.recovered_s), _fmt(r.work_redone_s),
          r.retries_spent, "; ".join(r.causes) or "-"] for r in result.runs],
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

