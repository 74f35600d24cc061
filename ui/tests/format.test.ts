import { describe, expect, it } from "vitest";

import { formatBytes, formatCount, formatDuration, formatTimestamp, formatValue, plural } from "../src/lib/format";

describe("formatDuration", () => {
  it.each([
    [null, "—"],
    [undefined, "—"],
    [Number.NaN, "—"],
    [-1, "—"],
    [0, "0 s"],
    [0.4, "0.4 s"],
    [12.3, "12.3 s"],
    [30, "30 s"],
    [59.94, "59.9 s"],
    [59.96, "1 min"],
    [60, "1 min"],
    [125, "2 min 5 s"],
    [3599, "59 min 59 s"],
    [3600, "1 h"],
    [4800, "1 h 20 min"],
    [4830, "1 h 20 min"],
    [86399, "23 h 59 min"],
    [86400, "1 d"],
    [97200, "1 d 3 h"],
    [40.5, "40.5 s"],
    [1200, "20 min"],
  ])("%s s -> %s", (seconds, expected) => {
    expect(formatDuration(seconds as number | null | undefined)).toBe(expected);
  });
});

describe("formatBytes", () => {
  it.each([
    [null, "—"],
    [-5, "—"],
    [0, "0 B"],
    [512, "512 B"],
    [1023, "1023 B"],
    [1024, "1 KB"],
    [1234, "1.2 KB"],
    [1536, "1.5 KB"],
    [10 * 1024 * 1024, "10 MB"],
    [3.5 * 1024 ** 3, "3.5 GB"],
    [2 * 1024 ** 4, "2 TB"],
  ])("%s -> %s", (bytes, expected) => {
    expect(formatBytes(bytes as number | null)).toBe(expected);
  });
});

describe("formatCount", () => {
  it.each([
    [0, "0"],
    [999, "999"],
    [1000, "1,000"],
    [1234567, "1,234,567"],
    [2.6, "3"],
    [null, "—"],
  ])("%s -> %s", (value, expected) => {
    expect(formatCount(value as number | null)).toBe(expected);
  });
});

describe("formatTimestamp", () => {
  it.each([
    ["2026-12-02T06:00:00+00:00", "2026-12-02 06:00:00 UTC"],
    ["2026-12-02T08:30:05+02:00", "2026-12-02 06:30:05 UTC"],
    ["2026-12-02T06:00:12.345678+00:00", "2026-12-02 06:00:12 UTC"],
    ["2026-01-09T00:00:00Z", "2026-01-09 00:00:00 UTC"],
    [null, "—"],
    ["", "—"],
    ["not a date", "not a date"],
  ])("%s -> %s", (iso, expected) => {
    expect(formatTimestamp(iso)).toBe(expected);
  });
});

describe("formatValue and plural", () => {
  it.each([
    [42, "42"],
    ["2026-12-01", "2026-12-01"],
    [{ id: 7 }, '{"id":7}'],
    [[1, 2], "[1,2]"],
    [null, "—"],
    [true, "true"],
  ])("formatValue(%j) -> %s", (value, expected) => {
    expect(formatValue(value)).toBe(expected);
  });

  it.each([
    [1, "item", "1 item"],
    [0, "item", "0 items"],
    [42, "item", "42 items"],
    [1234, "byte", "1,234 bytes"],
  ])("plural(%s, %s) -> %s", (count, word, expected) => {
    expect(plural(count, word)).toBe(expected);
  });
});
