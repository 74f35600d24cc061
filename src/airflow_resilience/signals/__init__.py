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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_resilience.causes import Evidence

#: The readers, imported on first use: every task start imports this package (the cgroup counter) and
#: must not pay for the HTTP readers it does not call.
_LAZY = {
    "oom_evidence": "cgroup",
    "read_oom_kills": "cgroup",
    "read_aws_spot": "cloud",
    "read_azure_scheduled_events": "cloud",
    "read_cloud_notices": "cloud",
    "read_gcp_preemption": "cloud",
    "read_pod_disruption": "kubernetes",
    "exit_evidence": "process",
    "pid_alive": "process",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

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


def _fields() -> dict:
    from airflow_resilience.causes import Evidence

    return {f.name: f for f in dataclasses.fields(Evidence)}


def _as_dict(part: Mapping[str, Any] | Evidence) -> Mapping[str, Any]:
    from airflow_resilience.causes import Evidence

    if isinstance(part, Evidence):
        # Only what was observed: fields that differ from their defaults.
        default = Evidence()
        return {
            name: getattr(part, name)
            for name in _fields()
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
    from airflow_resilience.causes import Evidence

    fields = _fields()
    bool_fields = frozenset(name for name, f in fields.items() if f.default is False)
    values: dict[str, Any] = {}
    notes: list[tuple[str, str]] = []
    for part in parts:
        for name, value in _as_dict(part).items():
            if name not in fields:
                log.warning("evidence: unknown field %r ignored", name)
            elif value is None:
                continue
            elif name == "notes":
                try:
                    notes.extend(_notes(value))
                except (TypeError, ValueError):
                    log.warning("evidence: malformed notes %r ignored", value)
            elif name in bool_fields:
                values[name] = bool(values.get(name, False) or value)
            else:
                values[name] = value
    if notes:
        values["notes"] = tuple(notes)
    return Evidence(**values)
