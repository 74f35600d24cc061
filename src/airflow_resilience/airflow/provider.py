"""Provider info (``apache_airflow_provider`` entry point): declares the ``[resilience]`` config section, the
``airflow resilience`` commands and the DB manager that ``airflow db migrate`` runs for the package's tables."""

from __future__ import annotations

from typing import Any

from importlib.metadata import PackageNotFoundError, version

# Airflow imports this module while it initialises its configuration: import nothing of the package
# but the data-only options module, or the package would be imported half-initialised.
from airflow_resilience.options import OPTIONS, SECTION

try:
    __version__ = version("airflow-resilience")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-resilience",
        "name": "Airflow Resilience",
        "description": "Checkpoints, resumable work and disruption drills for Apache Airflow.",
        "versions": [__version__],
        "cli": ["airflow_resilience.airflow.cli.get_cli_commands"],
        # `airflow db migrate` creates and upgrades the package's tables through it (docs/upgrade.md).
        "db-managers": ["airflow_resilience.airflow.db_manager.ResilienceDBManager"],
        "config": {
            SECTION: {
                "description": "Settings of airflow-resilience (checkpoints, budgets, drills).",
                "options": {
                    option: {
                        "description": doc,
                        "version_added": "0.1.0",
                        "type": "string" if kind in ("url", "tag") else kind,
                        "example": None,
                        "default": default,
                    }
                    for option, (kind, default, doc) in OPTIONS.items()
                },
            }
        },
    }
