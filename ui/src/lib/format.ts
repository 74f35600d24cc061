// Pure formatting helpers: durations, byte sizes, timestamps, counts. No React, no DOM.

export const DASH = "—";

function isNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** Drop a trailing ".0": 12.0 -> "12", 12.34 -> "12.3". */
function oneDecimal(value: number): string {
  const text = value.toFixed(1);
  return text.endsWith(".0") ? text.slice(0, -2) : text;
}

/**
 * A duration in seconds as people read it: "0.4 s", "12.3 s", "2 min 5 s", "1 h 20 min", "3 d 4 h".
 * Two units at most; the smaller is dropped when it is 0. Null, negative or not a number: "—".
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (!isNumber(seconds) || seconds < 0) return DASH;
  if (seconds < 60) {
    const shown = oneDecimal(seconds);
    // 59.96 rounds to "60.0": say "1 min" instead of "60 s".
    if (shown !== "60") return `${shown} s`;
  }
  const whole = Math.round(seconds);
  const units: [number, string][] = [
    [86400, "d"],
    [3600, "h"],
    [60, "min"],
    [1, "s"],
  ];
  for (let i = 0; i < units.length - 1; i++) {
    const [size, label] = units[i];
    if (whole >= size) {
      const [nextSize, nextLabel] = units[i + 1];
      const big = Math.floor(whole / size);
      const small = Math.floor((whole - big * size) / nextSize);
      return small > 0 ? `${big} ${label} ${small} ${nextLabel}` : `${big} ${label}`;
    }
  }
  return `${whole} s`;
}

const BYTE_UNITS = ["KB", "MB", "GB", "TB"];

/** A size in bytes: "512 B", "1.2 KB", "3.4 MB" (1 KB = 1024 B). Null: "—". */
export function formatBytes(bytes: number | null | undefined): string {
  if (!isNumber(bytes) || bytes < 0) return DASH;
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  let value = bytes;
  let unit = "B";
  for (const next of BYTE_UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${oneDecimal(value)} ${unit}`;
}

/** An integer with thousands separators: 1234567 -> "1,234,567". */
export function formatCount(value: number | null | undefined): string {
  if (!isNumber(value)) return DASH;
  return Math.round(value)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function pad(value: number): string {
  return value.toString().padStart(2, "0");
}

/**
 * An ISO 8601 timestamp as "2026-12-02 06:00:12 UTC" (always UTC, like Airflow's default, and the same on
 * every machine). Null: "—"; a string that does not parse is returned as it is.
 */
export function formatTimestamp(iso: string | null | undefined): string {
  if (iso === null || iso === undefined || iso === "") return DASH;
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return iso;
  const d = new Date(time);
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`
  );
}

/** A watermark value for display: strings as they are, anything else as compact JSON. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return DASH;
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** "1 item" / "42 items". */
export function plural(count: number, one: string, many = `${one}s`): string {
  return `${formatCount(count)} ${count === 1 ? one : many}`;
}
