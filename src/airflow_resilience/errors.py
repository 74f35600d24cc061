"""Errors raised by airflow-resilience.

Every error names the checkpoint key (or setting) it is about and what to do. Errors about saved state
that cannot be used are *non-retryable*: retrying would meet the same bytes again, and starting fresh
would silently throw the saved work away. When Airflow is importable they subclass Airflow's
``AirflowFailException`` so the task fails without spending retries; without Airflow (unit tests of the
pure core) they are plain exceptions.
"""

from __future__ import annotations

import sys

# Subclass Airflow's AirflowFailException only where Airflow's Task SDK is already loaded (a task runner,
# the dag-processor): importing it here would load Airflow's configuration — and create files in the
# user's AIRFLOW_HOME — in processes that only use the pure core or the test harness.
# The task runner imports airflow.sdk.exceptions before it loads a DAG file, so a task always sees it here.
_sdk_exceptions = sys.modules.get("airflow.sdk.exceptions")
_NonRetryable = _sdk_exceptions.AirflowFailException if _sdk_exceptions is not None else Exception


class ResilienceError(Exception):
    """Base class of every error of this package."""


class ConfigurationError(ResilienceError, ValueError):
    """A setting of the ``[resilience]`` section (or an argument) has a value that cannot work."""


class CheckpointError(ResilienceError):
    """Base class of checkpoint errors."""


class CheckpointValueError(CheckpointError, _NonRetryable):  # type: ignore[misc]
    """A value given to a checkpoint is not JSON (or not a JSON object key). Nothing was saved."""


class CheckpointTooLargeError(CheckpointError, _NonRetryable):  # type: ignore[misc]
    """Saving the value would make the checkpoint larger than the store accepts. Nothing was saved."""


class CorruptCheckpointError(CheckpointError, _NonRetryable):  # type: ignore[misc]
    """Saved checkpoint state cannot be decoded. It is left untouched for inspection."""


class StaleAttemptError(CheckpointError, _NonRetryable):  # type: ignore[misc]
    """This attempt has been superseded by a newer attempt of the same task instance (fencing)."""


class CheckpointStoreError(CheckpointError):
    """The store refused or failed a write for a reason other than fencing (retryable)."""


class NoTaskContextError(CheckpointError, RuntimeError):
    """``Checkpoint.current()`` was called outside a running Airflow task."""


class ResumeError(ResilienceError, _NonRetryable):  # type: ignore[misc]
    """A saved resume point cannot be entered (unknown method, kwargs that no longer fit, bad record).

    Non-retryable: the next attempt would meet the same saved point; starting over from ``execute()``
    instead could submit external work twice. The saved point is left untouched.
    """


class UnconfirmedSubmissionError(ResilienceError, _NonRetryable):  # type: ignore[misc]
    """An earlier attempt may have submitted an external job, and nothing can tell whether it did.

    Raised by ``submit_once`` when an intent was recorded but no job id, and the caller gave neither a
    ``find`` function nor ``dedupes_by_token=True``: submitting again could run the job twice.
    """


class WatermarkError(ResilienceError):
    """Base class of watermark errors."""


class WatermarkValueError(WatermarkError, _NonRetryable):  # type: ignore[misc]
    """A watermark value (or name) is not JSON, or too large. Nothing was staged."""


class WatermarkBackwardsError(WatermarkError, _NonRetryable):  # type: ignore[misc]
    """The value would move the watermark backwards (or change its kind). Nothing was staged."""


class WatermarkFencedError(WatermarkError, _NonRetryable):  # type: ignore[misc]
    """This attempt no longer holds the watermark (it was given up for dead or taken over)."""


class WatermarkHeldError(WatermarkError):
    """Another running attempt holds the watermark (past the wait timeout, or an operator command)."""


class UnknownWatermarkError(WatermarkError, LookupError):
    """No watermark of that name exists."""
