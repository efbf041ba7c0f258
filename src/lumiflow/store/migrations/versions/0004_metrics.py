"""Metric time series and the collectors' cursors.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metrics",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "object_uid",
            sa.String(36),
            sa.ForeignKey("resources.uid", ondelete="CASCADE", name="fk_metrics_object_uid"),
            nullable=False,
        ),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_metrics_object_uid_name_step", "metrics", ["object_uid", "name", "step"])
    op.create_table(
        "metric_cursors",
        sa.Column(
            "object_uid",
            sa.String(36),
            sa.ForeignKey("resources.uid", ondelete="CASCADE", name="fk_metric_cursors_object_uid"),
            primary_key=True,
        ),
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("state", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metric_cursors")
    op.drop_table("metrics")
