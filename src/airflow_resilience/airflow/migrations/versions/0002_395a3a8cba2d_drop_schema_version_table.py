"""Drop ``resilience_schema_version``: ``alembic_version_resilience`` records the version now.

Downgrading recreates it with the row the create_all era wrote (``watermark``, 1), so an older
airflow-resilience finds what it expects.

Revision ID: 395a3a8cba2d
Revises: 7c5e3615e1f7
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "395a3a8cba2d"
down_revision = "7c5e3615e1f7"
branch_labels = None
depends_on = None

SCHEMA_VERSION = "resilience_schema_version"


def upgrade() -> None:
    op.drop_table(SCHEMA_VERSION)


def downgrade() -> None:
    version = op.create_table(
        SCHEMA_VERSION,
        sa.Column("component", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.bulk_insert(version, [{"component": "watermark", "version": 1}])
