"""Strict JSON checks for checkpoint values (pure; no Airflow import).

Airflow's task state store keeps JSON. ``json.dumps`` quietly turns ``{1: "a"}`` into ``{"1": "a"}`` and
writes ``NaN``, which other JSON readers reject; a value that changes or breaks on the way in is a lost
checkpoint on the way out. So values are checked before they are staged, and the error names the
checkpoint key and the JSON path of the offending part.
"""

from __future__ import annotations

import json
import math
from typing import Any

from airflow_resilience.errors import CheckpointValueError

_SCALARS = (str, int, float, bool, type(None))


def check_json(key: str, value: Any) -> None:
    """Raise :class:`CheckpointValueError` unless ``value`` is plain JSON (lists may be tuples)."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise CheckpointValueError(
                f"checkpoint key {key!r}: {item!r} at {path} is not valid JSON; "
                "store None or a string such as 'nan' instead"
            )
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
            continue
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise CheckpointValueError(
                        f"checkpoint key {key!r}: object key {k!r} ({type(k).__name__}) at {path} is not a "
                        "string; JSON would turn it into a string and the value read back would differ. "
                        "Convert keys with str() yourself"
                    )
                stack.append((f"{path}.{k}", v))
            continue
        hint = " (store value.isoformat() and parse it back)" if hasattr(item, "isoformat") else ""
        raise CheckpointValueError(
            f"checkpoint key {key!r}: {type(item).__name__} at {path} is not JSON-serializable{hint}; "
            "checkpoint values must be str, int, float, bool, None, list or dict"
        )


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as Airflow's store measures it (``len(json.dumps(value))``)."""
    return len(json.dumps(value))
