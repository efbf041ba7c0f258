"""Builders for the store suite: objects as a user or controller would hand them to the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lumiflow.store import StoredObject

KIND = "TrainingJob"
API_VERSION = "lumiflow.io/v1"


def new_object(
    name: str,
    *,
    kind: str = KIND,
    profile: str = "team-a",
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: StoredObject | None = None,
    owner_is_controller: bool = True,
    finalizers: list[str] | None = None,
) -> StoredObject:
    """An object that has never been stored (no uid, resource_version 0)."""
    owner_references: list[dict[str, Any]] = []
    if owner is not None:
        owner_references.append(
            {
                "apiVersion": owner.api_version,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
                "controller": owner_is_controller,
            }
        )
    return StoredObject(
        kind=kind,
        api_version=API_VERSION,
        profile=profile,
        name=name,
        spec=spec if spec is not None else {"replicas": 1},
        status=status or {},
        labels=labels or {},
        annotations=annotations or {},
        owner_references=owner_references,
        finalizers=finalizers or [],
    )


def assert_utc(value: datetime | None) -> datetime:
    """``value`` is timezone-aware and in UTC (what every store timestamp promises)."""
    assert value is not None
    assert value.tzinfo is not None, f"{value!r} is naive"
    assert value.utcoffset() == timedelta(0), f"{value!r} is not UTC"
    return value


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)
