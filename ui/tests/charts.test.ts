import { describe, expect, it } from "vitest";

import { clip, horizontalBars, niceScale, shortDay, stackedBars } from "../src/lib/charts";

describe("niceScale", () => {
  it.each([
    [0, 1, 1, [0, 1]],
    [-3, 1, 1, [0, 1]],
    [Number.NaN, 1, 1, [0, 1]],
    [1, 1, 1, [0, 1]],
    [3, 3, 1, [0, 1, 2, 3]],
    [4, 4, 1, [0, 1, 2, 3, 4]],
    [6, 6, 2, [0, 2, 4, 6]],
    [7, 8, 2, [0, 2, 4, 6, 8]],
    [10, 10, 5, [0, 5, 10]],
    [37, 40, 10, [0, 10, 20, 30, 40]],
    [95, 100, 50, [0, 50, 100]],
    [1234, 1500, 500, [0, 500, 1000, 1500]],
  ])("max %s -> %s by %s", (value, max, step, ticks) => {
    expect(niceScale(value)).toEqual({ max, step, ticks });
  });
});

describe("stackedBars", () => {
  const items = [
    { label: "2026-12-01", values: { infrastructure: 2, application: 1, timeout: 0 } },
    { label: "2026-12-02", values: { infrastructure: 3, application: 0, timeout: 1 } },
  ];
  const chart = stackedBars(items, ["infrastructure", "application", "timeout"], (key) => `fill-${key}`, {
    width: 200,
    height: 120,
    left: 20,
    right: 0,
    top: 10,
    bottom: 10,
  });

  it("lays out the plot and the scale", () => {
    expect(chart.plot).toEqual({ x: 20, y: 10, width: 180, height: 100 });
    expect(chart.scale.max).toBe(4);
    expect(chart.ticks[0]).toEqual({ value: 0, y: 110 });
    expect(chart.ticks.at(-1)).toEqual({ value: 4, y: 10 });
  });

  it("stacks the segments bottom up and leaves zeros out", () => {
    const [first, second] = chart.bars;
    expect(first.total).toBe(3);
    expect(first.segments.map((s) => [s.key, s.value, s.y, s.height, s.fill])).toEqual([
      ["infrastructure", 2, 60, 50, "fill-infrastructure"],
      ["application", 1, 35, 25, "fill-application"],
    ]);
    expect(second.segments.map((s) => s.key)).toEqual(["infrastructure", "timeout"]);
    // The top of the tallest bar is the top of the plot.
    expect(second.segments.at(-1)!.y).toBe(10);
  });

  it("centers bars of at most 40 px in their band", () => {
    expect(chart.bars.map((bar) => [bar.x, bar.width])).toEqual([
      [45, 40],
      [135, 40],
    ]);
  });

  it("thins out x labels", () => {
    const days = Array.from({ length: 30 }, (_, i) => ({ label: `d${i}`, values: { a: 1 } }));
    const many = stackedBars(days, ["a"], () => "x", { maxLabels: 10, shortLabel: (l) => l.toUpperCase() });
    const shown = many.bars.filter((bar) => bar.shownLabel);
    expect(shown.length).toBe(10);
    expect(shown[0].shownLabel).toBe("D0");
    expect(many.bars[1].shownLabel).toBe("");
  });

  it("no item: an empty chart with a unit scale", () => {
    const empty = stackedBars([], ["a"], () => "x");
    expect(empty.bars).toEqual([]);
    expect(empty.scale.max).toBe(1);
  });
});

describe("horizontalBars", () => {
  it("scales to the largest value and stacks rows", () => {
    const chart = horizontalBars(
      [
        { label: "signal.sigkill", value: 4, fill: "a" },
        { label: "k8s.evicted", value: 2, fill: "b", valueText: "two" },
        { label: "zero", value: 0, fill: "c" },
        { label: "tiny", value: 0.001, fill: "d" },
      ],
      { width: 300, labelWidth: 100, valueWidth: 0, barHeight: 10, gap: 5 },
    );
    expect(chart.height).toBe(4 * 15 - 5);
    expect(chart.rows.map((row) => [row.key, row.y, row.barX, row.barWidth, row.valueText])).toEqual([
      ["signal.sigkill", 0, 100, 200, "4"],
      ["k8s.evicted", 15, 100, 100, "two"],
      ["zero", 30, 100, 0, "0"],
      ["tiny", 45, 100, 2, "0.001"],
    ]);
  });

  it("an explicit max, and no rows", () => {
    expect(horizontalBars([{ label: "a", value: 5, fill: "x" }], { width: 200, labelWidth: 0, valueWidth: 0, max: 10 }).rows[0].barWidth).toBe(100);
    expect(horizontalBars([]).height).toBe(0);
  });
});

describe("labels", () => {
  it.each([
    ["2026-12-01", "12-01"],
    ["week 48", "week 48"],
  ])("shortDay(%s) -> %s", (day, expected) => {
    expect(shortDay(day)).toBe(expected);
  });

  it.each([
    ["short", 10, "short"],
    ["exactly10!", 10, "exactly10!"],
    ["much longer label", 10, "much long…"],
  ])("clip(%s, %s) -> %s", (label, max, expected) => {
    expect(clip(label, max)).toBe(expected);
  });
});
