"""Watermark history is bounded: rows older than the retention are deleted when the name next changes
(the SQL service on a SQLite file; no Airflow running)."""

from __future__ import annotations

from pathlib import Path

import pytest

watermark_db = pytest.importorskip("airflow_resilience.airflow.watermark_db")


def test_old_history_rows_are_pruned_on_the_next_change(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from airflow_resilience.airflow.db_manager import upgrade

    now = [1_000_000.0]
    engine = create_engine(f"sqlite:///{tmp_path / 'wm.db'}")
    upgrade(engine)  # the tables come from the migrations (`airflow db migrate`), never from the service
    service = watermark_db.SqlWatermarks(engine, clock=lambda: now[0])
    service.history_retention_days = 30
    for value in (1, 2, 3):
        service.set("orders", value, actor="test")
    assert len(service.history("orders")) == 3
    now[0] += 31 * 86400
    service.set("orders", 4, actor="test")
    history = service.history("orders")
    assert [h["value"] for h in history] == [4]  # the three older rows went; the new one stays
    service.history_retention_days = 0  # keep everything
    now[0] += 365 * 86400
    service.set("orders", 5, actor="test")
    assert [h["value"] for h in service.history("orders")] == [5, 4]
