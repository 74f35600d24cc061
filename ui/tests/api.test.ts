import { describe, expect, it } from "vitest";

import {
  ApiError,
  detailText,
  errorMessage,
  fetchJson,
  fleetPath,
  normalizeMapIndex,
  resolveApiUrl,
  taskInstancePath,
} from "../src/lib/api";
import { stubFetch } from "./render";

describe("normalizeMapIndex", () => {
  it.each([
    [undefined, -1],
    [null, -1],
    ["", -1],
    ["-1", -1],
    ["0", 0],
    ["12", 12],
    [3, 3],
    [-1, -1],
    ["abc", -1],
    ["1.5", -1],
  ])("%j -> %s", (value, expected) => {
    expect(normalizeMapIndex(value as string | number | undefined)).toBe(expected);
  });
});

describe("taskInstancePath", () => {
  it.each([
    [
      { dagId: "etl", runId: "manual__2026-12-02T06:00:00+00:00", taskId: "load" },
      "resilience/ui/v1/dags/etl/runs/manual__2026-12-02T06%3A00%3A00%2B00%3A00/tasks/load?map_index=-1",
    ],
    [
      { dagId: "etl", runId: "r1", taskId: "group.load", mapIndex: "3" },
      "resilience/ui/v1/dags/etl/runs/r1/tasks/group.load?map_index=3",
    ],
    [
      { dagId: "a b", runId: "x/y?z#w&", taskId: "t%", mapIndex: 0 },
      "resilience/ui/v1/dags/a%20b/runs/x%2Fy%3Fz%23w%26/tasks/t%25?map_index=0",
    ],
  ])("%j", (key, expected) => {
    expect(taskInstancePath(key)).toBe(expected);
  });
});

describe("fleetPath", () => {
  it.each([
    ["7d", undefined, "resilience/ui/v1/fleet?since=7d"],
    ["1h", "", "resilience/ui/v1/fleet?since=1h"],
    ["24h", "  ", "resilience/ui/v1/fleet?since=24h"],
    ["30d", "etl", "resilience/ui/v1/fleet?since=30d&dag_id=etl"],
    ["7d", " my dag+x ", "resilience/ui/v1/fleet?since=7d&dag_id=my+dag%2Bx"],
  ])("%s %j", (since, dagId, expected) => {
    expect(fleetPath(since, dagId)).toBe(expected);
  });

  it("dag_id survives a round trip through URLSearchParams", () => {
    const url = new URL(fleetPath("7d", "a+b c&d"), "http://host/");
    expect(url.searchParams.get("dag_id")).toBe("a+b c&d");
  });
});

describe("resolveApiUrl", () => {
  it.each([
    ["http://localhost:8080/", "http://localhost:8080/resilience/ui/v1/fleet?since=7d"],
    ["http://host/airflow/", "http://host/airflow/resilience/ui/v1/fleet?since=7d"],
    // The task-instance page's own URL is not the base: Airflow sets <base href> to its root.
    ["https://host/airflow/dags/etl/runs/r/tasks/t", "https://host/airflow/dags/etl/runs/r/tasks/resilience/ui/v1/fleet?since=7d"],
  ])("against %s", (base, expected) => {
    expect(resolveApiUrl("resilience/ui/v1/fleet?since=7d", base)).toBe(expected);
  });

  it("uses document.baseURI by default", () => {
    expect(resolveApiUrl("resilience/ui/v1/x")).toBe(new URL("resilience/ui/v1/x", document.baseURI).href);
  });
});

describe("errorMessage", () => {
  it.each([
    [401, null, "task-instance", "Log in to Airflow to see this"],
    [403, { detail: "Forbidden" }, "task-instance", "You do not have access to this DAG's task instances"],
    [404, { detail: "Not Found" }, "task-instance", "No such task instance"],
    [500, { detail: "database is locked" }, "task-instance", "Error 500: database is locked"],
    [502, "Bad Gateway", "task-instance", "Error 502: Bad Gateway"],
    [503, null, "task-instance", "Error 503"],
    [
      422,
      { detail: [{ loc: ["query", "since"], msg: "Input should be '1h', '24h', '7d' or '30d'" }] },
      "fleet",
      "Error 422: query.since: Input should be '1h', '24h', '7d' or '30d'",
    ],
    [401, null, "fleet", "Log in to Airflow to see this"],
  ] as const)("%s %j (%s)", (status, body, subject, expected) => {
    expect(errorMessage(status, body, subject)).toBe(expected);
  });
});

describe("detailText", () => {
  it.each([
    [null, ""],
    [{}, ""],
    [{ detail: "x" }, "x"],
    [{ detail: { reason: "y" } }, '{"reason":"y"}'],
    [{ detail: ["a", { msg: "b" }] }, "a; b"],
    ["  plain  ", "plain"],
  ])("%j -> %j", (body, expected) => {
    expect(detailText(body)).toBe(expected);
  });
});

describe("fetchJson", () => {
  it("sends the session cookie to the URL resolved against the base URI", async () => {
    const fetchMock = stubFetch(() => ({ body: { ok: 1 } }));
    await expect(fetchJson("resilience/ui/v1/fleet?since=7d", { baseURI: "http://host/airflow/" })).resolves.toEqual({
      ok: 1,
    });
    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("http://host/airflow/resilience/ui/v1/fleet?since=7d");
    expect(init?.credentials).toBe("same-origin");
  });

  it.each([
    [401, { detail: "Not authenticated" }, "Log in to Airflow to see this"],
    [403, { detail: "Forbidden" }, "You do not have access to this DAG's task instances"],
    [404, { detail: "Not Found" }, "No such task instance"],
    [500, { detail: "boom" }, "Error 500: boom"],
    [500, "<html>oops</html>", "Error 500: <html>oops</html>"],
  ])("HTTP %s -> ApiError %j", async (status, body, message) => {
    stubFetch(() => ({ status, body }));
    const failure = fetchJson("resilience/ui/v1/x");
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toMatchObject({ status, message });
  });

  it("a network failure is an ApiError without status", async () => {
    stubFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    await expect(fetchJson("resilience/ui/v1/x")).rejects.toMatchObject({
      status: null,
      message: "Could not reach the Airflow API server: Failed to fetch",
    });
  });

  it("a 200 that is not JSON is an error", async () => {
    stubFetch(() => ({ body: "<html>login</html>" }));
    await expect(fetchJson("resilience/ui/v1/x")).rejects.toMatchObject({
      message: "The API answered with something that is not JSON",
    });
  });
});
