// Geometry of the fleet page's inline SVG charts (no chart library): pure functions from numbers to
// rectangles, ticks and labels. The components only draw what these return.

export interface Scale {
  max: number;
  step: number;
  ticks: number[];
}

/** A 0-based axis that covers maxValue in about `target` steps of 1, 2 or 5 times a power of ten (>= 1). */
export function niceScale(maxValue: number, target = 4): Scale {
  const top = Number.isFinite(maxValue) && maxValue > 0 ? maxValue : 0;
  if (top === 0) return { max: 1, step: 1, ticks: [0, 1] };
  const raw = top / Math.max(1, target);
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = power;
  for (const m of [1, 2, 5, 10]) {
    step = m * power;
    if (step >= raw) break;
  }
  step = Math.max(1, step);
  const max = Math.ceil(top / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) ticks.push(v);
  return { max, step, ticks };
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface StackSegment extends Rect {
  key: string;
  value: number;
  fill: string;
}

export interface StackBar {
  label: string;
  /** The x-axis label, or "" when skipped to avoid overlap. */
  shownLabel: string;
  x: number;
  width: number;
  total: number;
  segments: StackSegment[];
}

export interface StackedChart {
  width: number;
  height: number;
  plot: Rect;
  scale: Scale;
  ticks: { value: number; y: number }[];
  bars: StackBar[];
}

export interface StackedOptions {
  width?: number;
  height?: number;
  left?: number;
  right?: number;
  top?: number;
  bottom?: number;
  /** At most this many x labels. */
  maxLabels?: number;
  shortLabel?: (label: string) => string;
}

/**
 * Vertical bars, one per item, each a stack of segments in `keys` order (bottom first). Zero segments are
 * left out. Bars are at most 40 px wide and centered in their band.
 */
export function stackedBars(
  items: { label: string; values: Record<string, number> }[],
  keys: readonly string[],
  fills: (key: string) => string,
  options: StackedOptions = {},
): StackedChart {
  const {
    width = 640,
    height = 220,
    left = 36,
    right = 8,
    top = 8,
    bottom = 24,
    maxLabels = 10,
    shortLabel = (label: string) => label,
  } = options;
  const plot: Rect = { x: left, y: top, width: width - left - right, height: height - top - bottom };
  const totals = items.map((item) => keys.reduce((sum, key) => sum + Math.max(0, item.values[key] ?? 0), 0));
  const scale = niceScale(Math.max(0, ...totals));
  const yOf = (value: number) => plot.y + plot.height - (value / scale.max) * plot.height;
  const band = items.length ? plot.width / items.length : plot.width;
  const barWidth = Math.min(40, band * 0.7);
  const every = Math.max(1, Math.ceil(items.length / Math.max(1, maxLabels)));
  const bars = items.map((item, i) => {
    const x = plot.x + i * band + (band - barWidth) / 2;
    let base = 0;
    const segments: StackSegment[] = [];
    for (const key of keys) {
      const value = Math.max(0, item.values[key] ?? 0);
      if (value === 0) continue;
      const y = yOf(base + value);
      segments.push({ key, value, fill: fills(key), x, y, width: barWidth, height: yOf(base) - y });
      base += value;
    }
    return {
      label: item.label,
      shownLabel: i % every === 0 ? shortLabel(item.label) : "",
      x,
      width: barWidth,
      total: totals[i],
      segments,
    };
  });
  return { width, height, plot, scale, ticks: scale.ticks.map((value) => ({ value, y: yOf(value) })), bars };
}

export interface HBarRow {
  key: string;
  label: string;
  value: number;
  valueText: string;
  fill: string;
  y: number;
  barX: number;
  barWidth: number;
  barHeight: number;
}

export interface HBarChart {
  width: number;
  height: number;
  labelWidth: number;
  rows: HBarRow[];
}

export interface HBarOptions {
  width?: number;
  labelWidth?: number;
  valueWidth?: number;
  barHeight?: number;
  gap?: number;
  /** The scale's maximum; by default the largest value (so the longest bar spans the plot). */
  max?: number;
}

/** Horizontal bars with a label on the left and the value on the right; a non-zero value is at least 2 px. */
export function horizontalBars(
  items: { key?: string; label: string; value: number; fill: string; valueText?: string }[],
  options: HBarOptions = {},
): HBarChart {
  const { width = 520, labelWidth = 200, valueWidth = 80, barHeight = 18, gap = 6 } = options;
  const span = Math.max(0, width - labelWidth - valueWidth);
  const max = options.max ?? Math.max(0, ...items.map((item) => item.value));
  const rows = items.map((item, i) => {
    const value = Math.max(0, item.value);
    const scaled = max > 0 ? (value / max) * span : 0;
    return {
      key: item.key ?? item.label,
      label: item.label,
      value,
      valueText: item.valueText ?? String(item.value),
      fill: item.fill,
      y: i * (barHeight + gap),
      barX: labelWidth,
      barWidth: value > 0 ? Math.max(2, scaled) : 0,
      barHeight,
    };
  });
  const height = rows.length ? rows.length * (barHeight + gap) - gap : 0;
  return { width, height, labelWidth, rows };
}

/** "2026-12-01" -> "12-01" (the year is in the page's window line). */
export function shortDay(day: string): string {
  const match = /^\d{4}-(\d{2}-\d{2})$/.exec(day);
  return match ? match[1] : day;
}

/** Cut a label to at most `max` characters with an ellipsis (SVG text does not wrap). */
export function clip(label: string, max: number): string {
  return label.length <= max ? label : `${label.slice(0, Math.max(1, max - 1))}…`;
}
