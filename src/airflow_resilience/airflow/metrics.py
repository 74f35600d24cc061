"""Every metric the package emits: one catalog, one emitter, each metric in its tagged and its dotted form.

Airflow's plain StatsD logger drops tags unless InfluxDB-style tags are on, so behind a statsd_exporter (the
Helm chart's setup) ``resilience.failures`` would arrive as one untagged counter. As Airflow core does for its
own metrics (``ti.finish`` tagged, and ``ti.finish.<dag_id>.<task_id>.<state>`` beside it when ``[metrics]
legacy_names_on`` is true, the default), each metric is sent twice when it has tags that carry meaning:

* the **tagged** form, ``resilience.failures`` with tags ``kind`` and ``reason`` (tag values as they are,
  ``reason=signal.sigkill``): for Datadog, OpenTelemetry and StatsD with InfluxDB tags; plain StatsD sees
  it as the untagged total;
* the **dotted** form, ``resilience.failures.<kind>.<reason>``: the tag values, in the catalog's order, as
  name segments. Each segment is written with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``
  (so ``signal.sigkill`` becomes ``signal_sigkill``) and cut at :data:`SEGMENT_MAX` characters, so a name
  always has the same number of segments and a mapping rule (``resilience.failures.*.*``) a fixed depth.
  A missing or empty value is written ``unknown``. Names are cut at :data:`NAME_MAX` characters (Airflow
  refuses a stat name over 250 characters, OpenTelemetry over 255 with the prefix).

The dotted form is not sent when ``[metrics] legacy_names_on`` is false (the process's Stats says so), as
for core's legacy names. :func:`incr`, :func:`timing` and :func:`gauge` never raise: a metric must never
change a task's outcome.

The catalog (:data:`CATALOG`) is what ``docs/metrics.md``, ``docs/statsd-exporter-mapping.yml`` and the
Grafana dashboard describe; a unit test holds them to it.
"""

from __future__ import annotations

import enum
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

COUNTER, TIMER, GAUGE = "counter", "timer", "gauge"

#: Longest dotted segment (a tag value as part of a name).
SEGMENT_MAX = 48
#: Longest name sent (without Airflow's ``[metrics] statsd_prefix``): room for a prefix of up to 50 characters
#: under Airflow's 250 and OpenTelemetry's 255 (prefix included).
NAME_MAX = 200
#: What a missing or empty tag value is written as in a dotted name.
UNKNOWN = "unknown"

_NOT_IN_SEGMENT = re.compile(r"[^A-Za-z0-9_-]")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    #: Tags whose values make up the dotted form, in this order; empty: the metric has no dotted form (its
    #: tagged name is already what plain StatsD keeps).
    dotted: tuple[str, ...] = ()


CATALOG: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("resilience.failures", COUNTER, ("kind", "reason")),
        # One dotted form, at one depth (sum over kind and reason for the verdicts alone).
        Metric("resilience.decisions", COUNTER, ("verdict", "kind", "reason")),
        Metric("resilience.bookkeeping_errors", COUNTER, ("where",)),
        Metric("resilience.submissions", COUNTER, ("operator", "outcome")),
        Metric("resilience.resumes", COUNTER, ("operator", "method")),
        Metric("resilience.watermark.acquires", COUNTER, ("outcome",)),
        Metric("resilience.watermark.commits", COUNTER),
        Metric("resilience.watermark.fenced", COUNTER, ("op",)),
        Metric("resilience.scheduler_listener", TIMER),
        Metric("resilience.checkpoint.write", TIMER),
        Metric("resilience.recovery", TIMER, ("reason",)),
        Metric("resilience.detector.last_round", GAUGE),
        Metric("resilience.detector.round_duration", GAUGE),
        Metric("resilience.detector.workers_seen", GAUGE, ("kind",)),
        Metric("resilience.detector.lost", COUNTER, ("kind",)),
        Metric("resilience.detector.errors", COUNTER, ("kind",)),
    )
}


# ----------------------------------------------------------------------------------------------- names
def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    return "" if value is None else str(value)


def segment(value: Any) -> str:
    """``value`` as one segment of a dotted name: ``signal.sigkill`` -> ``signal_sigkill``."""
    return _NOT_IN_SEGMENT.sub("_", _text(value))[:SEGMENT_MAX] or UNKNOWN


def stat_name(name: str) -> str:
    """``name`` with characters Airflow refuses replaced by ``_``, cut at :data:`NAME_MAX`."""
    return _NOT_IN_NAME.sub("_", name)[:NAME_MAX] or UNKNOWN


def dotted_name(name: str, tags: Mapping[str, Any]) -> str | None:
    """The dotted form of ``name`` with ``tags``; ``None`` when the metric has none."""
    metric = CATALOG.get(name)
    if metric is None or not metric.dotted:
        return None
    return stat_name(".".join((name, *(segment(tags.get(tag)) for tag in metric.dotted))))


def emitted(name: str, tags: Mapping[str, Any], *, dotted: bool = True) -> list[tuple[str, dict[str, str]]]:
    """What is sent for ``name`` with ``tags``: ``(name, tags)`` pairs, the tagged form first.

    The dotted form carries the tags that are not in its name (none, for the catalog's metrics)."""
    values = {k: _text(v) for k, v in tags.items() if v is not None}
    out = [(stat_name(name), values)]
    legacy = dotted_name(name, values) if dotted else None
    if legacy is not None:
        used = set(CATALOG[name].dotted)
        out.append((legacy, {k: v for k, v in values.items() if k not in used}))
    return out


def dotted_patterns(prefix: str = "") -> dict[str, Metric]:
    """The dotted names the catalog can produce, as statsd_exporter globs (``resilience.failures.*.*``)."""
    out = {}
    for metric in CATALOG.values():
        out[prefix + metric.name] = metric
        if metric.dotted:
            out[prefix + metric.name + ".*" * len(metric.dotted)] = metric
    return out


# ----------------------------------------------------------------------------------------------- sending
#: Airflow has two copies of its Stats module: the Task SDK's (set up by the task runner) and core's (set up by
#: the scheduler, the API server, the triggerer, the dag processor, executors). The one set up in this process
#: is the one that sends anywhere.
from airflow_resilience.airflow.compat import STATS_MODULES as _STATS_MODULES  # noqa: E402


def _stats() -> Any:
    for name in _STATS_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "_factory", None) is not None:
            return module
    from airflow.sdk.observability import stats  # none set up here: Airflow's own default (no metrics)

    return stats


def _send(op: str, name: str, value: float, tags: Mapping[str, Any]) -> None:
    try:
        stats = _stats()
        send = getattr(stats, op)
        for stat, stat_tags in emitted(name, tags, dotted=bool(getattr(stats, "_export_legacy_names", True))):
            send(stat, value, tags=stat_tags or None)
    except Exception:  # metrics must never change a task's outcome
        log.debug("metric %s not emitted", name, exc_info=True)


def incr(name: str, count: int = 1, /, **tags: Any) -> None:
    """Count ``name`` (tagged and dotted). Never raises."""
    _send("incr", name, count, tags)


def timing(name: str, ms: float, /, **tags: Any) -> None:
    """Time ``name`` in milliseconds (tagged and dotted). Never raises."""
    _send("timing", name, ms, tags)


def gauge(name: str, value: float, /, **tags: Any) -> None:
    """Set the gauge ``name`` (tagged and dotted). Never raises."""
    _send("gauge", name, value, tags)


def initialize_here() -> None:
    """Set up Airflow's (core) Stats from ``[metrics]`` in a process of ours that Airflow did not start (the
    lost-worker detector), as the scheduler does for itself. Never raises."""
    try:
        from airflow.configuration import conf
        from airflow.observability.metrics import stats_utils

        from airflow_resilience.airflow.compat import core_stats

        stats = core_stats()
        if getattr(stats, "_factory", None) is None:
            stats.initialize(
                factory=stats_utils.get_stats_factory(),
                export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
            )
    except Exception:
        log.warning("airflow-resilience: metrics of this process are off (Stats could not be set up)", exc_info=True)

