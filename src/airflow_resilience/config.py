"""Settings of the ``[resilience]`` section: declared once here, validated eagerly.

The declarations feed the provider info (so ``airflow config list`` shows every option with its default)
and the docs. Reading is done at the edge (``airflow_resilience.airflow.runtime``) through
:func:`load_settings`, which takes a plain ``get(option) -> str | None`` so it is testable without Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from airflow_resilience.errors import ConfigurationError
from airflow_resilience.options import OPTIONS, SECTION

_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def _parse(option: str, kind: str, raw: str) -> object:
    text = raw.strip()
    where = f"[{SECTION}] {option} = {raw!r}"
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{where}: expected a number of seconds, e.g. 0 or 1.5") from None
        if value < 0 or value != value:
            raise ConfigurationError(f"{where}: must be >= 0")
        return value
    if kind == "url":
        if text and not text.startswith(("http://", "https://")):
            raise ConfigurationError(f"{where}: expected an http:// or https:// address, or nothing")
        return text
    if kind == "tag":
        if not text:
            raise ConfigurationError(f"{where}: expected a DAG tag, e.g. resilience")
        return text
    if kind == "string":
        names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
        unknown = [n for n in names if n not in {"aws", "gcp", "azure"}]
        if option == "cloud_providers" and unknown:
            raise ConfigurationError(f"{where}: unknown provider(s) {unknown}; use aws, gcp and/or azure")
        return names
    if kind == "integer":
        try:
            number = int(text)
        except ValueError:
            raise ConfigurationError(f"{where}: expected a whole number, e.g. 3") from None
        if number < 0:
            raise ConfigurationError(f"{where}: must be >= 0")
        return number
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigurationError(f"{where}: expected True or False")
    raise AssertionError(kind)


def _default(option: str) -> object:
    """An option's default, parsed from its declaration in :mod:`airflow_resilience.options` (written once)."""
    kind, raw, _doc = OPTIONS[option]
    return _parse(option, kind, raw)


@dataclass(frozen=True)
class Settings:
    """Validated ``[resilience]`` settings."""

    checkpoint_flush_interval: float = _default("checkpoint_flush_interval")
    checkpoint_keep_on_clear: bool = _default("checkpoint_keep_on_clear")
    checkpoint_write_behind: bool = _default("checkpoint_write_behind")
    enabled: bool = _default("enabled")
    selective_enable: bool = _default("selective_enable")
    enable_tag: str = _default("enable_tag")
    infra_retries: int = _default("infra_retries")
    breaker_threshold: int = _default("breaker_threshold")
    drain_on_sigterm: bool = _default("drain_on_sigterm")
    lost_worker_check_interval: float = _default("lost_worker_check_interval")
    bookkeeping_retention_days: int = _default("bookkeeping_retention_days")
    infra_retry_delay: float = _default("infra_retry_delay")
    cloud_providers: tuple[str, ...] = _default("cloud_providers")
    watermark_wait_timeout: float = _default("watermark_wait_timeout")
    watermark_history_retention_days: float = _default("watermark_history_retention_days")
    watermark_poll_interval: float = _default("watermark_poll_interval")
    api_url: str = _default("api_url")
    celery_drain_grace: float = _default("celery_drain_grace")
    celery_worker_lost_after: float = _default("celery_worker_lost_after")
    kubernetes_node_lost_after: float = _default("kubernetes_node_lost_after")


def load_settings(get: Callable[[str], str | None]) -> Settings:
    """Build :class:`Settings` from a lookup of raw option text (``None`` = unset -> default)."""
    values = {}
    for option, (kind, default, _doc) in OPTIONS.items():
        raw = get(option)
        values[option] = _parse(option, kind, default if raw is None else raw)
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.infra_retries > 24:
        raise ConfigurationError(f"[{SECTION}] infra_retries = {settings.infra_retries}: must be from 0 to 24")
    if settings.breaker_threshold < 1:
        raise ConfigurationError(
            f"[{SECTION}] breaker_threshold = {settings.breaker_threshold}: must be >= 1 "
            "(1 refuses every infrastructure retry; use infra_retries = 0 to disable grants)"
        )
    return settings


def applies_to(settings: Settings, tags: object) -> bool:
    """Whether infrastructure-aware execution applies to a DAG with ``tags`` (``enabled`` and, with
    ``selective_enable``, tagged with ``enable_tag``)."""
    if not settings.enabled:
        return False
    if not settings.selective_enable:
        return True
    try:
        return settings.enable_tag in {str(t) for t in (tags or ())}  # type: ignore[union-attr]
    except TypeError:
        return False
