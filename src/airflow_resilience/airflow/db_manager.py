"""The package's tables under ``airflow db migrate``: an Airflow external DB manager (provider info
``db-managers``), with its own Alembic revisions (``migrations/``) and version table
(``alembic_version_resilience``).

How Airflow 3.3.2 calls it (``airflow/utils/db.py``, ``airflow/utils/db_manager.py``):

* ``airflow db migrate`` — :class:`~airflow.utils.db_manager.RunDBManager` finds this class through
  ``ProvidersManager().db_managers`` (no ``[database] external_db_managers`` setting needed), then calls
  :meth:`ResilienceDBManager.initdb` on a new Airflow database and :meth:`ResilienceDBManager.upgradedb`
  on an existing one, after Airflow's own migrations, under Airflow's migration lock.
* ``airflow db reset`` — :meth:`ResilienceDBManager.drop_tables`, then ``initdb`` again.
* ``airflow db downgrade`` moves Airflow's own tables only (it never calls an external manager). Ours go
  back with ``airflow resilience db downgrade --to-revision …`` or Airflow's
  ``airflow db-manager downgrade airflow_resilience.airflow.db_manager.ResilienceDBManager …`` (that one
  wants the class in ``[database] external_db_managers``).

A database whose tables were created before these migrations (``create_all`` at the API server's first
watermark request) has the tables and no version: :meth:`upgradedb` runs the revisions from the first,
which keeps the tables that are there (see ``versions/0001_…``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, Table, inspect

from airflow.utils.db_manager import BaseDBManager

from airflow_resilience.airflow import watermark_db
from airflow_resilience.airflow.watermark_db import ALL_TABLES, MIGRATIONS, VERSION_TABLE

#: Package version -> the head revision it ships (``--to-version`` of Airflow's db-manager commands).
REVISION_HEADS = {"0.1.0": "395a3a8cba2d"}


class ResilienceDBManager(BaseDBManager):
    """airflow-resilience's tables in Airflow's metadata database."""

    metadata = watermark_db.metadata
    version_table_name = VERSION_TABLE
    migration_dir = MIGRATIONS.as_posix()
    alembic_file = (MIGRATIONS / "alembic.ini").as_posix()
    supports_table_dropping = True
    revision_heads_map = REVISION_HEADS

    def initdb(self, use_migration_files: bool = False) -> None:
        """A new Airflow database: the same as :meth:`upgradedb` (our tables may still be there, kept by a
        database reset that dropped Airflow's only)."""
        self.upgradedb(use_migration_files=use_migration_files)

    def upgradedb(
        self,
        to_revision: str | None = None,
        from_revision: str | None = None,
        show_sql_only: bool = False,
        use_migration_files: bool = False,
    ) -> None:
        """Create (no table of ours: from the ORM, stamped at the head, as Airflow does) or upgrade."""
        from alembic import command

        self._release_metadata_locks_if_needed()
        versioned = self.get_current_revision() is not None
        self._release_metadata_locks_if_needed()
        if not (versioned or to_revision or show_sql_only or use_migration_files or self._has_existing_manager_tables()):
            self.create_db_from_orm()
            return
        # Unversioned tables of the create_all era run the revisions from the first, which adopts them.
        config = self.get_alembic_config()
        target = to_revision or "heads"
        command.upgrade(config, revision=f"{from_revision}:{target}" if show_sql_only and from_revision else target,
                        sql=show_sql_only)
        self.log.info("airflow-resilience tables migrated to %s", target)

    def downgrade(self, to_revision: str, from_revision: str | None = None, show_sql_only: bool = False) -> None:
        """Take our tables back to ``to_revision`` (``base``: none of them left but the version table)."""
        from alembic import command

        self._release_metadata_locks_if_needed()
        config = self.get_alembic_config()
        if show_sql_only:
            start = from_revision or self.get_current_revision() or "base"
            command.downgrade(config, revision=f"{start}:{to_revision}", sql=True)
            return
        command.downgrade(config, revision=to_revision)
        self.log.info("airflow-resilience tables downgraded to %s", to_revision)

    def drop_tables(self, connection: Any) -> None:
        """Drop every table of ours that exists, the version tables included (``airflow db reset``,
        ``airflow resilience uninstall``)."""
        if not self.supports_table_dropping:
            return
        drop_tables(connection)


def drop_tables(connection: Any) -> list[str]:
    """Drop this package's tables that exist on ``connection``; returns the names dropped."""
    present = set(inspect(connection).get_table_names())
    dropped = []
    for name in ALL_TABLES:
        if name in present:
            table = watermark_db.metadata.tables.get(name)
            (table if table is not None else Table(name, MetaData())).drop(connection)
            dropped.append(name)
    return dropped


def upgrade(engine: Any, revision: str = "heads") -> None:
    """Run the migrations on ``engine`` (any database; no Airflow configuration needed): tests, tools."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", MIGRATIONS.as_posix())
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
