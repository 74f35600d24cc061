"""Declarations of the ``[resilience]`` options (data only: imported by Airflow while it loads providers)."""

from __future__ import annotations

SECTION = "resilience"

#: option -> (type, default as text, description). The single source of truth for config and docs.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "checkpoint_flush_interval": (
        "float",
        "0",
        "Seconds between writes of Checkpoint.set()/iterate() progress. 0 writes every change at once "
        "(a hard kill then redoes at most the item in progress). A positive value batches writes; a hard "
        "kill may then also redo the items finished in the last interval. step() results are always "
        "written at once.",
    ),
    "checkpoint_keep_on_clear": (
        "boolean",
        "False",
        "Keep checkpoints when a user clears a task instance. By default clear means rerun: the next "
        "attempt starts with no checkpoint. A task can opt out with Checkpoint.current(keep_on_clear=True).",
    ),
}
