// The task-instance payload turned into what the Resilience tab shows: rows, lines, panels. Pure.

import { DASH, formatBytes, formatCount, formatDuration, formatTimestamp, formatValue, plural } from "./format";
import { KIND_HINTS, VERDICT_HINTS, kindSwatch, verdictSwatch } from "./palette";
import type { Attempt, Budgets, Checkpoint, TaskInstancePayload, Watermark } from "./types";

export interface AttemptRow {
  tryNumber: number;
  state: string;
  start: string;
  end: string;
  duration: string;
  host: string;
  kind: string | null;
  kindPalette: string;
  kindHint: string;
  reason: string | null;
  summary: string | null;
  verdict: string | null;
  verdictPalette: string;
  verdictHint: string;
  checkpoint: string;
  failed: boolean;
}

const FAILED_STATES = new Set(["failed", "up_for_retry", "upstream_failed"]);

export function attemptFailed(attempt: Attempt): boolean {
  return attempt.cause !== null || (attempt.state !== null && FAILED_STATES.has(attempt.state));
}

export function attemptRow(attempt: Attempt): AttemptRow {
  const kind = attempt.cause?.kind ?? null;
  const verdict = attempt.verdict ?? null;
  return {
    tryNumber: attempt.try_number,
    state: attempt.state ?? DASH,
    start: formatTimestamp(attempt.start_date),
    end: formatTimestamp(attempt.end_date),
    duration: formatDuration(attempt.duration_s),
    host: attempt.hostname || DASH,
    kind,
    kindPalette: kindSwatch(kind).palette,
    kindHint: (kind && KIND_HINTS[kind]) || "",
    reason: attempt.cause?.reason || null,
    summary: attempt.cause?.summary || null,
    verdict,
    verdictPalette: verdictSwatch(verdict).palette,
    verdictHint: (verdict && VERDICT_HINTS[verdict]) || "",
    checkpoint: attempt.checkpoint ? "yes" : "no",
    failed: attemptFailed(attempt),
  };
}

/** One row per attempt, oldest try first. */
export function attemptRows(payload: Pick<TaskInstancePayload, "attempts">): AttemptRow[] {
  return [...(payload.attempts ?? [])].sort((a, b) => a.try_number - b.try_number).map(attemptRow);
}

export function hasFailedAttempt(payload: Pick<TaskInstancePayload, "attempts">): boolean {
  return (payload.attempts ?? []).some(attemptFailed);
}

/** States in which the task instance may still change: the tab refetches every 10 s while in one. */
export const LIVE_STATES = new Set([
  "running",
  "queued",
  "up_for_retry",
  "scheduled",
  "restarting",
  "deferred",
  "up_for_reschedule",
]);

export function shouldPoll(state: string | null | undefined): boolean {
  return !!state && LIVE_STATES.has(state);
}

export const POLL_INTERVAL_MS = 10_000;

export interface BudgetLine {
  key: "infra" | "retries" | "breaker";
  label: string;
  text: string;
  /** 0..100: how much is used (budgets) or how close to opening (breaker). */
  percentUsed: number;
  palette: string;
  detail: string;
}

function percent(part: number, whole: number): number {
  if (!(whole > 0)) return part > 0 ? 100 : 0;
  return Math.max(0, Math.min(100, Math.round((part / whole) * 100)));
}

export function budgetLines(budgets: Budgets | null | undefined): BudgetLine[] {
  const lines: BudgetLine[] = [];
  const infra = budgets?.infra;
  if (infra) {
    lines.push({
      key: "infra",
      label: "Infrastructure budget",
      text: `infrastructure retries: ${formatCount(infra.left)} of ${formatCount(infra.limit)} left`,
      percentUsed: percent(infra.used, infra.limit),
      palette: infra.left > 0 ? "orange" : "red",
      detail: `${formatCount(infra.used)} used by infrastructure failures, on top of the task's own retries`,
    });
  }
  const retries = budgets?.retries;
  if (retries) {
    lines.push({
      key: "retries",
      label: "Task retries",
      text: `retries: ${formatCount(retries.left)} of ${formatCount(retries.limit)} left`,
      percentUsed: percent(retries.used, retries.limit),
      palette: retries.left > 0 ? "blue" : "red",
      detail: `${formatCount(retries.used)} used by application failures`,
    });
  }
  const breaker = budgets?.breaker;
  if (breaker) {
    const state = breaker.open ? "open" : "closed";
    lines.push({
      key: "breaker",
      label: "Circuit breaker",
      text:
        `circuit breaker: ${state} (${formatCount(breaker.in_a_row)} of ${formatCount(breaker.threshold)} ` +
        `infrastructure failures in a row)`,
      percentUsed: breaker.open ? 100 : percent(breaker.in_a_row, breaker.threshold),
      palette: breaker.open ? "red" : "green",
      detail: breaker.open
        ? "open: infrastructure failures are no longer paid by the budget until an attempt succeeds"
        : `opens after ${plural(breaker.threshold, "infrastructure failure")} in a row`,
    });
  }
  return lines;
}

export interface CheckpointView {
  writtenBy: string;
  generation: string;
  /** "parts: 42 items done", one per loop. */
  loops: string[];
  steps: string;
  values: string;
  resume: string;
  size: string;
  updated: string;
}

export function resumeText(plan: string | null | undefined, fromTry: number | null | undefined): string {
  if (!plan) return DASH;
  if (fromTry === null || fromTry === undefined) return plan;
  return `${plan} from try ${fromTry}`;
}

export function checkpointView(checkpoint: Checkpoint | null | undefined): CheckpointView | null {
  if (!checkpoint) return null;
  const loops = Object.entries(checkpoint.loops ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, done]) => `${name}: ${plural(done, "item")} done`);
  const steps = checkpoint.steps ?? [];
  const values = checkpoint.values ?? [];
  const size =
    checkpoint.size_bytes === null || checkpoint.size_bytes === undefined
      ? DASH
      : checkpoint.size_bytes < 1024
        ? formatBytes(checkpoint.size_bytes)
        : `${formatBytes(checkpoint.size_bytes)} (${plural(checkpoint.size_bytes, "byte")})`;
  return {
    writtenBy: `try ${checkpoint.try_number}`,
    generation: String(checkpoint.generation),
    loops,
    steps: steps.length ? `${plural(steps.length, "step")} done: ${steps.join(", ")}` : "no step done yet",
    values: values.length ? values.join(", ") : "none",
    resume: resumeText(checkpoint.plan, checkpoint.from_try),
    size,
    updated: formatTimestamp(checkpoint.updated_at),
  };
}

export interface WatermarkRow {
  key: string;
  name: string;
  role: string;
  palette: string;
  value: string;
  version: string;
  at: string;
}

export function watermarkRows(watermarks: Watermark[] | null | undefined): WatermarkRow[] {
  return (watermarks ?? []).map((mark, index) => ({
    key: `${mark.name}:${mark.role}:${index}`,
    name: mark.name,
    role: mark.role === "holds" ? "held" : mark.role === "committed" ? "committed" : mark.role,
    palette: mark.role === "holds" ? "yellow" : mark.role === "committed" ? "green" : "gray",
    value: formatValue(mark.value),
    version: mark.version === null || mark.version === undefined ? DASH : String(mark.version),
    at: formatTimestamp(mark.at),
  }));
}

export const NO_FAILURE_TEXT = "No failed attempt: nothing for airflow-resilience to do on this task instance.";

export function summaryLine(payload: TaskInstancePayload): string {
  const mapped = payload.map_index >= 0 ? ` [${payload.map_index}]` : "";
  return (
    `${payload.dag_id}.${payload.task_id}${mapped}: ${payload.state ?? "no state"}, ` +
    `try ${payload.try_number}, max_tries ${payload.max_tries}`
  );
}
