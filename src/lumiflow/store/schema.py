"""Tables, as SQLAlchemy Core. Migrations under ``migrations/versions`` create them; this
module describes the head schema for queries. Keep the two in step: the store suite
creates its databases through the migrations and exercises every column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python whatever the database keeps (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> Any:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


metadata = sa.MetaData()

resources = sa.Table(
    "resources",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("uid", sa.String(36), nullable=False, unique=True),
    sa.Column("kind", sa.String(63), nullable=False),
    sa.Column("api_version", sa.String(128), nullable=False),
    sa.Column("profile", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("labels", json_type(), nullable=False),
    sa.Column("annotations", json_type(), nullable=False),
    sa.Column("owner_references", json_type(), nullable=False),
    sa.Column("owner_uid", sa.String(36), nullable=True),
    sa.Column("finalizers", json_type(), nullable=False),
    sa.Column("spec", json_type(), nullable=False),
    sa.Column("status", json_type(), nullable=False),
    sa.Column("phase", sa.String(32), nullable=False, server_default=""),
    sa.Column("resource_version", sa.BigInteger(), nullable=False),
    sa.Column("generation", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deletion_timestamp", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("kind", "profile", "name", name="uq_resources_kind_profile_name"),
    sa.Index("ix_resources_kind_phase", "kind", "phase"),
    sa.Index("ix_resources_owner_uid", "owner_uid"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
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
    sa.Index("ix_events_object_uid_id", "object_uid", "id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("groups", json_type(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(253), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ix_tokens_user_name", "user_name"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(253), nullable=True),
    sa.Column("data", json_type(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_sessions_expires_at", "expires_at"),
)

#: Time series of an object (a TrainingJob's metrics): one row per point. Points go when
#: their object goes (ON DELETE CASCADE); ``source`` says which collector wrote them.
metrics = sa.Table(
    "metrics",
    metadata,
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
    sa.Index("ix_metrics_object_uid_name_step", "object_uid", "name", "step"),
)

#: Where a collector stopped reading an object's source (log offset, parser state), written in
#: the same transaction as the points it produced: a restart neither loses nor repeats one.
metric_cursors = sa.Table(
    "metric_cursors",
    metadata,
    sa.Column(
        "object_uid",
        sa.String(36),
        sa.ForeignKey("resources.uid", ondelete="CASCADE", name="fk_metric_cursors_object_uid"),
        primary_key=True,
    ),
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("state", json_type(), nullable=False),
)

#: Pipeline step cache: a step whose key (component code, input values, input artifact
#: digests) was seen in the profile finishes with the outputs recorded then.
pipeline_cache = sa.Table(
    "pipeline_cache",
    metadata,
    sa.Column("profile", sa.String(63), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("outputs", json_type(), nullable=False),
    sa.Column("source", sa.String(512), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# Lineage, ML Metadata's model: artifacts and executions joined by events (INPUT, OUTPUT),
# grouped in contexts (a pipeline run, an experiment). Per profile.
lineage_artifacts = sa.Table(
    "lineage_artifacts",
    metadata,
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

lineage_executions = sa.Table(
    "lineage_executions",
    metadata,
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

lineage_events = sa.Table(
    "lineage_events",
    metadata,
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
    sa.Index("ix_lineage_events_artifact", "artifact_id"),
)

lineage_contexts = sa.Table(
    "lineage_contexts",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("profile", sa.String(63), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.UniqueConstraint("profile", "type", "name", name="uq_lineage_contexts_profile_type_name"),
)

lineage_associations = sa.Table(
    "lineage_associations",
    metadata,
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
