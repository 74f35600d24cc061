// The JSON of the resilience UI API (resilience/ui/v1/...), as the Python routes return it.

export type CauseKind = "application" | "infrastructure" | "timeout" | "manual" | "unknown";
export type Verdict = "grant" | "stock" | "exhausted" | "manual" | "pending";

export interface Cause {
  kind: CauseKind | string;
  reason: string;
  summary: string;
}

export interface Attempt {
  try_number: number;
  state: string | null;
  start_date: string | null;
  end_date: string | null;
  duration_s: number | null;
  hostname: string | null;
  cause: Cause | null;
  verdict: Verdict | string | null;
  checkpoint: boolean;
  recorded_at: string | null;
}

export interface Budget {
  limit: number;
  used: number;
  left: number;
}

export interface Breaker {
  threshold: number;
  in_a_row: number;
  open: boolean;
}

export interface Budgets {
  infra: Budget | null;
  retries: Budget | null;
  breaker: Breaker | null;
}

export interface Checkpoint {
  try_number: number;
  generation: number;
  plan: string | null;
  from_try: number | null;
  steps: string[];
  loops: Record<string, number>;
  values: string[];
  size_bytes: number | null;
  updated_at: string | null;
}

export interface Watermark {
  name: string;
  role: "holds" | "committed" | string;
  value: unknown;
  version: number | null;
  at: string | null;
}

export interface TaskInstancePayload {
  dag_id: string;
  run_id: string;
  task_id: string;
  map_index: number;
  state: string | null;
  try_number: number;
  max_tries: number;
  attempts: Attempt[];
  budgets: Budgets | null;
  checkpoint: Checkpoint | null;
  watermarks: Watermark[];
}

export type FleetWindow = "1h" | "24h" | "7d" | "30d";

export interface FleetTotals {
  failed_attempts: number;
  infrastructure: number;
  application: number;
  timeout: number;
  manual: number;
  unknown: number;
  grants: number;
  stock: number;
  exhausted: number;
  breakers_opened: number;
  retries_kept: number;
  redone_seconds: number;
  saved_seconds: number;
  [key: string]: number;
}

export interface NameCount {
  name: string;
  count: number;
}

export interface FleetDay {
  day: string;
  infrastructure: number;
  application: number;
  timeout: number;
  manual: number;
  unknown: number;
}

export interface FleetPayload {
  since: string;
  until: string;
  window: FleetWindow | string;
  dag_id: string | null;
  totals: FleetTotals;
  by_reason: { kind: CauseKind | string; reason: string; count: number }[];
  by_verdict: { verdict: Verdict | string; count: number }[];
  top: { dags: NameCount[]; tasks: NameCount[]; pools: NameCount[]; hosts: NameCount[] };
  by_day: FleetDay[];
}
