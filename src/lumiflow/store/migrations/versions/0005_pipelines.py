"""Pipeline step cache and lineage (artifacts, executions, events, contexts).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from lumiflow.store.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def json_type() -> Any:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pipeline_cache",
        sa.Column("profile", sa.String(63), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("outputs", json_type(), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "lineage_artifacts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("uri", sa.String(2048), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(80), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("properties", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("profile", "uri", name="uq_lineage_artifacts_profile_uri"),
    )
    op.create_table(
        "lineage_executions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("properties", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("profile", "type", "name", name="uq_lineage_executions_profile_type_name"),
    )
    op.create_table(
        "lineage_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column(
            "execution_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("lineage_executions.id", ondelete="CASCADE", name="fk_lineage_events_execution"),
            nullable=False,
        ),
        sa.Column(
            "artifact_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("lineage_artifacts.id", ondelete="CASCADE", name="fk_lineage_events_artifact"),
            nullable=False,
        ),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.UniqueConstraint("execution_id", "artifact_id", "type", "name", name="uq_lineage_events"),
    )
    op.create_index("ix_lineage_events_artifact", "lineage_events", ["artifact_id"])
    op.create_table(
        "lineage_contexts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.UniqueConstraint("profile", "type", "name", name="uq_lineage_contexts_profile_type_name"),
    )
    op.create_table(
        "lineage_associations",
        sa.Column(
            "context_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("lineage_contexts.id", ondelete="CASCADE", name="fk_lineage_assoc_context"),
            primary_key=True,
        ),
        sa.Column(
            "execution_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("lineage_executions.id", ondelete="CASCADE", name="fk_lineage_assoc_execution"),
            primary_key=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("lineage_associations")
    op.drop_table("lineage_contexts")
    op.drop_table("lineage_events")
    op.drop_table("lineage_executions")
    op.drop_table("lineage_artifacts")
    op.drop_table("pipeline_cache")
