// The fleet payload turned into stat cards and chart inputs. Pure.

import { horizontalBars, shortDay, stackedBars, type HBarChart, type StackedChart } from "./charts";
import { formatCount, formatDuration } from "./format";
import { KIND_ORDER, VERDICT_ORDER, kindSwatch, verdictSwatch } from "./palette";
import type { FleetPayload, FleetTotals, FleetWindow, NameCount } from "./types";

export interface TotalCard {
  key: string;
  label: string;
  value: string;
  help: string;
}

type Format = "count" | "duration";

const CARDS: { key: string; label: string; format: Format; help: string }[] = [
  { key: "failed_attempts", label: "Failed attempts", format: "count", help: "attempts that ended in failure" },
  { key: "infrastructure", label: "Infrastructure", format: "count", help: "failed under the task: node, pod, worker" },
  { key: "application", label: "Application", format: "count", help: "the task's own code raised" },
  { key: "timeout", label: "Timeouts", format: "count", help: "ran past the execution timeout" },
  { key: "manual", label: "Manual", format: "count", help: "marked or cleared by a person" },
  { key: "unknown", label: "Unknown cause", format: "count", help: "no cause could be told" },
  { key: "grants", label: "Grants", format: "count", help: "retries paid by the infrastructure budget" },
  { key: "stock", label: "Stock retries", format: "count", help: "decided by Airflow's own retries" },
  { key: "exhausted", label: "Exhausted", format: "count", help: "the budget or the breaker said no" },
  { key: "breakers_opened", label: "Breakers opened", format: "count", help: "circuit breakers that opened" },
  { key: "retries_kept", label: "Retries kept", format: "count", help: "task retries not spent on infrastructure" },
  { key: "redone_seconds", label: "Compute redone", format: "duration", help: "work done again after a failure" },
  { key: "saved_seconds", label: "Compute saved", format: "duration", help: "work checkpoints let retries skip" },
];

function humanKey(key: string): string {
  const text = key.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A card per totals key: the known ones in a fixed order, then any the API added. */
export function totalCards(totals: Partial<FleetTotals> | null | undefined): TotalCard[] {
  const values = totals ?? {};
  const known = new Set(CARDS.map((card) => card.key));
  const cards = CARDS.filter((card) => card.key in values).map((card) => ({
    key: card.key,
    label: card.label,
    help: card.help,
    value: card.format === "duration" ? formatDuration(values[card.key]) : formatCount(values[card.key]),
  }));
  for (const key of Object.keys(values).sort()) {
    if (known.has(key)) continue;
    const value = values[key];
    cards.push({
      key,
      label: humanKey(key),
      help: "",
      value: key.endsWith("_seconds") ? formatDuration(value) : formatCount(value),
    });
  }
  return cards;
}

export const WINDOW_LABELS: Record<FleetWindow, string> = {
  "1h": "the last hour",
  "24h": "the last 24 hours",
  "7d": "the last 7 days",
  "30d": "the last 30 days",
};

export function windowLabel(window: string): string {
  return WINDOW_LABELS[window as FleetWindow] ?? `the last ${window}`;
}

export function isEmpty(payload: FleetPayload): boolean {
  return !(payload.totals?.failed_attempts > 0);
}

export function emptyText(payload: FleetPayload): string {
  const scope = payload.dag_id ? ` of DAG ${payload.dag_id}` : "";
  return `No failed attempt${scope} in ${windowLabel(payload.window)}: nothing for airflow-resilience to report.`;
}

export function dayChart(payload: FleetPayload, width = 960): StackedChart {
  const items = (payload.by_day ?? []).map((day) => ({
    label: day.day,
    values: Object.fromEntries(KIND_ORDER.map((kind) => [kind, day[kind] ?? 0])),
  }));
  return stackedBars(items, KIND_ORDER, (kind) => kindSwatch(kind).fill, { width, shortLabel: shortDay });
}

export function reasonChart(payload: FleetPayload, width = 560): HBarChart {
  const rows = [...(payload.by_reason ?? [])].sort(
    (a, b) => b.count - a.count || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0),
  );
  return horizontalBars(
    rows.map((row) => ({
      key: row.reason,
      label: row.reason,
      value: row.count,
      valueText: formatCount(row.count),
      fill: kindSwatch(row.kind).fill,
    })),
    { width, labelWidth: 220 },
  );
}

const VERDICT_TOTALS: Record<string, keyof FleetTotals> = { grant: "grants", stock: "stock", exhausted: "exhausted" };

/** Grants vs stock vs exhausted (from the totals), plus manual/pending when by_verdict has any. */
export function verdictChart(payload: FleetPayload, width = 560): HBarChart {
  const counted = new Map((payload.by_verdict ?? []).map((row) => [row.verdict, row.count]));
  const items = VERDICT_ORDER.flatMap((verdict) => {
    const totalKey = VERDICT_TOTALS[verdict];
    const count = totalKey ? (payload.totals?.[totalKey] ?? counted.get(verdict) ?? 0) : (counted.get(verdict) ?? 0);
    if (!totalKey && count === 0) return [];
    return [{ key: verdict, label: verdict, value: count, valueText: formatCount(count), fill: verdictSwatch(verdict).fill }];
  });
  return horizontalBars(items, { width, labelWidth: 120 });
}

export function computeChart(payload: FleetPayload, width = 560): HBarChart {
  const redone = payload.totals?.redone_seconds ?? 0;
  const saved = payload.totals?.saved_seconds ?? 0;
  return horizontalBars(
    [
      { key: "redone", label: "redone", value: redone, valueText: formatDuration(redone), fill: kindSwatch("application").fill },
      { key: "saved", label: "saved", value: saved, valueText: formatDuration(saved), fill: verdictSwatch("grant").fill },
    ],
    { width, labelWidth: 120, valueWidth: 110, barHeight: 22 },
  );
}

export const TOP_LISTS = [
  { key: "dags", title: "Top DAGs" },
  { key: "tasks", title: "Top tasks" },
  { key: "pools", title: "Top pools" },
  { key: "hosts", title: "Top hosts" },
] as const;

export function topChart(rows: NameCount[] | null | undefined, width = 300): HBarChart {
  return horizontalBars(
    (rows ?? []).map((row) => ({
      key: row.name,
      label: row.name,
      value: row.count,
      valueText: formatCount(row.count),
      fill: "var(--chakra-colors-blue-400, #60a5fa)",
    })),
    { width, labelWidth: 150, valueWidth: 44, barHeight: 14, gap: 6 },
  );
}
