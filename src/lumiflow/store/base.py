"""The store's contract. :class:`SQLStore` implements it on SQLite and PostgreSQL.

Thread-safety: every method may be called from any thread; each call runs in its own
transaction and either commits completely or changes nothing.

Errors: :class:`~lumiflow.common.errors.NotFound`, :class:`AlreadyExists`,
:class:`Conflict` (a stale ``expected_rv``), :class:`StoreUnavailable` (the database cannot
be reached; callers may retry). Driver exceptions never leave the store.

Ownership of state: users own ``spec``, labels and annotations (through the API);
controllers own ``status`` and finalizers. Every write increments ``resource_version``; a
write of ``spec`` also increments ``generation`` (as Kubernetes does), so a controller can
tell a new desired state from its own status writes.

Notifications: after a commit, every subscriber is called with a :class:`Change`, in the
committing thread. Subscribers must be quick and must not raise (they enqueue work).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lumiflow.common.errors import NotFound
from lumiflow.store.model import (
    ArtifactRecord,
    Change,
    Event,
    ListResult,
    MetricRecord,
    Session,
    StoredObject,
    Token,
    User,
)
from lumiflow.store.selectors import Selector

Subscriber = Callable[[Change], None]


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """One status write in a batch (see :meth:`ResourceStore.update_status_many`)."""

    kind: str
    profile: str
    name: str
    status: dict[str, Any]
    expected_rv: int | None = None
    #: Who writes (a controller's kind, "scheduler"): announced in the Change, so that a
    #: controller is not woken by its own status write.
    writer: str | None = None
    #: (type, reason, message) events recorded in the same transaction as the status.
    events: tuple[tuple[str, str, str], ...] = ()


class ResourceStore(ABC):
    # --- resources ---------------------------------------------------------------

    @abstractmethod
    def create(self, obj: StoredObject) -> StoredObject:
        """Inserts ``obj``; assigns uid, resource_version 1, generation 1 and timestamps.

        Raises AlreadyExists if (kind, profile, name) is taken. Not idempotent.
        """

    @abstractmethod
    def get(self, kind: str, profile: str, name: str) -> StoredObject:
        """Raises NotFound."""

    @abstractmethod
    def get_by_uid(self, uid: str) -> StoredObject:
        """Raises NotFound."""

    @abstractmethod
    def list(
        self,
        kind: str,
        *,
        profile: str | None = None,
        profiles: Sequence[str] | None = None,
        selector: Selector | None = None,
        phases: Iterable[str] | None = None,
        owner_uid: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Objects of ``kind`` ordered by (profile, name), filtered by the arguments given.

        ``profile`` narrows to one profile, ``profiles`` to several (an empty list matches
        nothing). ``phases`` matches ``status.phase``; the empty string matches objects with
        no phase yet. Pagination is by keyset: a page never repeats or skips an object that
        exists for the whole listing. Raises BadRequest for a malformed continue token.
        """

    def versions(self, kind: str, *, profile: str, owner_uid: str) -> dict[str, int]:
        """uid → resourceVersion of the ``kind`` objects ``owner_uid`` owns in ``profile``:
        with :meth:`get_many`, a controller that keeps the objects it read re-reads only those
        that changed (an Experiment with hundreds of Trials is reconciled on every change)."""
        return {
            o.uid: o.resource_version for o in self.list(kind, profile=profile, owner_uid=owner_uid).items
        }

    def get_many(self, uids: Sequence[str]) -> builtins.list[StoredObject]:
        """The objects with these uids that exist (in no particular order)."""
        found: builtins.list[StoredObject] = []
        for uid in uids:
            try:
                found.append(self.get_by_uid(uid))
            except NotFound:
                continue
        return found

    @abstractmethod
    def count(self, kind: str, *, phases: Iterable[str] | None = None) -> dict[str, int]:
        """Number of objects of ``kind`` per phase (``""`` for none)."""

    @abstractmethod
    def update(self, obj: StoredObject, *, expected_rv: int | None = None) -> StoredObject:
        """Replaces spec, labels, annotations, owner references, finalizers and
        deletion_timestamp of the stored object named by ``obj``.

        ``expected_rv`` (or ``obj.resource_version`` when None and non-zero) must equal
        the stored version, else Conflict. Status is left as stored. If the write leaves a
        deleting object without finalizers, the object is removed.
        """

    @abstractmethod
    def update_status(
        self,
        kind: str,
        profile: str,
        name: str,
        status: dict[str, Any],
        *,
        expected_rv: int | None = None,
        writer: str | None = None,
        events: Sequence[tuple[str, str, str]] = (),
    ) -> StoredObject:
        """Replaces status and records ``events`` (type, reason, message) in the same
        transaction. ``expected_rv`` None means last writer wins (for the one controller
        that owns the status); ``writer`` is passed on in the Change. Raises NotFound,
        Conflict."""

    @abstractmethod
    def update_status_many(self, writes: Sequence[StatusWrite]) -> builtins.list[StoredObject | None]:
        """Applies several status writes in one transaction (the scheduler's admissions).

        A write whose object is gone or whose expected_rv is stale is skipped and
        reported as None in its position; the others commit.
        """

    @abstractmethod
    def request_delete(self, kind: str, profile: str, name: str) -> StoredObject | None:
        """Deletes the object, or, when it has finalizers, marks it with a
        deletion_timestamp and returns it. Idempotent on a deleting object. NotFound."""

    @abstractmethod
    def purge(self, kind: str, profile: str, name: str) -> None:
        """Removes the row whatever its finalizers. For garbage collection only."""

    # --- events ------------------------------------------------------------------

    @abstractmethod
    def record_event(self, obj: StoredObject, *, type: str, reason: str, message: str) -> Event:
        """Adds an event about ``obj``; an event equal in (type, reason, message) to the
        object's latest one increments that event's count instead."""

    @abstractmethod
    def list_events(self, *, uid: str, limit: int = 200) -> builtins.list[Event]:
        """Events of the object with ``uid``, oldest first."""

    # --- users and tokens ----------------------------------------------------------

    @abstractmethod
    def create_user(self, name: str, groups: builtins.list[str]) -> User:
        """Raises AlreadyExists."""

    @abstractmethod
    def update_user(self, name: str, groups: builtins.list[str]) -> User:
        """Raises NotFound."""

    @abstractmethod
    def get_user(self, name: str) -> User:
        """Raises NotFound."""

    @abstractmethod
    def list_users(self) -> builtins.list[User]: ...

    @abstractmethod
    def delete_user(self, name: str) -> None:
        """Deletes the user and revokes all their tokens. Raises NotFound."""

    @abstractmethod
    def add_token(
        self, *, token_id: str, user: str, description: str, issued_at: datetime, expires_at: datetime | None
    ) -> Token: ...

    @abstractmethod
    def get_token(self, token_id: str) -> Token:
        """Raises NotFound."""

    @abstractmethod
    def list_tokens(self, *, user: str | None = None) -> builtins.list[Token]: ...

    @abstractmethod
    def revoke_token(self, token_id: str) -> Token:
        """Idempotent. Raises NotFound."""

    @abstractmethod
    def revoked_token_ids(self) -> set[str]:
        """Ids of every revoked token (the auth layer caches them)."""

    # --- dashboard sessions ----------------------------------------------------------

    @abstractmethod
    def create_session(
        self, session_id: str, *, user: str | None, data: dict[str, Any], expires_at: datetime
    ) -> Session:
        """Raises AlreadyExists if ``session_id`` is taken."""

    @abstractmethod
    def get_session(self, session_id: str) -> Session:
        """Raises NotFound. Expired sessions are returned as stored; the caller judges them."""

    @abstractmethod
    def update_session(self, session_id: str, *, data: dict[str, Any], user: str | None = None) -> Session:
        """Replaces ``data`` (and ``user`` when given). Raises NotFound."""

    @abstractmethod
    def delete_session(self, session_id: str) -> None:
        """Idempotent: deleting a missing session is not an error."""

    @abstractmethod
    def delete_expired_sessions(self, now: datetime) -> int:
        """Removes sessions whose ``expires_at`` is before ``now``; returns how many."""

    # --- metrics --------------------------------------------------------------------

    @abstractmethod
    def add_metrics(
        self,
        uid: str,
        records: Sequence[MetricRecord],
        *,
        cursor: tuple[str, dict[str, Any]] | None = None,
    ) -> int:
        """Appends points to the series of the object with ``uid`` and, with ``cursor``
        (source, state), records where that source's collector stopped, in one transaction:
        points and cursor commit together or not at all. Returns the points written.
        Raises NotFound when the object is gone (its points went with it)."""

    @abstractmethod
    def metric_cursor(self, uid: str, source: str) -> dict[str, Any] | None:
        """The state last written with ``cursor=(source, state)``, or None."""

    @abstractmethod
    def list_metrics(
        self, uid: str, *, names: Iterable[str] | None = None, limit: int = 100_000
    ) -> builtins.list[MetricRecord]:
        """Points of the object, by name, then step, then arrival order."""

    # --- pipeline cache and lineage ---------------------------------------------------

    @abstractmethod
    def cache_get(self, profile: str, key: str) -> dict[str, Any] | None:
        """The outputs recorded for a step cache key in the profile (and where from), or None."""

    @abstractmethod
    def cache_put(self, profile: str, key: str, outputs: dict[str, Any], source: str) -> None:
        """Records a step's outputs under its key; the first entry for a key stays."""

    @abstractmethod
    def cache_forget(self, profile: str, key: str) -> None: ...

    @abstractmethod
    def record_execution(
        self,
        profile: str,
        *,
        type: str,
        name: str,
        state: str,
        properties: dict[str, Any],
        inputs: Sequence[tuple[str, ArtifactRecord]] = (),
        outputs: Sequence[tuple[str, ArtifactRecord]] = (),
        contexts: Sequence[tuple[str, str]] = (),
    ) -> int:
        """An execution (by profile, type and name: recording it again updates it) with its
        input and output artifacts (by URI) and contexts, in one transaction."""

    @abstractmethod
    def get_artifact(self, profile: str, uri: str) -> ArtifactRecord | None: ...

    @abstractmethod
    def list_artifacts(self, profile: str, *, limit: int = 1000) -> builtins.list[dict[str, Any]]: ...

    @abstractmethod
    def lineage(self, profile: str, uri: str, *, downstream: bool = False, depth: int = 50) -> dict[str, Any]:
        """Artifacts, executions and events upstream (or downstream) of the artifact at ``uri``."""

    # --- notifications and lifecycle ------------------------------------------------

    @abstractmethod
    def subscribe(self, callback: Subscriber) -> None: ...

    @abstractmethod
    def close(self) -> None: ...
