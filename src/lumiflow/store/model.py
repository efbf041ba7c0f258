"""Domain objects the store returns. They are plain data, never ORM rows.

An object is stored the way Kubernetes' API server stores one: identity (kind, profile,
name, uid), metadata (labels, annotations, owner references, finalizers), ``spec`` and
``status`` as JSON, and a ``resource_version`` that every write increments, for optimistic
concurrency. ``profile`` is ``""`` for cluster-scoped kinds (Profile itself).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from lumiflow.common.timeutil import to_rfc3339


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    profile: str
    name: str

    def __str__(self) -> str:
        where = f"{self.profile}/" if self.profile else ""
        return f"{self.kind.lower()}/{where}{self.name}"


@dataclass(slots=True)
class StoredObject:
    kind: str
    api_version: str
    profile: str
    name: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner_references: list[dict[str, Any]] = field(default_factory=list)
    finalizers: list[str] = field(default_factory=list)
    uid: str = ""
    resource_version: int = 0
    generation: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deletion_timestamp: datetime | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.profile, self.name)

    @property
    def phase(self) -> str | None:
        value = self.status.get("phase")
        return value if isinstance(value, str) else None

    @property
    def controller_owner(self) -> dict[str, Any] | None:
        for owner in self.owner_references:
            if owner.get("controller"):
                return owner
        return None

    @property
    def owner_uid(self) -> str | None:
        for owner in self.owner_references:
            if owner.get("controller"):
                uid = owner.get("uid")
                return str(uid) if uid else None
        return None

    def copy(self, **changes: Any) -> StoredObject:
        clone = dataclasses.replace(self, **changes)
        return clone

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.profile:
            meta["namespace"] = self.profile
        meta["uid"] = self.uid
        meta["resourceVersion"] = str(self.resource_version)
        meta["generation"] = self.generation
        meta["creationTimestamp"] = to_rfc3339(self.created_at)
        if self.deletion_timestamp is not None:
            meta["deletionTimestamp"] = to_rfc3339(self.deletion_timestamp)
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.owner_references:
            meta["ownerReferences"] = [dict(o) for o in self.owner_references]
        if self.finalizers:
            meta["finalizers"] = list(self.finalizers)
        return meta

    def to_manifest(self) -> dict[str, Any]:
        """The Kubernetes-shaped document users see: apiVersion, kind, metadata, spec, status."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata(),
            "spec": self.spec,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[StoredObject]
    #: Opaque token for the next page, ``None`` on the last page.
    continue_token: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    object_uid: str
    kind: str
    profile: str
    name: str
    type: str  # Normal | Warning
    reason: str
    message: str
    count: int
    first_timestamp: datetime
    last_timestamp: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "firstTimestamp": to_rfc3339(self.first_timestamp),
            "lastTimestamp": to_rfc3339(self.last_timestamp),
            "involvedObject": {
                "kind": self.kind,
                "namespace": self.profile,
                "name": self.name,
                "uid": self.object_uid,
            },
        }


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: list[str]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "groups": list(self.groups), "createdAt": to_rfc3339(self.created_at)}


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: str
    description: str
    issued_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "description": self.description,
            "issuedAt": to_rfc3339(self.issued_at),
            "expiresAt": to_rfc3339(self.expires_at),
            "revokedAt": to_rfc3339(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A dashboard sign-in kept on the server; the browser holds only an opaque cookie.

    ``id`` is a digest of that cookie (a stolen database does not hand out sessions);
    ``data`` belongs to the auth layer (tokens, CSRF secret, a pending sign-in's PKCE
    verifier). ``user`` is None while a sign-in is still under way.
    """

    id: str
    user: str | None
    data: dict[str, Any]
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """What a subscriber hears after a commit: which object changed and how."""

    kind: str
    profile: str
    name: str
    uid: str
    owner_uid: str | None
    type: str  # created | updated | status | deleted
    owner_kind: str | None = None
    owner_name: str | None = None
    #: Who made the change, when the writer said so (see StatusWrite.writer).
    writer: str | None = None
    #: The object's ``status.phase`` after the change ("" when it has none).
    phase: str = ""


class MetricRecord(NamedTuple):
    """One point of a time series: ``name`` at ``step`` was ``value`` (``timestamp`` in seconds
    since the epoch; ``source`` the collector that read it: stdout, file, tfevent, push).

    A named tuple, not a dataclass: a pushed batch builds thousands per second, and a tuple in
    the table's column order goes to the driver as it is."""

    name: str
    step: int
    value: float
    timestamp: float
    source: str = "push"

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "value": self.value, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """An artifact as lineage knows it: where it is, what it is, its content digest."""

    uri: str
    type: str
    name: str
    digest: str | None = None
    size: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "type": self.type,
            "name": self.name,
            "digest": self.digest,
            "size": self.size,
            "properties": dict(self.properties),
        }
