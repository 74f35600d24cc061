"""airflow-resilience: make Airflow tasks survive infrastructure disruptions.

Public API only. Names are imported lazily: Airflow imports this package's provider info while it sets
up its own configuration, and an eager import of the API from there would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Checkpoint", "InfraRetryPolicy", "__version__"]

if TYPE_CHECKING:
    from airflow_resilience.airflow.retry_policy import InfraRetryPolicy
    from airflow_resilience.checkpoint import Checkpoint


def __getattr__(name: str) -> Any:
    if name == "Checkpoint":
        from airflow_resilience.checkpoint import Checkpoint

        return Checkpoint
    if name == "InfraRetryPolicy":
        from airflow_resilience.airflow.retry_policy import InfraRetryPolicy

        return InfraRetryPolicy
    raise AttributeError(f"module 'airflow_resilience' has no attribute {name!r}")
