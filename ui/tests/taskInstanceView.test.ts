import { describe, expect, it } from "vitest";

import {
  NO_FAILURE_TEXT,
  attemptRows,
  budgetLines,
  checkpointView,
  hasFailedAttempt,
  resumeText,
  shouldPoll,
  summaryLine,
  watermarkRows,
} from "../src/lib/taskInstanceView";
import type { Attempt } from "../src/lib/types";
import { taskInstancePayload } from "./fixtures/payloads";

describe("attemptRows", () => {
  it("turns the contract's example into two rows, oldest first", () => {
    const payload = taskInstancePayload();
    const rows = attemptRows({ attempts: [...payload.attempts].reverse() });
    expect(rows.map((row) => row.tryNumber)).toEqual([1, 2]);
    expect(rows[0]).toMatchObject({
      state: "failed",
      start: "2026-12-02 06:00:00 UTC",
      end: "2026-12-02 06:00:12 UTC",
      duration: "12.3 s",
      host: "worker-1",
      kind: "infrastructure",
      kindPalette: "orange",
      reason: "signal.sigkill",
      verdict: "grant",
      verdictPalette: "green",
      checkpoint: "yes",
      failed: true,
    });
    expect(rows[0].summary).toContain("SIGKILL");
    expect(rows[0].verdictHint).toContain("budget paid");
    expect(rows[1]).toMatchObject({ kind: null, reason: null, verdict: null, duration: "30 s", failed: false });
  });

  it.each([
    ["infrastructure", "orange"],
    ["application", "red"],
    ["timeout", "purple"],
    ["manual", "cyan"],
    ["unknown", "gray"],
    ["something-new", "gray"],
  ])("kind %s is %s", (kind, palette) => {
    const attempt = taskInstancePayload().attempts[0];
    const [row] = attemptRows({ attempts: [{ ...attempt, cause: { kind, reason: "r", summary: "s" } }] });
    expect(row.kindPalette).toBe(palette);
  });

  it.each([
    ["grant", "green"],
    ["stock", "blue"],
    ["exhausted", "red"],
    ["manual", "cyan"],
    ["pending", "yellow"],
  ])("verdict %s is %s", (verdict, palette) => {
    const attempt = taskInstancePayload().attempts[0];
    expect(attemptRows({ attempts: [{ ...attempt, verdict }] })[0].verdictPalette).toBe(palette);
  });

  it("fills in missing fields with a dash", () => {
    const bare: Attempt = {
      try_number: 1,
      state: null,
      start_date: null,
      end_date: null,
      duration_s: null,
      hostname: null,
      cause: null,
      verdict: null,
      checkpoint: false,
      recorded_at: null,
    };
    expect(attemptRows({ attempts: [bare] })[0]).toMatchObject({
      state: "—",
      start: "—",
      end: "—",
      duration: "—",
      host: "—",
      checkpoint: "no",
    });
  });
});

describe("hasFailedAttempt", () => {
  const ok = taskInstancePayload().attempts[1];
  it.each([
    [[ok], false],
    [[], false],
    [[{ ...ok, state: "running" }], false],
    [[{ ...ok, state: "failed" }], true],
    [[{ ...ok, state: "up_for_retry" }], true],
    [[ok, { ...ok, try_number: 2, cause: { kind: "application", reason: "exception", summary: "x" } }], true],
  ])("%#", (attempts, expected) => {
    expect(hasFailedAttempt({ attempts: attempts as Attempt[] })).toBe(expected);
  });

  it("the no-failure sentence", () => {
    expect(NO_FAILURE_TEXT).toBe("No failed attempt: nothing for airflow-resilience to do on this task instance.");
  });
});

describe("shouldPoll", () => {
  it.each([
    ["running", true],
    ["queued", true],
    ["up_for_retry", true],
    ["scheduled", true],
    ["success", false],
    ["failed", false],
    ["skipped", false],
    [null, false],
  ])("%s -> %s", (state, expected) => {
    expect(shouldPoll(state)).toBe(expected);
  });
});

describe("budgetLines", () => {
  it("says what is left of each budget", () => {
    const lines = budgetLines(taskInstancePayload().budgets);
    expect(lines.map((line) => [line.key, line.text])).toEqual([
      ["infra", "infrastructure retries: 2 of 3 left"],
      ["retries", "retries: 1 of 1 left"],
      ["breaker", "circuit breaker: closed (1 of 3 infrastructure failures in a row)"],
    ]);
    expect(lines.map((line) => line.percentUsed)).toEqual([33, 0, 33]);
  });

  it.each([
    [{ threshold: 3, in_a_row: 3, open: true }, "circuit breaker: open (3 of 3 infrastructure failures in a row)", 100, "red"],
    [{ threshold: 0, in_a_row: 0, open: false }, "circuit breaker: closed (0 of 0 infrastructure failures in a row)", 0, "green"],
  ])("breaker %j", (breaker, text, percentUsed, palette) => {
    const [line] = budgetLines({ infra: null, retries: null, breaker });
    expect(line).toMatchObject({ text, percentUsed, palette });
  });

  it("a spent budget is red", () => {
    const [line] = budgetLines({ infra: { limit: 3, used: 3, left: 0 }, retries: null, breaker: null });
    expect(line).toMatchObject({ text: "infrastructure retries: 0 of 3 left", percentUsed: 100, palette: "red" });
  });

  it("no budgets: no lines", () => {
    expect(budgetLines(null)).toEqual([]);
  });
});

describe("checkpointView", () => {
  it("the contract's example", () => {
    expect(checkpointView(taskInstancePayload().checkpoint)).toEqual({
      writtenBy: "try 2",
      generation: "0",
      loops: ["parts: 42 items done"],
      steps: "1 step done: provision",
      values: "rows",
      resume: "resume from try 1",
      size: "1.2 KB (1,234 bytes)",
      updated: "2026-12-02 06:01:29 UTC",
    });
  });

  it("no checkpoint", () => {
    expect(checkpointView(null)).toBeNull();
  });

  it("several loops sorted by name, no step, small size", () => {
    const base = taskInstancePayload().checkpoint!;
    const view = checkpointView({ ...base, loops: { zeta: 1, alpha: 0 }, steps: [], values: [], size_bytes: 80 });
    expect(view).toMatchObject({
      loops: ["alpha: 0 items done", "zeta: 1 item done"],
      steps: "no step done yet",
      values: "none",
      size: "80 B",
    });
  });

  it.each([
    ["resume", 1, "resume from try 1"],
    ["fresh", null, "fresh"],
    [null, null, "—"],
  ])("resumeText(%s, %s) -> %s", (plan, fromTry, expected) => {
    expect(resumeText(plan, fromTry)).toBe(expected);
  });
});

describe("watermarkRows", () => {
  it("held and committed rows", () => {
    expect(watermarkRows(taskInstancePayload().watermarks)).toEqual([
      expect.objectContaining({ name: "orders.updated_at", role: "committed", palette: "green", value: "42", version: "3" }),
      expect.objectContaining({ name: "customers.id", role: "held", palette: "yellow", value: '{"id":7}', version: "1" }),
    ]);
  });

  it("none", () => {
    expect(watermarkRows([])).toEqual([]);
    expect(watermarkRows(null)).toEqual([]);
  });
});

describe("summaryLine", () => {
  it.each([
    [{}, "etl.load: success, try 2, max_tries 2"],
    [{ map_index: 4, state: "running" }, "etl.load [4]: running, try 2, max_tries 2"],
    [{ state: null }, "etl.load: no state, try 2, max_tries 2"],
  ])("%j", (overrides, expected) => {
    expect(summaryLine(taskInstancePayload(overrides))).toBe(expected);
  });
});
