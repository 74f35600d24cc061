"""The failure gate: infrastructure grants on the API server, at the moment a worker reports a failure.

A root middleware of the API server (plugin ``fastapi_root_middlewares``) that looks at one request only:
``PATCH /execution/task-instances/{id}/state`` with ``state`` ``failed`` or ``up_for_retry`` — the
supervisor reporting the end of a try. Before Airflow's handler runs, it judges the failure
(:func:`airflow_resilience.judge.judge`) from what the try recorded in its state store:

* the runner drained on SIGTERM and recorded its cause as ``pending`` -> that cause;
* the runner recorded this try's start and then nothing — no verdict of its own, no end mark — while its
  supervisor reports a failure without a reason -> the runner died without a word (SIGKILL, OOM kill):
  ``infrastructure/signal.sigkill``;
* anything else (the runner reported its own failure, the package is off or absent on that worker, no
  record at all) -> the request goes through untouched: stock Airflow.

A grant raises the task instance's ``max_tries`` by exactly one (in its own transaction, only while the row
is still ``running`` with that ``try_number``) and the report becomes ``up_for_retry`` at the
infrastructure delay with the verdict as ``retry_reason``; an exhausted budget makes it ``failed``. The
request's execution-API token is checked first (its subject must be this task instance): a request that
Airflow would refuse changes nothing.

Fail safe: an error anywhere in the gate, a body it cannot read, a corrupt ledger — the request goes
through exactly as it came (one warning line, ``resilience.bookkeeping_errors``).
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

from typing import TYPE_CHECKING

from airflow_resilience.airflow.compat import STATE_PATH

if TYPE_CHECKING:  # every process that loads plugins imports this module: the core is imported on use
    from airflow_resilience.judge import Judgement

log = logging.getLogger(__name__)

REPORTED = frozenset({"failed", "up_for_retry"})
#: Larger bodies are not read for judgement (a state report is a few hundred bytes).
MAX_BODY = 64 * 1024


class FailureGate:
    """ASGI middleware (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        match = STATE_PATH.match(scope.get("path", "")) if scope.get("type") == "http" else None
        if match is None or scope.get("method") != "PATCH":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # disconnected: nothing to judge
                await self.app(scope, _replay(b"".join(chunks), receive, first=message), send)
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        new_body = body
        if size <= MAX_BODY:
            try:
                import anyio

                authorization = _header(scope, b"authorization")
                new_body = await anyio.to_thread.run_sync(gate_report, match.group(1), body, authorization)
            except Exception as exc:  # the gate fails open: Airflow handles the report as it came
                from airflow_resilience.airflow.accounting import bookkeeping_failed

                bookkeeping_failed("failure gate", exc)
                new_body = body
        if new_body is not body:
            scope = dict(scope)
            scope["headers"] = [
                (k, str(len(new_body)).encode() if k.lower() == b"content-length" else v)
                for k, v in scope.get("headers", [])
            ]
        await self.app(scope, _replay(new_body, receive), send)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Any, first: dict | None = None):
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if first is not None:
            return first
        return await receive()

    return replay


# ---------------------------------------------------------------------------------------------- judgement
def gate_report(ti_id: str, body: bytes, authorization: str | None) -> bytes:
    """The body Airflow's handler gets: ``body`` itself, or a rewritten report (see the module docstring)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if not isinstance(payload, dict) or payload.get("state") not in REPORTED:
        return body
    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    if not cfg.enabled:
        return body
    if not _token_is_for(ti_id, authorization):
        return body
    from airflow_resilience.judge import Outcome

    judgement = _judge(ti_id, payload, cfg)
    if judgement is None or judgement.outcome is Outcome.STOCK:
        return body
    rewritten: dict[str, Any] = {"end_date": payload.get("end_date")}
    if "rendered_map_index" in payload:
        rewritten["rendered_map_index"] = payload["rendered_map_index"]
    if judgement.outcome is Outcome.RETRY:
        rewritten.update(state="up_for_retry", retry_delay_seconds=judgement.retry_delay,
                         retry_reason=judgement.message[:500])
    else:
        rewritten["state"] = "failed"
    log.warning("airflow-resilience: task instance %s try %s: %s", ti_id, judgement.try_number, judgement.message)
    return json.dumps(rewritten).encode()


def _token_is_for(ti_id: str, authorization: str | None) -> bool:
    """The execution-API token of the request is valid and names this task instance."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return False
    try:
        claims = _validator().validated_claims(authorization.split(" ", 1)[1].strip(), {})
    except Exception:
        log.debug("failure gate: token not valid", exc_info=True)
        return False
    return str(claims.get("sub", "")).replace("-", "") == ti_id.replace("-", "")


_VALIDATOR: Any = None


def _validator() -> Any:
    """A validator configured as the execution API's own (``[api_auth]``, ``[execution_api] jwt_audience``)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        from airflow.api_fastapi.auth.tokens import JWTValidator, get_sig_validation_args
        from airflow.configuration import conf

        required = frozenset(["aud", "exp", "iat"])
        issuer = conf.get("api_auth", "jwt_issuer", fallback=None)
        if issuer:
            required = required | {"iss"}
        _VALIDATOR = JWTValidator(
            required_claims=required,
            issuer=issuer,
            audience=conf.get_mandatory_list_value("execution_api", "jwt_audience"),
            **get_sig_validation_args(make_secret_key_if_needed=False),
        )
    return _VALIDATOR


def _judge(ti_id: str, payload: dict, cfg: Any) -> Judgement | None:
    from sqlalchemy import update

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.state import get_state_backend
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from airflow_resilience.airflow import accounting
    from airflow_resilience.airflow.accounting import ATTEMPT_KEY, budget_of, now
    from airflow_resilience.airflow.execution import attempt_had_checkpoint
    from airflow_resilience.airflow.ti_state import applies, read_json, task_scope, write_json
    from airflow_resilience.budget import BudgetPolicy
    from airflow_resilience.causes import Evidence, classify
    from airflow_resilience.judge import Outcome, judge
    from airflow_resilience.ledger import ENDING_VERDICTS, LEDGER_KEY, Ledger

    from uuid import UUID

    from sqlalchemy import select

    with create_session() as session:
        ti = session.get(TaskInstance, UUID(ti_id))
        if ti is None or ti.state != TaskInstanceState.RUNNING:
            return None  # Airflow refuses the report itself (409)
        if not applies(cfg, ti.dag_id, session):
            return None
        backend = get_state_backend()
        scope = task_scope(ti)
        try_number = int(ti.try_number)
        max_tries = int(ti.max_tries or 0)
        ledger = Ledger.from_json(read_json(backend, scope, LEDGER_KEY, session))
        attempt = read_json(backend, scope, ATTEMPT_KEY, session)
        own = ledger.record_for(try_number)
        if own is not None and own.verdict == "pending":
            cause = own.cause  # the runner drained and said why
        elif own is not None and own.verdict in ENDING_VERDICTS:
            cause = own.cause  # judged before: judge() replays it
        elif (
            own is None
            and isinstance(attempt, dict)
            and attempt.get("try_number") == try_number
            and not attempt.get("ended")
            and not payload.get("retry_reason")
        ):
            note = "the task runner recorded its start and never reported an outcome; its supervisor reported the failure"
            cause = classify(Evidence(exit_signal=signal.SIGKILL, notes=(("gate", note),)))
        else:
            return None  # the runner reported its own failure, or nothing of ours ran: stock
        clear_number = session.scalar(
            select(DagRun.clear_number).where(DagRun.dag_id == ti.dag_id, DagRun.run_id == ti.run_id)
        )
        defaults = BudgetPolicy(infra_retries=cfg.infra_retries, breaker_threshold=cfg.breaker_threshold)

        class _Store:
            @staticmethod
            def get(key: str) -> Any:
                return read_json(backend, scope, key, session)

        judgement = judge(
            ledger, try_number=try_number, max_tries=max_tries, cause=cause,
            budget=budget_of(attempt, try_number, defaults), infra_retry_delay=cfg.infra_retry_delay, at=now(),
            clear_number=clear_number, checkpoint=attempt_had_checkpoint(_Store, try_number),
        )
        if judgement.new and judgement.outcome is Outcome.RETRY:
            raised = session.execute(
                update(TaskInstance)
                .where(
                    TaskInstance.id == UUID(ti_id),
                    TaskInstance.state == TaskInstanceState.RUNNING,
                    TaskInstance.try_number == try_number,
                    TaskInstance.max_tries == max_tries,
                )
                .values(max_tries=judgement.max_tries_after)
                .execution_options(synchronize_session=False)
            )
            if getattr(raised, "rowcount", 0) != 1:
                session.rollback()
                return None  # the row moved on under us: leave the report to Airflow
        accounting.write(judgement, lambda key, value: write_json(backend, scope, key, value, session))
        if judgement.outcome is Outcome.FAIL and judgement.new:
            from airflow.models.log import Log

            # Why it failed, where the UI shows a try's reason (Airflow's FAILED report leaves it alone).
            ti.retry_reason = judgement.message[:500]
            session.add(Log(event="resilience_budget_exhausted", task_instance=ti, extra=judgement.message))
        session.commit()
        return judgement
