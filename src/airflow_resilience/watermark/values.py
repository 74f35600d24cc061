"""Watermark values: names, JSON values, and the order in which comparable values may only move forward."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from airflow_resilience.errors import (
    CheckpointValueError,
    WatermarkBackwardsError,
    WatermarkValueError,
)
from airflow_resilience.jsonvalue import check_json

#: Largest value accepted, as ``len(json.dumps(value))`` (the same as Airflow's state store default).
MAX_VALUE_BYTES = 65535
#: Longest watermark name (Airflow's id columns are 250 characters).
MAX_NAME_LENGTH = 250

_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


# ------------------------------------------------------------------------------------------- values
def lsn_to_int(lsn: str) -> int:
    """``'16/B374D848'`` -> the 64-bit position it names."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def int_to_lsn(pos: int) -> str:
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


def _ordered(value: Any) -> tuple[str, Any] | None:
    """``(kind, key)`` for a value with a natural order, ``None`` for one without (objects, lists, text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        if _LSN.match(value):
            return ("LSN", lsn_to_int(value))
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        kind = "timestamp" if stamp.tzinfo is not None else "timestamp without time zone"
        return (kind, stamp)
    return None


def check_forward(name: str, old: Any, new: Any) -> None:
    """Raise :class:`WatermarkBackwardsError` if ``new`` would move watermark ``name`` back from ``old``.

    Values of an ordered kind (number, ISO timestamp, LSN) must not decrease (equal is fine: a run that
    found nothing new); a change of kind between ordered and unordered is refused too, since it is almost
    always a bug (``'2024-01-02'`` followed by ``'2024-01-02 late'``). Values with no order are not checked.
    """
    if old is None:
        return
    was, now = _ordered(old), _ordered(new)
    if was is None and now is None:
        return
    if was is None or now is None or was[0] != now[0]:
        before = was[0] if was else f"an unordered {type(old).__name__}"
        after = now[0] if now else f"an unordered {type(new).__name__}"
        raise WatermarkBackwardsError(
            f"watermark {name!r}: the committed value {old!r} is {before} but {new!r} is {after}; values "
            "must keep one comparable kind. To start over with another kind, an operator runs "
            f"'airflow resilience watermark reset {name}'"
        )
    if now[1] < was[1]:
        raise WatermarkBackwardsError(
            f"watermark {name!r}: {new!r} is before the committed value {old!r}; a watermark never moves "
            f"backwards. To re-read older data on purpose, an operator runs 'airflow resilience watermark "
            f"set {name} VALUE --backwards' (or 'reset')"
        )


def check_value(name: str, value: Any) -> str:
    """The JSON text of ``value``; :class:`WatermarkValueError` if it is not JSON or too large."""
    try:
        check_json(f"watermark {name}", value)
    except CheckpointValueError as exc:
        raise WatermarkValueError(str(exc).replace("checkpoint key 'watermark ", "watermark '")) from None
    text = json.dumps(value)
    if len(text) > MAX_VALUE_BYTES:
        raise WatermarkValueError(
            f"watermark {name!r}: the value is {len(text)} bytes as JSON, more than the {MAX_VALUE_BYTES} "
            "accepted; keep the position (an id, a timestamp, an LSN) in the watermark, not the data"
        )
    return text


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise WatermarkValueError(
            f"watermark name {name!r}: expected a non-empty string of at most {MAX_NAME_LENGTH} characters, "
            "e.g. 'orders.updated_at'"
        )
    return name


