import { act, fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { FILTER_DEBOUNCE_MS, FleetPage } from "../src/components/FleetPage";
import { fleetPayload } from "./fixtures/payloads";
import { renderInHost, stubFetch } from "./render";

afterEach(() => {
  vi.useRealTimers();
});

function serveFleet() {
  return stubFetch((url) => {
    const window = url.searchParams.get("since") ?? "7d";
    const dagId = url.searchParams.get("dag_id");
    const payload = fleetPayload({ window, dag_id: dagId });
    if (dagId === "quiet") {
      payload.totals = { ...payload.totals, failed_attempts: 0, infrastructure: 0, application: 0, timeout: 0 };
      payload.by_reason = [];
      payload.by_day = [];
    }
    return { body: payload };
  });
}

describe("FleetPage", () => {
  it("shows the totals, the reason rows, the verdicts and the top lists", async () => {
    const fetchMock = serveFleet();
    renderInHost(<FleetPage />);
    const fleet = await screen.findByTestId("resilience-fleet");
    await screen.findByTestId("fleet-total-failed_attempts");

    expect(String(fetchMock.mock.calls[0][0])).toBe(new URL("resilience/ui/v1/fleet?since=7d", document.baseURI).href);
    expect(fetchMock.mock.calls[0][1]?.credentials).toBe("same-origin");

    for (const key of Object.keys(fleetPayload().totals)) {
      expect(screen.getByTestId(`fleet-total-${key}`)).toBeTruthy();
    }
    expect(screen.getByTestId("fleet-total-failed_attempts").textContent).toContain("10");
    expect(screen.getByTestId("fleet-total-grants").textContent).toContain("Grants5");
    expect(screen.getByTestId("fleet-total-saved_seconds").textContent).toContain("1 h 20 min");
    expect(screen.getByTestId("fleet-total-redone_seconds").textContent).toContain("40.5 s");

    expect(screen.getByTestId("fleet-reason-signal.sigkill").textContent).toContain("signal.sigkill");
    expect(screen.getByTestId("fleet-reason-signal.sigkill").textContent).toContain("4");
    expect(screen.getByTestId("fleet-reason-k8s.evicted")).toBeTruthy();
    expect(screen.getByTestId("fleet-verdict-grant").textContent).toBe("grant: 5grant5");
    expect(screen.getByTestId("fleet-verdict-exhausted").textContent).toContain("1");
    expect(screen.getByTestId("fleet-compute-saved").textContent).toContain("1 h 20 min");
    expect(within(screen.getByTestId("fleet-top-hosts")).getByText("worker-1")).toBeTruthy();
    expect(within(screen.getByTestId("fleet-top-dags")).getByText("reports")).toBeTruthy();

    // The by-day chart: three bars, the last stacked from three kinds.
    const lastDay = screen.getByTestId("fleet-day-2026-12-02");
    expect(lastDay.querySelectorAll("rect").length).toBe(3);
    expect(within(fleet).getByText("12-02")).toBeTruthy();
    expect(screen.getByTestId("fleet-range").textContent).toBe(
      "All DAGs, the last 7 days: 2026-11-25 06:00:00 UTC to 2026-12-02 06:00:00 UTC",
    );
    expect(screen.queryByTestId("fleet-empty")).toBeNull();
  });

  it("the window selector refetches with since=<window>", async () => {
    const fetchMock = serveFleet();
    renderInHost(<FleetPage />);
    await screen.findByTestId("fleet-total-failed_attempts");
    const select = screen.getByTestId("fleet-window") as HTMLSelectElement;
    expect([...select.options].map((option) => option.value)).toEqual(["1h", "24h", "7d", "30d"]);
    fireEvent.change(select, { target: { value: "24h" } });
    await waitFor(() => expect(screen.getByTestId("fleet-range").textContent).toContain("the last 24 hours"));
    expect(String(fetchMock.mock.calls.at(-1)![0])).toMatch(/fleet\?since=24h$/);
  });

  it("the DAG filter waits for the typing to stop, then filters; no failure shows the empty state", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const fetchMock = serveFleet();
    renderInHost(<FleetPage />);
    await screen.findByTestId("fleet-total-failed_attempts");
    const calls = fetchMock.mock.calls.length;

    const input = screen.getByTestId("fleet-dag-filter");
    fireEvent.change(input, { target: { value: "qu" } });
    fireEvent.change(input, { target: { value: "quiet" } });
    await act(async () => {
      await vi.advanceTimersByTimeAsync(FILTER_DEBOUNCE_MS / 2);
    });
    expect(fetchMock.mock.calls.length).toBe(calls);
    await act(async () => {
      await vi.advanceTimersByTimeAsync(FILTER_DEBOUNCE_MS);
    });
    await waitFor(() => expect(screen.getByTestId("fleet-empty")).toBeTruthy());
    expect(fetchMock.mock.calls.length).toBe(calls + 1);
    expect(String(fetchMock.mock.calls.at(-1)![0])).toMatch(/fleet\?since=7d&dag_id=quiet$/);
    expect(screen.getByTestId("fleet-empty").textContent).toBe(
      "No failed attempt of DAG quiet in the last 7 days: nothing for airflow-resilience to report.",
    );
    expect(screen.getByTestId("fleet-total-failed_attempts").textContent).toContain("0");
    expect(screen.queryByTestId("fleet-by-reason")).toBeNull();
  });

  it.each([
    [401, "Log in to Airflow to see this"],
    [403, "You do not have access to the fleet view of these DAGs"],
    [500, "Error 500: boom"],
  ])("HTTP %s shows %j", async (status, message) => {
    stubFetch(() => ({ status, body: { detail: "boom" } }));
    renderInHost(<FleetPage />);
    expect((await screen.findByTestId("resilience-error")).textContent).toContain(message);
  });
});
