"""The operator's view on the API server: the data routes of the Resilience tab and the fleet page, and the
built front-end bundles (``ui_dist/``).

Plugin FastAPI apps inherit none of Airflow's auth, so every data route here declares Airflow's own
security dependencies: the tab's route ``requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)`` for
the DAG in its path (401 without a token, 403 without the permission); the fleet route authenticates the
user and counts only the DAGs the auth manager lets that user read. The browser sends Airflow's ``_token``
cookie; API clients send ``Authorization: Bearer <token>`` (``POST /auth/token``). Read only: no route here
writes or runs DDL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

UI_DIST = Path(__file__).with_name("ui_dist")
#: Where the plugin mounts the app (``watermark_api.URL_PREFIX`` is this value).
APP_PREFIX = "/resilience"
#: Paths under the app's prefix (``/resilience``): the bundles' URLs, relative to the UI's base URL.
STATIC_PATH = "/static"
TASK_BUNDLE = "task-instance.js"
FLEET_BUNDLE = "fleet.js"


def router() -> APIRouter:
    from fastapi import APIRouter, Depends, HTTPException, Query

    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    api = APIRouter(prefix="/ui/v1", tags=["Resilience UI"])

    @api.get(
        "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))],
        summary="One task instance: attempts with causes and verdicts, budgets left, checkpoint, watermarks",
    )
    def task_instance(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        from airflow.utils.session import create_session

        from airflow_resilience.airflow.report_db import task_view

        with create_session() as session:
            view = task_view(session, dag_id, run_id, task_id, map_index)
        if view is None:
            raise HTTPException(404, f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
        return view

    @api.get("/fleet", summary="Failed attempts by cause and verdict, compute redone vs saved, over a window")
    def fleet(
        user: Any = Depends(get_user),  # noqa: B008 (FastAPI's dependency style; the module defers annotations)
        since: str = Query("7d", description="Window: <n><m|h|d|w>, e.g. 1h, 24h, 7d, 30d"),
        dag_id: str | None = Query(None, description="Only this DAG"),
    ) -> dict[str, Any]:
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.utils.session import create_session

        from airflow_resilience.airflow.report_db import failed_attempts
        from airflow_resilience.report import summarize, window_bounds

        try:
            start, end = window_bounds(since)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        if dag_id is not None and dag_id not in readable:
            raise HTTPException(403, "Forbidden")
        with create_session() as session:
            attempts = failed_attempts(session, start, dag_ids=set(readable), dag_id=dag_id)
        return summarize(attempts, since=start, until=end, window=since, dag_id=dag_id)

    return api


def react_apps() -> list[dict[str, Any]]:
    """The plugin's ``react_apps``: bundle URLs relative to the UI's base URL (sub-path deployments work).
    Cheap: the plugin is loaded in every Airflow process, and this imports nothing."""
    base = f"{APP_PREFIX.strip('/')}{STATIC_PATH}"
    return [
        {
            "name": "Resilience",
            "bundle_url": f"{base}/{TASK_BUNDLE}",
            "destination": "task_instance",
            "url_route": "resilience",
        },
        {
            "name": "Resilience fleet",
            "bundle_url": f"{base}/{FLEET_BUNDLE}",
            "destination": "nav",
            "url_route": "resilience-fleet",
            "category": "browse",
        },
    ]
