"""The REST side of an environment: logins, DAGs, runs, XComs, waits with a diagnosis."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow_resilience.testing.records import TaskInstanceRow

log = logging.getLogger("airflow_resilience.testing")


FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class RestClient:
    """Airflow's REST API as the tests use it (a mixin of AirflowEnvironment)."""

    # ------------------------------------------------------------------ HTTP
    def token(self, username: str, password: str) -> str:
        """A JWT for ``username`` from SimpleAuthManager's login endpoint (``users=`` environments)."""
        import httpx

        resp = httpx.post(f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        resp.raise_for_status()
        return resp.json()["access_token"]

    def _http(self, method: str, path: str, *, body: Any = None, auth: bool = True) -> Any:
        import httpx

        headers = {}
        if auth:
            if self._token is None:
                self._token = self.token(*self.login) if self.login else None
            if self._token is None:
                resp = httpx.get(f"{self.api_url}/auth/token", timeout=30)
                resp.raise_for_status()
                self._token = resp.json()["access_token"]
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in range(4):
            resp = _request_through_restarts(httpx, method, f"{self.api_url}{path}", body, headers)
            # SQLite allows one writer at a time: under load the API server answers 500 "Database error"
            # (the transaction was rolled back). Asking again is safe and is what a user's retry does.
            if resp.status_code == 500 and "Database error" in resp.text and attempt < 3:
                log.warning("%s %s -> 500 Database error (%s); asking again", method, path, self.database_kind)
                time.sleep(1.0 + attempt)
                continue
            break
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def create_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create (or replace) an Airflow connection through the REST API (``host``, ``port``, ``login``, ...)."""
        try:
            self._http("DELETE", f"/api/v2/connections/{conn_id}")
        except RuntimeError:
            pass  # absent
        self._http("POST", "/api/v2/connections", body={"connection_id": conn_id, "conn_type": conn_type, **fields})

    # ------------------------------------------------------------------ DAGs and runs
    def deploy(self, path: Path, *, wait: bool = True, timeout: float = 120) -> list[str]:
        """Copy a DAG file (or every ``.py`` of a folder) into the DAGs folder; wait until parsed."""
        path = Path(path)
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for f in files:
            shutil.copy2(f, self.home / "dags" / f.name)
        names = [f.name for f in files]
        if wait:
            self.wait_for_dag_files(names, timeout=timeout)
        return names

    def wait_for_dag_files(self, names: Iterable[str], timeout: float = 120) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.sql("SELECT fileloc FROM dag WHERE is_stale = false")
            seen = {Path(r[0]).name for r in rows}
            if wanted <= seen:
                return
            time.sleep(0.5)
        raise TimeoutError(f"DAG files {sorted(wanted)} not parsed in {timeout}s")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT 1 FROM serialized_dag WHERE dag_id = :d", d=dag_id):
                return
            time.sleep(0.5)
        raise TimeoutError(f"DAG {dag_id!r} not serialized in {timeout}s:\n{self.component_log('dag-processor')}")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a DAG run through the REST API; returns its run id."""
        self.wait_for_dag(dag_id)
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return self._http("POST", f"/api/v2/dags/{dag_id}/dagRuns", body=body)["dag_run_id"]

    def clear(self, dag_id: str, run_id: str, task_ids: Iterable[str]) -> None:
        """Clear task instances as a user does from the UI (REST API ``clearTaskInstances``)."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": list(task_ids),
            "only_failed": False,
            "reset_dag_runs": True,
        }
        self._http("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body=body)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The value of an XCom of a task instance (REST API, deserialized), or None when there is none."""
        from urllib.parse import quote

        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        path += f"?map_index={map_index}&deserialize=true&stringify=false"
        try:
            entry = self._http("GET", path)
        except RuntimeError as exc:
            if "-> 404" in str(exc):
                return None
            raise
        return entry.get("value")

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1) -> None:
        """Mark a task instance ``failed``/``success`` as a user does from the UI (REST API)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            path += f"/{map_index}"
        self._http("PATCH", path, body={"new_state": state})

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.sql("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return rows[0][0] if rows else None

    def wait_for_run(
        self, dag_id: str, run_id: str, states: Iterable[str] = ("success", "failed"), timeout: float = 300
    ) -> str:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in wanted:
                return state
            time.sleep(0.3)
        raise TimeoutError(
            f"run {dag_id}/{run_id} is {state!r}, not in {sorted(wanted)} after {timeout}s\n"
            + self.diagnosis(dag_id, run_id)
        )

    def diagnosis(self, dag_id: str, run_id: str, lines: int = 60) -> str:
        """What a timed-out wait reports: the run's task instances and the resilience lines of the
        scheduler's log (the home is removed at stop, so a CI failure must carry them)."""
        out = []
        try:
            for row in self.sql(
                "SELECT task_id, map_index, try_number, state, hostname, pid, external_executor_id FROM task_instance"
                " WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index",
                d=dag_id,
                r=run_id,
            ):
                out.append("task instance: " + " ".join(map(str, row)))
        except Exception as exc:  # a diagnosis never hides the timeout
            out.append(f"task instances unreadable: {exc}")
        for name, keep in (("scheduler", lines), *((w, 15) for w in self.workers)):
            path = self.home / f"{name}.log"
            if not path.exists():
                continue
            text = path.read_text(errors="replace").splitlines()
            wanted = [ln for ln in text if "resilience" in ln or "ERROR" in ln or "WARNING" in ln]
            out.append(f"{name}.log, last {keep} resilience/WARNING/ERROR lines:")
            out.extend(wanted[-keep:])
        return "\n".join(out)

    def wait_for_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str | None],
        *,
        try_number: int | None = None,
        map_index: int = -1,
        timeout: float = 120,
    ) -> TaskInstanceRow:
        """Wait until the task instance is in one of ``states`` (and at ``try_number``, if given)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        ti = None
        while time.monotonic() < deadline:
            try:
                ti = self.task_instance(dag_id, run_id, task_id, map_index)
            except LookupError:
                ti = None
            if ti is not None and ti.state in wanted and (try_number is None or ti.try_number == try_number):
                return ti
            time.sleep(0.2)
        raise TimeoutError(f"{dag_id}/{run_id}/{task_id}: {ti} not in {wanted} (try {try_number}) after {timeout}s")


def _request_through_restarts(httpx: Any, method: str, url: str, body: Any, headers: dict, patience: float = 120) -> Any:
    """One request; while the API server is being restarted (a control-plane drill) the connection is refused:
    ask again for up to ``patience`` seconds. Only refusals (nothing was sent) are retried, so a POST never
    runs twice."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return httpx.request(method, url, json=body, headers=headers, timeout=60)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
