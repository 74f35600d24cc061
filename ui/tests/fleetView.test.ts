import { describe, expect, it } from "vitest";

import {
  computeChart,
  dayChart,
  emptyText,
  isEmpty,
  reasonChart,
  topChart,
  totalCards,
  verdictChart,
  windowLabel,
} from "../src/lib/fleetView";
import { fleetPayload } from "./fixtures/payloads";

describe("totalCards", () => {
  it("one card per totals key, in a fixed order, durations as durations", () => {
    const payload = fleetPayload();
    const cards = totalCards(payload.totals);
    expect(cards.map((card) => card.key).sort()).toEqual(Object.keys(payload.totals).sort());
    expect(cards.map((card) => [card.key, card.value])).toEqual([
      ["failed_attempts", "10"],
      ["infrastructure", "6"],
      ["application", "3"],
      ["timeout", "1"],
      ["manual", "0"],
      ["unknown", "0"],
      ["grants", "5"],
      ["stock", "4"],
      ["exhausted", "1"],
      ["breakers_opened", "1"],
      ["retries_kept", "5"],
      ["redone_seconds", "40.5 s"],
      ["saved_seconds", "1 h 20 min"],
    ]);
  });

  it("keys the page does not know yet still get a card", () => {
    const cards = totalCards({ failed_attempts: 2, lost_seconds: 90, pods_evicted: 1234 });
    expect(cards.map((card) => [card.key, card.label, card.value])).toEqual([
      ["failed_attempts", "Failed attempts", "2"],
      ["lost_seconds", "Lost seconds", "1 min 30 s"],
      ["pods_evicted", "Pods evicted", "1,234"],
    ]);
  });
});

describe("window and empty state", () => {
  it.each([
    ["1h", "the last hour"],
    ["24h", "the last 24 hours"],
    ["7d", "the last 7 days"],
    ["30d", "the last 30 days"],
    ["90d", "the last 90d"],
  ])("windowLabel(%s)", (window, expected) => {
    expect(windowLabel(window)).toBe(expected);
  });

  it.each([
    [{}, false, "No failed attempt in the last 7 days: nothing for airflow-resilience to report."],
    [
      { dag_id: "etl", window: "24h" },
      false,
      "No failed attempt of DAG etl in the last 24 hours: nothing for airflow-resilience to report.",
    ],
  ])("%j", (overrides, empty, text) => {
    const payload = fleetPayload(overrides);
    expect(isEmpty(payload)).toBe(empty);
    expect(emptyText(payload)).toBe(text);
  });

  it("failed_attempts 0 is empty", () => {
    const payload = fleetPayload();
    expect(isEmpty({ ...payload, totals: { ...payload.totals, failed_attempts: 0 } })).toBe(true);
  });
});

describe("charts from the payload", () => {
  it("by day: one bar per day, stacked by kind", () => {
    const chart = dayChart(fleetPayload());
    expect(chart.bars.map((bar) => [bar.label, bar.shownLabel, bar.total])).toEqual([
      ["2026-11-30", "11-30", 1],
      ["2026-12-01", "12-01", 3],
      ["2026-12-02", "12-02", 6],
    ]);
    expect(chart.bars[2].segments.map((s) => s.key)).toEqual(["infrastructure", "application", "timeout"]);
    expect(chart.bars[2].segments[0].fill).toContain("--chakra-colors-orange-500");
  });

  it("by reason: largest first, colored by kind", () => {
    const chart = reasonChart(fleetPayload());
    expect(chart.rows.map((row) => [row.key, row.value])).toEqual([
      ["signal.sigkill", 4],
      ["exception.ValueError", 3],
      ["k8s.evicted", 2],
      ["timeout.execution", 1],
    ]);
    expect(chart.rows[1].fill).toContain("red");
  });

  it("verdicts: grants, stock and exhausted from the totals; manual/pending only when counted", () => {
    expect(verdictChart(fleetPayload()).rows.map((row) => [row.key, row.value])).toEqual([
      ["grant", 5],
      ["stock", 4],
      ["exhausted", 1],
    ]);
    const payload = fleetPayload({ by_verdict: [{ verdict: "pending", count: 2 }] });
    expect(verdictChart(payload).rows.map((row) => row.key)).toEqual(["grant", "stock", "exhausted", "pending"]);
  });

  it("compute: redone vs saved as durations on one scale", () => {
    const rows = computeChart(fleetPayload()).rows;
    expect(rows.map((row) => [row.key, row.valueText])).toEqual([
      ["redone", "40.5 s"],
      ["saved", "1 h 20 min"],
    ]);
    expect(rows[0].barWidth).toBeLessThan(rows[1].barWidth);
  });

  it("top lists", () => {
    expect(topChart(fleetPayload().top.hosts).rows.map((row) => [row.key, row.valueText])).toEqual([
      ["worker-1", "6"],
      ["worker-2", "4"],
    ]);
    expect(topChart(undefined).rows).toEqual([]);
  });
});
