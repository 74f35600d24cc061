"""A loopback server speaking the Databricks Jobs API calls that Airflow's Databricks provider makes.

Runs take real time and are counted, so a test can prove there is exactly one run per task instance and
measure the compute a crash wasted (job-seconds). It listens on 127.0.0.1 only.

Implemented (``/api/2.1/...`` and ``/api/2.2/...``): ``jobs/runs/submit`` (with ``idempotency_token``:
a repeated token returns the existing run, as Databricks does), ``jobs/run-now`` (same), ``jobs/runs/get``,
``jobs/runs/get-output``, ``jobs/runs/cancel``, ``jobs/runs/list``. Extension for the tests and for the
generic-adapter example: ``jobs/runs/list?idempotency_token=T`` filters by token (systems with a
client-token lookup offer the same), ``GET /_loopback/runs`` lists every run with its statistics.

How long a run takes and how it ends come from its parameters (``notebook_task.base_parameters``,
``notebook_params`` or ``job_parameters``): ``duration`` seconds (default 5) and ``fail`` ("true" makes
it end FAILED).

.. code-block:: python

    with JobServer() as server:                  # a thread in this process
        conn = server.airflow_connection()       # AIRFLOW_CONN_DATABRICKS_DEFAULT value
        ...
        assert len(server.runs(run_name="load")) == 1

Standalone: ``python -m airflow_resilience.testing.jobserver --port 0`` prints ``PORT <n>`` and serves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PENDING_SECONDS = 0.3


@dataclass
class Run:
    run_id: int
    job_id: int
    run_name: str
    token: str | None
    duration: float
    fail: bool
    submitted_at: float
    kind: str
    cancelled_at: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def _now_state(self, now: float) -> tuple[str, str, str]:
        started = self.submitted_at + PENDING_SECONDS
        ends = started + self.duration
        if self.cancelled_at is not None and self.cancelled_at < ends:
            return "TERMINATED", "CANCELED", "Run cancelled."
        if now < started:
            return "PENDING", "", "Waiting for cluster"
        if now < ends:
            return "RUNNING", "", "In run"
        if self.fail:
            return "TERMINATED", "FAILED", "Task failed with an exception (loopback fail=true)"
        return "TERMINATED", "SUCCESS", ""

    def running_seconds(self, now: float) -> float:
        """Compute used so far: seconds spent RUNNING (until it ended or was cancelled)."""
        started = self.submitted_at + PENDING_SECONDS
        end = min(now, started + self.duration)
        if self.cancelled_at is not None:
            end = min(end, self.cancelled_at)
        return max(0.0, end - started)

    def to_api(self, base_url: str, now: float) -> dict[str, Any]:
        life, result, message = self._now_state(now)
        state: dict[str, Any] = {"life_cycle_state": life, "state_message": message}
        if result:
            state["result_state"] = result
        return {
            "run_id": self.run_id,
            "job_id": self.job_id,
            "run_name": self.run_name,
            "number_in_job": self.run_id,
            "run_page_url": f"{base_url}/#job/{self.job_id}/run/{self.run_id}",
            "state": state,
            "start_time": int(self.submitted_at * 1000),
            "tasks": [{"run_id": self.run_id * 10, "task_key": self.run_name, "state": state}],
        }

    def stats(self, now: float) -> dict[str, Any]:
        life, result, _ = self._now_state(now)
        return {
            "run_id": self.run_id, "job_id": self.job_id, "run_name": self.run_name, "token": self.token,
            "kind": self.kind, "submitted_at": self.submitted_at, "duration": self.duration,
            "life_cycle_state": life, "result_state": result, "cancelled": self.cancelled_at is not None,
            "running_seconds": round(self.running_seconds(now), 3),
        }


class JobServer:
    """The loopback Jobs API server (see the module docs)."""

    def __init__(self, port: int = 0, *, default_duration: float = 5.0) -> None:
        self.default_duration = default_duration
        self._lock = threading.Lock()
        self._runs: dict[int, Run] = {}
        self._by_token: dict[str, int] = {}
        self._ids = itertools.count(1001)
        self.submit_requests = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> JobServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-jobs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> JobServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def airflow_connection(self) -> str:
        """The value of ``AIRFLOW_CONN_<ID>`` for a Databricks connection to this server."""
        return json.dumps({
            "conn_type": "databricks", "host": "127.0.0.1", "port": self.port, "schema": "http",
            "password": "loopback-token",
        })

    # ------------------------------------------------------------------ queries for tests
    def runs(self, run_name: str | None = None) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [r.stats(now) for r in self._runs.values() if run_name is None or r.run_name == run_name]

    # ------------------------------------------------------------------ API
    def submit(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        params = _params(body)
        token = body.get("idempotency_token")
        with self._lock:
            self.submit_requests += 1
            if token and token in self._by_token:
                return {"run_id": self._by_token[token]}
            run_id = next(self._ids)
            run = Run(
                run_id=run_id,
                job_id=int(body.get("job_id") or run_id),
                run_name=str(body.get("run_name") or params.get("run_name") or f"run-{run_id}"),
                token=token,
                duration=float(params.get("duration", self.default_duration)),
                fail=str(params.get("fail", "false")).lower() == "true",
                submitted_at=time.time(),
                kind=kind,
                params=params,
            )
            self._runs[run_id] = run
            if token:
                self._by_token[token] = run_id
            return {"run_id": run_id, "number_in_job": run_id}

    def get(self, run_id: Any) -> dict[str, Any] | None:
        with self._lock:
            run = self._runs.get(_int(run_id))
            return None if run is None else run.to_api(self.url, time.time())

    def cancel(self, run_id: Any) -> bool:
        with self._lock:
            run = self._runs.get(_int(run_id))
            if run is None:
                return False
            if run.cancelled_at is None:
                run.cancelled_at = time.time()
            return True

    def list(self, token: str | None) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [r.to_api(self.url, now) for r in self._runs.values() if token is None or r.token == token]


def _params(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    tasks = body.get("tasks") or [body]
    for task in tasks:
        if isinstance(task, dict):
            found.update((task.get("notebook_task") or {}).get("base_parameters") or {})
    found.update(body.get("notebook_params") or {})
    found.update(body.get("job_parameters") or {})
    return found


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _handler(server: JobServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, dict[str, Any]]:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            path = parts.path
            for prefix in ("/api/2.0/", "/api/2.1/", "/api/2.2/"):
                if path.startswith(prefix):
                    path = path[len(prefix):]
                    break
            return path.strip("/"), query

        def do_GET(self) -> None:
            path, query = self._route()
            length = int(self.headers.get("Content-Length") or 0)
            if length:  # the provider's async hook sends GET parameters as a JSON body
                try:
                    query.update(json.loads(self.rfile.read(length)))
                except ValueError:
                    return self._send(400, {"error_code": "MALFORMED_REQUEST", "message": "body is not JSON"})
            if path == "jobs/runs/get":
                run = server.get(query.get("run_id"))
                return self._send(200, run) if run else self._send(404, _not_found(query.get("run_id")))
            if path == "jobs/runs/get-output":
                run = server.get(query.get("run_id"))
                if run is None:
                    run = server.get(_int(query.get("run_id")) // 10)  # a task run id
                if run is None:
                    return self._send(404, _not_found(query.get("run_id")))
                out: dict[str, Any] = {"metadata": run, "notebook_output": {"result": f"run {run['run_id']} output"}}
                if run["state"].get("result_state") == "FAILED":
                    out["error"] = run["state"]["state_message"]
                return self._send(200, out)
            if path == "jobs/runs/list":
                return self._send(200, {"runs": server.list(query.get("idempotency_token")), "has_more": False})
            if path == "_loopback/runs":
                return self._send(200, {"runs": server.runs(), "submit_requests": server.submit_requests})
            self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no such endpoint {path}"})

        def do_POST(self) -> None:
            path, _query = self._route()
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._send(400, {"error_code": "MALFORMED_REQUEST", "message": "body is not JSON"})
            if path == "jobs/runs/submit":
                return self._send(200, server.submit(body, "submit"))
            if path == "jobs/run-now":
                if not body.get("job_id"):
                    return self._send(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "job_id is required"})
                return self._send(200, server.submit(body, "run-now"))
            if path == "jobs/runs/cancel":
                ok = server.cancel(body.get("run_id"))
                return self._send(200, {}) if ok else self._send(404, _not_found(body.get("run_id")))
            self._send(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"no such endpoint {path}"})

    return Handler


def _not_found(run_id: Any) -> dict[str, Any]:
    return {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} does not exist."}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--default-duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    server = JobServer(args.port, default_duration=args.default_duration)
    print(f"PORT {server.port}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
