"""Resources (Kubernetes-style objects) and their events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from lumiflow.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("api_version", sa.String(128), nullable=False),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("annotations", _json(), nullable=False),
        sa.Column("owner_references", _json(), nullable=False),
        sa.Column("owner_uid", sa.String(36), nullable=True),
        sa.Column("finalizers", _json(), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("status", _json(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False, server_default=""),
        sa.Column("resource_version", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deletion_timestamp", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("kind", "profile", "name", name="uq_resources_kind_profile_name"),
    )
    op.create_index("ix_resources_kind_phase", "resources", ["kind", "phase"])
    op.create_index("ix_resources_owner_uid", "resources", ["owner_uid"])
    op.create_table(
        "events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("object_uid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_timestamp", UTCDateTime(), nullable=False),
        sa.Column("last_timestamp", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_events_object_uid_id", "events", ["object_uid", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("resources")
