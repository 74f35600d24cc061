"""airflow-resilience: make Airflow tasks survive infrastructure disruptions.

Public API only. Names are imported lazily: Airflow imports this package's provider info while it sets
up its own configuration, and an eager import of the API from there would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "Checkpoint",
    "ExternalJobOperator",
    "InfraRetryPolicy",
    "ResumableOperator",
    "Watermark",
    "submit_once",
    "__version__",
]

if TYPE_CHECKING:
    from airflow_resilience.airflow.retry_policy import InfraRetryPolicy
    from airflow_resilience.airflow.operators import ExternalJobOperator, ResumableOperator
    from airflow_resilience.checkpoint import Checkpoint
    from airflow_resilience.resumable import submit_once
    from airflow_resilience.watermark import Watermark


def __getattr__(name: str) -> Any:
    if name == "Checkpoint":
        from airflow_resilience.checkpoint import Checkpoint

        return Checkpoint
    if name in ("ResumableOperator", "ExternalJobOperator"):
        from airflow_resilience.airflow import operators

        return getattr(operators, name)
    if name == "submit_once":
        from airflow_resilience.resumable import submit_once

        return submit_once
    if name == "Watermark":
        from airflow_resilience.watermark import Watermark

        return Watermark
    if name == "InfraRetryPolicy":
        from airflow_resilience.airflow.retry_policy import InfraRetryPolicy

        return InfraRetryPolicy
    raise AttributeError(f"module 'airflow_resilience' has no attribute {name!r}")
