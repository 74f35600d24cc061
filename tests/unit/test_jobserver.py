"""The loopback Jobs API server: token dedup, run lifecycle in real time, cancel, counting."""

from __future__ import annotations

import time

import httpx

from airflow_resilience.testing.jobserver import JobServer


def test_submit_dedupes_by_token_and_runs_take_real_time():
    with JobServer() as server, httpx.Client(base_url=server.url + "/api/2.2/") as http:
        body = {"run_name": "load", "idempotency_token": "tok-1",
                "tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "/x", "base_parameters": {"duration": "0.5"}}}]}
        first = http.post("jobs/runs/submit", json=body).json()["run_id"]
        assert http.post("jobs/runs/submit", json=body).json()["run_id"] == first
        other = http.post("jobs/runs/submit", json={**body, "idempotency_token": "tok-2"}).json()["run_id"]
        assert other != first
        assert http.get("jobs/runs/get", params={"run_id": first}).json()["state"]["life_cycle_state"] == "PENDING"
        http.post("jobs/runs/cancel", json={"run_id": other})
        time.sleep(1.0)
        state = http.get("jobs/runs/get", params={"run_id": first}).json()["state"]
        assert (state["life_cycle_state"], state["result_state"]) == ("TERMINATED", "SUCCESS")
        assert http.get("jobs/runs/get", params={"run_id": other}).json()["state"]["result_state"] == "CANCELED"
        assert http.get("jobs/runs/get", params={"run_id": 5}).status_code == 404
        # the provider's async hook (the deferrable trigger) sends GET parameters as a JSON body
        by_body = http.request("GET", "jobs/runs/get", json={"run_id": first}).json()
        assert by_body["run_id"] == first
        assert [r["run_id"] for r in http.get("jobs/runs/list", params={"idempotency_token": "tok-1"}).json()["runs"]] == [first]
        runs = {r["run_id"]: r for r in server.runs(run_name="load")}
        assert set(runs) == {first, other} and server.submit_requests == 3
        assert 0.45 <= runs[first]["running_seconds"] <= 0.55
        assert runs[other]["running_seconds"] < 0.1


def test_run_now_needs_a_job_and_can_fail():
    with JobServer() as server, httpx.Client(base_url=server.url + "/api/2.1/") as http:
        assert http.post("jobs/run-now", json={}).status_code == 400
        run = http.post("jobs/run-now", json={"job_id": 42, "notebook_params": {"duration": "0", "fail": "true"}}).json()["run_id"]
        time.sleep(0.5)
        got = http.get("jobs/runs/get", params={"run_id": run}).json()
        assert got["job_id"] == 42 and got["state"]["result_state"] == "FAILED"
        assert "error" in http.get("jobs/runs/get-output", params={"run_id": run}).json()
