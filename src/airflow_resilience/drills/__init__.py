"""Disruption drills: disrupt real runs on a real Airflow, measure what it cost on three sides (stock, stock
with a hand-written checkpoint, airflow-resilience) from Airflow's own records, and report it (terminal
summary, HTML with plots, JSON results). Control-plane disruptions: :mod:`.control`.

``airflow resilience drill`` (or ``python -m airflow_resilience.drills``) is the command line;
:func:`run_drill` and :func:`chaos` are the Python API.
"""

from airflow_resilience.drills.model import DISRUPTIONS, DrillResult, RunRecord, Violation, check_invariants
from airflow_resilience.drills.runner import DrillConfig, Scenario, chaos, run_drill

__all__ = [
    "DISRUPTIONS", "DrillConfig", "DrillResult", "RunRecord", "Scenario", "Violation", "chaos",
    "check_invariants", "run_drill",
]
