import { act, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { TaskInstanceTab } from "../src/components/TaskInstanceTab";
import type { TaskInstancePayload } from "../src/lib/types";
import { taskInstancePayload } from "./fixtures/payloads";
import { renderInHost, stubFetch } from "./render";

const props = { dagId: "etl", runId: "scheduled__2026-12-02T06:00:00+00:00", taskId: "load", mapIndex: undefined };

function serve(payload: TaskInstancePayload | (() => TaskInstancePayload)) {
  return stubFetch(() => ({ body: typeof payload === "function" ? payload() : payload }));
}

async function loaded() {
  return screen.findByTestId("attempt-row-1");
}

afterEach(() => {
  vi.useRealTimers();
});

describe("TaskInstanceTab", () => {
  it("shows both attempts, the verdict, the budgets, the checkpoint and the watermarks", async () => {
    const fetchMock = serve(taskInstancePayload());
    renderInHost(<TaskInstanceTab {...props} />);
    expect(screen.getByTestId("resilience-tab")).toHaveProperty("textContent", expect.stringContaining("Resilience"));
    await loaded();

    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe(
      new URL(
        "resilience/ui/v1/dags/etl/runs/scheduled__2026-12-02T06%3A00%3A00%2B00%3A00/tasks/load?map_index=-1",
        document.baseURI,
      ).href,
    );
    expect(init?.credentials).toBe("same-origin");

    expect(screen.getByTestId("attempt-kind-1").textContent).toBe("infrastructure");
    expect(screen.getByTestId("attempt-reason-1").textContent).toBe("signal.sigkill");
    expect(screen.getByTestId("attempt-verdict-1").textContent).toBe("grant");
    expect(screen.getByTestId("attempt-verdict-1").getAttribute("title")).toContain("budget paid");
    const first = within(screen.getByTestId("attempt-row-1"));
    expect(first.getByText("2026-12-02 06:00:00 UTC")).toBeTruthy();
    expect(first.getByText("12.3 s")).toBeTruthy();
    expect(first.getByText("worker-1")).toBeTruthy();
    expect(first.getByText(/killed by SIGKILL/)).toBeTruthy();
    const second = within(screen.getByTestId("attempt-row-2"));
    expect(second.getByText("success")).toBeTruthy();
    expect(second.getByText("30 s")).toBeTruthy();
    expect(screen.getByTestId("attempt-verdict-2").textContent).toBe("—");

    expect(screen.getByTestId("budget-infra").textContent).toContain("infrastructure retries: 2 of 3 left");
    expect(screen.getByTestId("budget-retries").textContent).toContain("retries: 1 of 1 left");
    expect(screen.getByTestId("budget-breaker").textContent).toContain("circuit breaker: closed (1 of 3");

    const checkpoint = screen.getByTestId("checkpoint-panel");
    expect(checkpoint.textContent).toContain("parts: 42 items done");
    expect(checkpoint.textContent).toContain("1 step done: provision");
    expect(checkpoint.textContent).toContain("resume from try 1");
    expect(checkpoint.textContent).toContain("1.2 KB (1,234 bytes)");
    expect(checkpoint.textContent).toContain("2026-12-02 06:01:29 UTC");
    expect(screen.queryByTestId("resilience-empty-checkpoint")).toBeNull();

    const watermarks = within(screen.getByTestId("watermarks-panel"));
    expect(watermarks.getByText("orders.updated_at")).toBeTruthy();
    expect(watermarks.getByText("committed")).toBeTruthy();
    expect(watermarks.getByText("held")).toBeTruthy();
    expect(watermarks.getByText('{"id":7}')).toBeTruthy();

    // There is a failed attempt: no "nothing to do" line; no polling for a finished task.
    expect(screen.queryByTestId("resilience-no-failure")).toBeNull();
    expect(screen.queryByTestId("resilience-live")).toBeNull();
  });

  it("a mapped task instance asks for its map index", async () => {
    const fetchMock = serve(taskInstancePayload({ map_index: 3 }));
    renderInHost(<TaskInstanceTab {...props} mapIndex="3" />);
    await loaded();
    expect(String(fetchMock.mock.calls[0][0])).toMatch(/\/tasks\/load\?map_index=3$/);
    expect(screen.getByTestId("resilience-summary").textContent).toBe("etl.load [3]: success, try 2, max_tries 2");
  });

  it("no failure, no checkpoint, no watermark: the empty states", async () => {
    const base = taskInstancePayload();
    serve({ ...base, try_number: 1, attempts: [{ ...base.attempts[1], try_number: 1 }], checkpoint: null, watermarks: [] });
    renderInHost(<TaskInstanceTab {...props} />);
    await loaded();
    expect(screen.getByTestId("resilience-no-failure").textContent).toBe(
      "No failed attempt: nothing for airflow-resilience to do on this task instance.",
    );
    const empty = screen.getByTestId("resilience-empty-checkpoint");
    expect(empty.textContent).toBe("This task never checkpointed — see docs/checkpoints.md");
    expect(within(empty).getByRole("link").getAttribute("href")).toBe(
      "https://github.com/airflow-resilience/airflow-resilience/blob/main/docs/checkpoints.md",
    );
    const noMarks = screen.getByTestId("resilience-empty-watermarks");
    expect(noMarks.textContent).toContain("holds no watermarks");
    expect(within(noMarks).getByRole("link").getAttribute("href")).toMatch(/docs\/incremental-loads\.md$/);
    // The attempt is still shown.
    expect(screen.getByTestId("attempt-row-1").textContent).toContain("success");
  });

  it.each([
    [401, { detail: "Not authenticated" }, "Log in to Airflow to see this"],
    [403, { detail: "Forbidden" }, "You do not have access to this DAG's task instances"],
    [404, { detail: "Not Found" }, "No such task instance"],
    [500, { detail: "database is locked" }, "Error 500: database is locked"],
  ])("HTTP %s shows %j", async (status, body, message) => {
    stubFetch(() => ({ status, body }));
    renderInHost(<TaskInstanceTab {...props} />);
    expect((await screen.findByTestId("resilience-error")).textContent).toContain(message);
    expect(screen.queryByTestId("attempt-row-1")).toBeNull();
  });

  it("the refresh button fetches again and shows the new answer", async () => {
    let payload = taskInstancePayload({ state: "failed" });
    const fetchMock = stubFetch(() => ({ body: payload }));
    renderInHost(<TaskInstanceTab {...props} />);
    await loaded();
    expect(screen.queryByTestId("attempt-row-3")).toBeNull();

    const base = payload.attempts[0];
    payload = { ...payload, attempts: [...payload.attempts, { ...base, try_number: 3, verdict: "exhausted" }] };
    await waitFor(() => expect(screen.getByTestId("resilience-refresh").hasAttribute("disabled")).toBe(false));
    fireEvent.click(screen.getByTestId("resilience-refresh"));
    expect((await screen.findByTestId("attempt-verdict-3")).textContent).toBe("exhausted");
    expect(fetchMock).toHaveBeenCalledTimes(2);
  });

  it("refetches every 10 s while running, and stops once finished", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const answers = [
      taskInstancePayload({ state: "running" }),
      taskInstancePayload({ state: "up_for_retry" }),
      taskInstancePayload({ state: "success" }),
    ];
    let calls = 0;
    const fetchMock = stubFetch(() => ({ body: answers[Math.min(calls++, answers.length - 1)] }));
    renderInHost(<TaskInstanceTab {...props} />);
    await loaded();
    expect(screen.getByTestId("resilience-live").textContent).toContain("refreshing every 10 s while running");

    await act(async () => {
      await vi.advanceTimersByTimeAsync(9_000);
    });
    expect(fetchMock).toHaveBeenCalledTimes(1);
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1_500);
    });
    await waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(2));
    await waitFor(() => expect(screen.getByTestId("resilience-live").textContent).toContain("up_for_retry"));

    await act(async () => {
      await vi.advanceTimersByTimeAsync(10_500);
    });
    await waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(3));
    await waitFor(() => expect(screen.queryByTestId("resilience-live")).toBeNull());

    await act(async () => {
      await vi.advanceTimersByTimeAsync(30_000);
    });
    expect(fetchMock).toHaveBeenCalledTimes(3);
  });
});
