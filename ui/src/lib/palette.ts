// One color per failure kind and per verdict, shared by the badges (Chakra colorPalette names) and the SVG
// charts (the host's Chakra CSS variables, with a fallback for a page without them).

export interface Swatch {
  /** A Chakra v3 colorPalette, for Badge. */
  palette: string;
  /** A CSS color for SVG fill. */
  fill: string;
}

function swatch(palette: string, fallback: string): Swatch {
  return { palette, fill: `var(--chakra-colors-${palette}-500, ${fallback})` };
}

export const KIND_ORDER = ["infrastructure", "application", "timeout", "manual", "unknown"] as const;

export const KIND_SWATCHES: Record<string, Swatch> = {
  infrastructure: swatch("orange", "#f97316"),
  application: swatch("red", "#ef4444"),
  timeout: swatch("purple", "#a855f7"),
  manual: swatch("cyan", "#06b6d4"),
  unknown: swatch("gray", "#71717a"),
};

export const VERDICT_ORDER = ["grant", "stock", "exhausted", "manual", "pending"] as const;

export const VERDICT_SWATCHES: Record<string, Swatch> = {
  grant: swatch("green", "#22c55e"),
  stock: swatch("blue", "#3b82f6"),
  exhausted: swatch("red", "#ef4444"),
  manual: swatch("cyan", "#06b6d4"),
  pending: swatch("yellow", "#eab308"),
};

const FALLBACK: Swatch = swatch("gray", "#71717a");

export function kindSwatch(kind: string | null | undefined): Swatch {
  return (kind && KIND_SWATCHES[kind]) || FALLBACK;
}

export function verdictSwatch(verdict: string | null | undefined): Swatch {
  return (verdict && VERDICT_SWATCHES[verdict]) || FALLBACK;
}

export const VERDICT_HINTS: Record<string, string> = {
  grant: "infrastructure failure: the infrastructure budget paid for the retry, the task's own retries were kept",
  stock: "Airflow's own retries decided (not an infrastructure failure)",
  exhausted: "infrastructure failure, but the infrastructure budget or the circuit breaker said no",
  manual: "a person changed the task instance's state",
  pending: "the failure is not judged yet",
};

export const KIND_HINTS: Record<string, string> = {
  infrastructure: "the machine, pod or worker failed under the task, not the task's code",
  application: "the task's own code raised",
  timeout: "the task ran past its execution timeout",
  manual: "a person marked or cleared the task instance",
  unknown: "airflow-resilience could not tell why the attempt ended",
};
