// URL building, fetching and error messages of the resilience UI API. The paths are relative and resolved
// against document.baseURI, so an Airflow served under a sub-path (base href="/airflow/") works.

import type { FleetWindow } from "./types";

export const API_PREFIX = "resilience/ui/v1/";
export const FLEET_WINDOWS: readonly FleetWindow[] = ["1h", "24h", "7d", "30d"];
export const DEFAULT_FLEET_WINDOW: FleetWindow = "7d";

/** Airflow passes mapIndex from the route: a string, a number, or undefined for an unmapped task (-1). */
export function normalizeMapIndex(mapIndex: string | number | null | undefined): number {
  if (mapIndex === null || mapIndex === undefined) return -1;
  const text = String(mapIndex).trim();
  if (!/^-?\d+$/.test(text)) return -1;
  return Number.parseInt(text, 10);
}

export interface TaskInstanceKey {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex?: string | number | null;
}

/** resilience/ui/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?map_index={n}, each segment encoded. */
export function taskInstancePath({ dagId, runId, taskId, mapIndex }: TaskInstanceKey): string {
  const enc = encodeURIComponent;
  return (
    `${API_PREFIX}dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}` +
    `?map_index=${normalizeMapIndex(mapIndex)}`
  );
}

/** resilience/ui/v1/fleet?since=7d[&dag_id=...]; a blank DAG id filter is left out. */
export function fleetPath(since: FleetWindow | string, dagId?: string | null): string {
  const params = new URLSearchParams({ since });
  const dag = (dagId ?? "").trim();
  if (dag) params.set("dag_id", dag);
  return `${API_PREFIX}fleet?${params.toString()}`;
}

/** The absolute URL of an API path, against the page's base URI (document.baseURI in the browser). */
export function resolveApiUrl(path: string, baseURI?: string): string {
  const base = baseURI ?? (typeof document !== "undefined" ? document.baseURI : undefined);
  return base ? new URL(path, base).href : path;
}

export class ApiError extends Error {
  readonly status: number | null;

  constructor(status: number | null, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The text of a FastAPI error body's `detail` (a string, or a list of validation errors), or "". */
export function detailText(body: unknown): string {
  if (body === null || body === undefined) return "";
  if (typeof body === "string") return body.trim();
  if (typeof body !== "object") return String(body);
  const detail = (body as { detail?: unknown }).detail;
  if (detail === undefined || detail === null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (item && typeof item === "object" && "msg" in item) {
          const loc = Array.isArray((item as { loc?: unknown }).loc)
            ? ((item as { loc: unknown[] }).loc.join(".") + ": ")
            : "";
          return loc + String((item as { msg: unknown }).msg);
        }
        return typeof item === "string" ? item : JSON.stringify(item);
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}

export type ApiSubject = "task-instance" | "fleet";

/** What to tell the user for a failed response. */
export function errorMessage(status: number, body: unknown, subject: ApiSubject = "task-instance"): string {
  if (status === 401) return "Log in to Airflow to see this";
  if (status === 403) {
    return subject === "fleet"
      ? "You do not have access to the fleet view of these DAGs"
      : "You do not have access to this DAG's task instances";
  }
  if (status === 404) {
    return subject === "fleet" ? "The resilience fleet API is not there (is the plugin enabled?)" : "No such task instance";
  }
  const detail = detailText(body);
  return detail ? `Error ${status}: ${detail}` : `Error ${status}`;
}

async function readBody(response: Response): Promise<unknown> {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** GET an API path as JSON with the session cookie; a non-2xx answer or a network failure throws ApiError. */
export async function fetchJson<T>(
  path: string,
  { signal, subject = "task-instance", baseURI }: { signal?: AbortSignal; subject?: ApiSubject; baseURI?: string } = {},
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(resolveApiUrl(path, baseURI), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal,
    });
  } catch (exc) {
    if (signal?.aborted) throw exc;
    const why = exc instanceof Error ? exc.message : String(exc);
    throw new ApiError(null, `Could not reach the Airflow API server: ${why}`);
  }
  const body = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, body, subject));
  if (body === null || typeof body !== "object") {
    throw new ApiError(response.status, "The API answered with something that is not JSON");
  }
  return body as T;
}
