"""The watermark endpoints, mounted on Airflow's API server by the plugin (``fastapi_apps``).

Tasks cannot reach the metadata DB (Airflow 3 blocks it in task code), so a running task asks here. A
request names its task instance try and carries a random nonce whose SHA-256 the same try wrote into its
own task state store through its supervisor (the only writer holding that try's execution token); the
server checks the pair before it acts, and takes the holder's identity (dag, run, task, try) from the
``task_instance`` row, never from the request.

``POST /resilience/v1/watermarks/{acquire,stage,commit,release}`` — JSON bodies, JSON answers. Refusals:
403 (not the running try), 404 (unknown name), 409 (fenced: this try no longer holds the name), 422 (a value
that is not JSON, too large, or backwards), 503 (the package's tables are missing or at a revision it cannot
use: ``airflow db migrate`` creates them; no route ever runs DDL).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from airflow_resilience import watermark as core
from airflow_resilience.airflow.ui_api import APP_PREFIX
from airflow_resilience.errors import (
    UnknownWatermarkError,
    WatermarkBackwardsError,
    WatermarkFencedError,
    WatermarkValueError,
)

URL_PREFIX = APP_PREFIX


class Claim(BaseModel):
    name: str
    ti_id: str
    nonce: str


class Fenced(Claim):
    fence: int


class Staged(Fenced):
    value: Any = None


#: Refusals: error class -> HTTP status. The answer's detail is ``{"error": class name, "message": text}``.
STATUS = {
    "PermissionError": 403,
    "UnknownWatermarkError": 404,
    "WatermarkFencedError": 409,
    "WatermarkBackwardsError": 422,
    "WatermarkValueError": 422,
    "WatermarkSchemaError": 503,
}


def _refuse(exc: Exception) -> HTTPException:
    name = type(exc).__name__
    return HTTPException(status_code=STATUS[name], detail={"error": name, "message": str(exc)})


def _who(claim: Claim) -> core.Holder:
    """The caller's try, proven by its nonce — checked on Airflow's own tables before anything of ours is
    read or written (an unidentified caller causes no write; no caller causes DDL)."""
    from airflow_resilience.airflow.watermark_db import airflow_engine, identify

    try:
        core.check_name(claim.name)
        return identify(airflow_engine(), claim.ti_id, claim.nonce)
    except (PermissionError, WatermarkValueError) as exc:
        raise _refuse(exc) from None


def _call(fn, *args):
    from airflow_resilience.airflow.watermark_db import WatermarkSchemaError

    try:
        return fn(*args)
    except (
        UnknownWatermarkError, WatermarkFencedError, WatermarkBackwardsError, WatermarkValueError, WatermarkSchemaError
    ) as exc:
        raise _refuse(exc) from None


def create_app() -> FastAPI:
    from airflow_resilience.airflow.watermark_db import service

    from airflow_resilience.airflow.ui_api import STATIC_PATH, UI_DIST, router

    app = FastAPI(
        title="airflow-resilience",
        description=(
            "Watermark holds for running tasks (proven by a per-try nonce, see docs/security.md) and the "
            "operator's view (Airflow's own authentication and DAG permissions)"
        ),
    )
    app.include_router(router())
    if UI_DIST.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount(STATIC_PATH, StaticFiles(directory=UI_DIST), name="resilience-static")

    @app.post("/v1/watermarks/acquire")
    def acquire(body: Claim) -> dict[str, Any]:
        who = _who(body)
        answer = _call(service().acquire, body.name, who)
        if isinstance(answer, core.Held):
            return {"granted": False, "holder": answer.holder.to_json(), "held_since": answer.held_since}
        return {
            "granted": True,
            "fence": answer.fence,
            "value": answer.value,
            "committed": answer.committed,
            "version": answer.version,
        }

    @app.post("/v1/watermarks/stage")
    def stage(body: Staged) -> dict[str, Any]:
        _call(core.check_value, body.name, body.value)
        who = _who(body)
        _call(service().stage, body.name, who, body.fence, body.value)
        return {"staged": True}

    @app.post("/v1/watermarks/commit")
    def commit(body: Fenced) -> dict[str, Any]:
        who = _who(body)
        _call(service().commit, body.name, who, body.fence)
        return {"committed": True}

    @app.post("/v1/watermarks/release")
    def release(body: Fenced) -> dict[str, Any]:
        who = _who(body)
        _call(service().release, body.name, who, body.fence)
        return {"released": True}

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Unauthenticated and read only: the Alembic revision the metadata DB records for the package's
        tables (``null``: none recorded — ``airflow db migrate`` creates and stamps them), the head revision
        this package expects, the state (``current``, ``outdated``, ``unversioned``, ``missing``, ``newer``),
        whether the watermark routes can serve, and what to do."""
        from airflow_resilience.airflow.watermark_db import current_schema

        status = current_schema()
        return {
            "watermark_schema": status.revision,
            "expected_watermark_schema": status.head,
            "schema_state": status.state.value,
            "watermarks_available": status.usable,
            "message": status.message,
        }

    return app
