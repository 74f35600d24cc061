"""The running task's side of watermarks: requests to the API server, and the end-of-task commit.

A task cannot reach the metadata DB, so :class:`HttpWatermarkBackend` sends each operation to the
watermark endpoints the plugin mounts on the API server (``[resilience] api_url``; by default the API
server that ``[core] execution_api_server_url`` names, at ``/resilience``). It proves which try it is with
a nonce whose SHA-256 it first writes into its own task state store through its supervisor.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_resilience import errors
from airflow_resilience.airflow import metrics
from airflow_resilience.airflow.store import RETRY_PAUSES, TaskStateStore, _hold_alarm, _release_alarm
from airflow_resilience.watermark import AUTH_KEY, Grant, Held, Holder

log = logging.getLogger(__name__)

#: Commit right after the success is recorded: if the API server has not yet seen it, ask again.
COMMIT_PAUSES = (0.2, 0.5, 1.0, 2.0)



def api_url(configured: str, execution_api_url: str, base_url: str) -> str:
    """Where the watermark endpoints are: ``configured``, else beside the execution API, else base_url."""
    if configured.strip():
        return configured.strip().rstrip("/")
    if execution_api_url.strip():
        parts = urlsplit(execution_api_url.strip())
        path = parts.path.rstrip("/")
        if path.endswith("/execution"):
            path = path[: -len("/execution")]
        return urlunsplit((parts.scheme, parts.netloc, path + "/resilience", "", ""))
    if base_url.strip():
        return base_url.strip().rstrip("/") + "/resilience"
    raise errors.ConfigurationError(
        "[resilience] api_url is empty and neither [core] execution_api_server_url nor [api] base_url is set: "
        "set [resilience] api_url to the API server's address followed by /resilience"
    )


class HttpWatermarkBackend:
    """One running try's :class:`~airflow_resilience.watermark.WatermarkBackend`, over HTTP."""

    def __init__(self, base_url: str, who: Holder, nonce: str, *, timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url
        self.who = who
        self._nonce = nonce
        self._client = httpx.Client(base_url=base_url, timeout=timeout)

    def _post(self, op: str, name: str, **fields: Any) -> dict[str, Any]:
        import httpx

        body = {"name": name, "ti_id": self.who.ti_id, "nonce": self._nonce, **fields}
        last: Exception | None = None
        for pause in (*RETRY_PAUSES, None):
            held = _hold_alarm()
            try:
                resp = self._client.post(f"/v1/watermarks/{op}", json=body)
            except httpx.TransportError as exc:
                last = exc
                resp = None
            finally:
                _release_alarm(held)
            if resp is not None and resp.status_code < 500:
                return self._answer(op, name, resp)
            if resp is not None:
                last = errors.WatermarkError(f"{resp.status_code} {resp.text[:300]}")
            if pause is None:
                break
            log.warning("airflow-resilience: watermark %s of %r failed (%s); asking again in %ss", op, name, last, pause)
            time.sleep(pause)
        raise errors.WatermarkError(
            f"watermark {name!r}: the API server at {self.base_url} did not answer {op} ({last}); check "
            "[resilience] api_url and that the airflow-resilience plugin is installed on the API server"
        )

    def _answer(self, op: str, name: str, resp: Any) -> dict[str, Any]:
        if resp.status_code == 200:
            return resp.json()
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        kind = detail.get("error") if isinstance(detail, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
        cls = {
            "PermissionError": errors.WatermarkFencedError,  # not the running try any more
            "UnknownWatermarkError": errors.UnknownWatermarkError,
            "WatermarkFencedError": errors.WatermarkFencedError,
            "WatermarkBackwardsError": errors.WatermarkBackwardsError,
            "WatermarkValueError": errors.WatermarkValueError,
        }.get(kind or "")
        if cls is errors.WatermarkFencedError:
            metrics.incr("resilience.watermark.fenced", op=op)
        if cls is None:
            raise errors.WatermarkError(
                f"watermark {name!r}: {op} got {resp.status_code} from {self.base_url}: {message}; is the "
                "airflow-resilience plugin installed on the API server?"
            )
        raise cls(message)

    def acquire(self, name: str) -> Grant | Held:
        data = self._post("acquire", name)
        metrics.incr("resilience.watermark.acquires", outcome="granted" if data["granted"] else "held")
        if data["granted"]:
            return Grant(name, data["fence"], data["value"], data["committed"], data["version"])
        return Held(name, Holder(**data["holder"]), data.get("held_since"))

    def stage(self, name: str, fence: int, value: Any) -> None:
        self._post("stage", name, fence=fence, value=value)

    def commit(self, name: str, fence: int) -> None:
        for pause in (*COMMIT_PAUSES, None):
            try:
                self._post("commit", name, fence=fence)
                metrics.incr("resilience.watermark.commits")
                return
            except errors.WatermarkFencedError as exc:
                if "still running" not in str(exc) or pause is None:
                    raise
                time.sleep(pause)

    def release(self, name: str, fence: int) -> None:
        self._post("release", name, fence=fence)


def _conf():
    from airflow.sdk.configuration import conf

    return conf


def wait_settings() -> tuple[float, float]:
    from airflow_resilience.airflow.runtime import settings

    cfg = settings()
    return cfg.watermark_wait_timeout, cfg.watermark_poll_interval


class BackendFactory:
    """``factory()`` is the backend of the running try. One factory per attempt (its runtime holds it):
    the first call writes the try's proof into its task state store; later calls reuse the nonce."""

    def __init__(self) -> None:
        self._nonces: dict[str, str] = {}

    def __call__(self) -> HttpWatermarkBackend:
        from airflow_resilience.airflow.runtime import _context, settings

        ti = _context()["ti"]
        who = Holder(
            ti_id=str(ti.id),
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
            try_number=int(ti.try_number),
        )
        nonce = self._nonces.get(who.ti_id)
        if nonce is None:
            nonce = secrets.token_hex(32)
            proof = {"ti_id": who.ti_id, "sha256": hashlib.sha256(nonce.encode()).hexdigest()}
            TaskStateStore.for_task_instance(ti).set(AUTH_KEY, proof)
            self._nonces[who.ti_id] = nonce
        conf = _conf()
        url = api_url(
            settings().api_url,
            conf.get("core", "execution_api_server_url", fallback="") or "",
            conf.get("api", "base_url", fallback="") or "",
        )
        return HttpWatermarkBackend(url, who, nonce)
