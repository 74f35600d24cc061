"""The watermark tables, as the create_all era made them (adopts tables that are already there).

Before these migrations the API server created ``resilience_watermark``, ``resilience_watermark_history``
(index ``ix_resilience_watermark_history_name``) and ``resilience_schema_version`` (row ``watermark``, 1)
with ``metadata.create_all`` at its first watermark request. This revision creates each of them that is
absent and keeps each that is present, rows included, so an existing deployment upgrades in place.

Revision ID: 7c5e3615e1f7
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "7c5e3615e1f7"
down_revision = None
branch_labels = None
depends_on = None

WATERMARK = "resilience_watermark"
HISTORY = "resilience_watermark_history"
HISTORY_INDEX = "ix_resilience_watermark_history_name"
SCHEMA_VERSION = "resilience_schema_version"


def _existing() -> tuple[set[str], set[str]]:
    """(tables, indexes of the history table) already there; nothing when printing SQL offline."""
    if context.is_offline_mode():
        return set(), set()
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    indexes = {i["name"] for i in inspector.get_indexes(HISTORY)} if HISTORY in tables else set()
    return tables, indexes


def upgrade() -> None:
    tables, indexes = _existing()
    if WATERMARK not in tables:
        op.create_table(
            WATERMARK,
            sa.Column("name", sa.String(250), primary_key=True),
            sa.Column("value", sa.Text(), nullable=True),
            sa.Column("committed", sa.Boolean(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("fence", sa.Integer(), nullable=False),
            sa.Column("holder", sa.Text(), nullable=True),
            sa.Column("held_since", sa.Float(), nullable=True),
            sa.Column("has_staged", sa.Boolean(), nullable=False),
            sa.Column("staged", sa.Text(), nullable=True),
            sa.Column("committed_at", sa.Float(), nullable=True),
            sa.Column("committed_by", sa.Text(), nullable=True),
            sa.Column("rev", sa.Integer(), nullable=False),
        )
    if HISTORY not in tables:
        op.create_table(
            HISTORY,
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(250), nullable=False),
            sa.Column("at", sa.Float(), nullable=False),
            sa.Column("action", sa.String(32), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("value", sa.Text(), nullable=True),
            sa.Column("previous", sa.Text(), nullable=True),
            sa.Column("holder", sa.Text(), nullable=True),
            sa.Column("detail", sa.Text(), nullable=True),
        )
    if HISTORY_INDEX not in indexes:
        op.create_index(HISTORY_INDEX, HISTORY, ["name"])
    if SCHEMA_VERSION not in tables:
        version = op.create_table(
            SCHEMA_VERSION,
            sa.Column("component", sa.String(64), primary_key=True),
            sa.Column("version", sa.Integer(), nullable=False),
        )
        op.bulk_insert(version, [{"component": "watermark", "version": 1}])


def downgrade() -> None:
    op.drop_table(SCHEMA_VERSION)
    op.drop_index(HISTORY_INDEX, table_name=HISTORY)
    op.drop_table(HISTORY)
    op.drop_table(WATERMARK)
