"""Alembic environment of airflow-resilience's tables (run by ``airflow db migrate`` through
:class:`~airflow_resilience.airflow.db_manager.ResilienceDBManager`).

The version is kept in its own table, ``alembic_version_resilience`` (Airflow's ``alembic_version`` is
Airflow's). Only this package's tables are compared or touched (``include_object``). A caller may hand
the connection in ``config.attributes["connection"]``; otherwise Airflow's engine is used.
"""

from __future__ import annotations

import contextlib

from alembic import context

from airflow_resilience.airflow.watermark_db import ALL_TABLES, VERSION_TABLE, metadata

config = context.config
target_metadata = metadata


def include_object(_object, name, type_, *_args) -> bool:
    return type_ != "table" or name in ALL_TABLES


def run_migrations_offline() -> None:
    """``--show-sql-only``: print the statements for Airflow's configured database."""
    from airflow import settings

    context.configure(
        url=settings.SQL_ALCHEMY_CONN,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with contextlib.ExitStack() as stack:
        connection = config.attributes.get("connection")
        if connection is None:
            from airflow import settings

            connection = stack.enter_context(settings.engine.connect())
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            transaction_per_migration=True,
            compare_type=True,
            render_as_batch=True,
            include_object=include_object,
            version_table=VERSION_TABLE,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
