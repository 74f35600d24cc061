"""Evidence readers at the edge: small, never-raising readers of how a task attempt is being disrupted.

Each reader returns a dict of :class:`~airflow_resilience.causes.Evidence` field names to values
(``{}`` = no evidence) and never raises; :func:`merge` combines their outputs into one ``Evidence``
for :func:`~airflow_resilience.causes.classify`::

    before = read_oom_kills()
    ...  # the attempt runs and ends
    evidence = merge(
        {"exception": "ValueError"},
        exit_evidence(returncode),
        oom_evidence(before, read_oom_kills()),
        read_pod_disruption(),
        read_cloud_notices(("aws",), enabled=True),
    )
    cause = classify(evidence)

See ``docs/evidence.md``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from airflow_resilience.causes import Evidence
from airflow_resilience.signals.cgroup import oom_evidence, read_oom_kills
from airflow_resilience.signals.cloud import (
    read_aws_spot,
    read_azure_scheduled_events,
    read_cloud_notices,
    read_gcp_preemption,
)
from airflow_resilience.signals.kubernetes import read_pod_disruption
from airflow_resilience.signals.process import exit_evidence, pid_alive

__all__ = [
    "exit_evidence",
    "merge",
    "oom_evidence",
    "pid_alive",
    "read_aws_spot",
    "read_azure_scheduled_events",
    "read_cloud_notices",
    "read_gcp_preemption",
    "read_oom_kills",
    "read_pod_disruption",
]

log = logging.getLogger(__name__)

_FIELDS = {f.name: f for f in dataclasses.fields(Evidence)}
_BOOL_FIELDS = frozenset(name for name, f in _FIELDS.items() if f.default is False)


def _as_dict(part: Mapping[str, Any] | Evidence) -> Mapping[str, Any]:
    if isinstance(part, Evidence):
        # Only what was observed: fields that differ from their defaults.
        default = Evidence()
        return {
            name: getattr(part, name)
            for name in _FIELDS
            if getattr(part, name) != getattr(default, name)
        }
    return part


def _notes(value: Any) -> tuple[tuple[str, str], ...]:
    """Notes as ``((source, fact), ...)``; a single ``(source, fact)`` pair is accepted too."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return ((value[0], value[1]),)
    return tuple((str(source), str(fact)) for source, fact in value)


def merge(*parts: Mapping[str, Any] | Evidence) -> Evidence:
    """One :class:`Evidence` from reader outputs (dicts of field -> value) or ``Evidence`` values.

    Later parts override earlier ones, except: boolean fields OR together (a ``False`` never clears a
    ``True``), ``notes`` concatenate in order, and ``None`` means "not observed" (it never clears a
    value). Unknown field names are ignored with a warning (they would be a programming error).
    """
    values: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for part in parts:
        for name, value in _as_dict(part).items():
            if name not in _FIELDS:
                log.warning("evidence: unknown field %r ignored", name)
            elif value is None:
                continue
            elif name == "notes":
                try:
                    notes.extend(_notes(value))
                except (TypeError, ValueError):
                    log.warning("evidence: malformed notes %r ignored", value)
            elif name in _BOOL_FIELDS:
                values[name] = bool(values.get(name, False) or value)
            else:
                values[name] = value
    if notes:
        values["notes"] = tuple(notes)
    return Evidence(**values)
