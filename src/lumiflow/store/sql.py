"""The store on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL by configuration.

This module holds resources and events; the engine and transactions are in ``sql_base``,
users, tokens and sessions in ``sql_accounts``.
"""

from __future__ import annotations

import base64
import builtins
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from lumiflow.common.errors import AlreadyExists, BadRequest, Conflict, NotFound
from lumiflow.common.timeutil import utcnow
from lumiflow.store import schema, sqlite_fast
from lumiflow.store.base import ResourceStore, StatusWrite
from lumiflow.store.model import Change, Event, ListResult, StoredObject
from lumiflow.store.selectors import Selector
from lumiflow.store.sql_accounts import SQLAccounts
from lumiflow.store.sql_base import make_engine
from lumiflow.store.sql_lineage import SQLLineage
from lumiflow.store.sql_metrics import SQLMetrics

_R = schema.resources
_EV = schema.events

# Statements built once: building a Core statement costs more than running it on SQLite.
_BY_NAME = sa.and_(
    _R.c.kind == sa.bindparam("b_kind"),
    _R.c.profile == sa.bindparam("b_profile"),
    _R.c.name == sa.bindparam("b_name"),
)
_SELECT_ONE = sa.select(_R).where(_BY_NAME)
_SELECT_ONE_FOR_UPDATE = _SELECT_ONE.with_for_update()
_SELECT_UID = sa.select(_R).where(_R.c.uid == sa.bindparam("b_uid"))
_INSERT = _R.insert()
_STATUS_VALUES = {
    "status": sa.bindparam("status"),
    "phase": sa.bindparam("phase"),
    "resource_version": _R.c.resource_version + 1,
    "updated_at": sa.bindparam("updated_at"),
}
_UPDATE_STATUS = sa.update(_R).where(_BY_NAME).values(**_STATUS_VALUES).returning(*_R.c)
_UPDATE_STATUS_RV = (
    sa.update(_R)
    .where(_BY_NAME, _R.c.resource_version == sa.bindparam("b_rv"))
    .values(**_STATUS_VALUES)
    .returning(*_R.c)
)
_LAST_EVENT = (
    sa.select(_EV).where(_EV.c.object_uid == sa.bindparam("b_uid")).order_by(_EV.c.id.desc()).limit(1)
)


def _encode_continue(profile: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([profile, name]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        # Only the [profile, name] list _encode_continue writes: a JSON string or object of
        # two items would unpack too, into a cursor nobody issued.
        if not isinstance(decoded, list) or len(decoded) != 2:
            raise ValueError
        profile, name = decoded
        if not isinstance(profile, str) or not isinstance(name, str):
            raise ValueError
        return profile, name
    except (ValueError, TypeError) as exc:
        raise BadRequest("continue token is not valid", field="continue") from exc


def _row_to_object(row: Any) -> StoredObject:
    return StoredObject(
        kind=row.kind,
        api_version=row.api_version,
        profile=row.profile,
        name=row.name,
        spec=row.spec,
        status=row.status,
        labels=row.labels,
        annotations=row.annotations,
        owner_references=row.owner_references,
        finalizers=row.finalizers,
        uid=row.uid,
        resource_version=row.resource_version,
        generation=row.generation,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deletion_timestamp=row.deletion_timestamp,
    )


def _phase_of(status: dict[str, Any]) -> str:
    phase = status.get("phase")
    return phase[:32] if isinstance(phase, str) else ""


class SQLStore(SQLAccounts, SQLMetrics, SQLLineage, ResourceStore):
    """Resources and events (users, tokens, sessions: :class:`SQLAccounts`)."""

    # --- resources ---------------------------------------------------------------

    def create(self, obj: StoredObject) -> StoredObject:
        now = utcnow()
        created = obj.copy(
            uid=obj.uid or str(uuid.uuid4()),
            resource_version=1,
            generation=1,
            created_at=now,
            updated_at=now,
            deletion_timestamp=None,
        )
        try:
            if self._raw_path is not None:
                with self._raw_write() as (raw, raw_changes):
                    sqlite_fast.insert(raw, created, phase=_phase_of(created.status))
                    raw_changes.append(self._change(created, "created"))
            else:
                self._insert(created)
        except AlreadyExists:
            where = f" in profile {obj.profile}" if obj.profile else ""
            raise AlreadyExists(
                f"{obj.kind} {obj.name!r} already exists{where}", field="metadata.name"
            ) from None
        return created

    def _insert(self, created: StoredObject) -> None:
        values = {
            "uid": created.uid,
            "kind": created.kind,
            "api_version": created.api_version,
            "profile": created.profile,
            "name": created.name,
            "labels": created.labels,
            "annotations": created.annotations,
            "owner_references": created.owner_references,
            "owner_uid": created.owner_uid,
            "finalizers": created.finalizers,
            "spec": created.spec,
            "status": created.status,
            "phase": _phase_of(created.status),
            "resource_version": created.resource_version,
            "generation": created.generation,
            "created_at": created.created_at,
            "updated_at": created.updated_at,
            "deletion_timestamp": None,
        }
        with self._write() as (conn, changes):
            conn.execute(_INSERT, values)
            changes.append(self._change(created, "created"))

    @staticmethod
    def _change(obj: StoredObject, type_: str, *, writer: str | None = None) -> Change:
        owner = obj.controller_owner
        return Change(
            obj.kind,
            obj.profile,
            obj.name,
            obj.uid,
            obj.owner_uid,
            type_,
            owner_kind=owner.get("kind") if owner else None,
            owner_name=owner.get("name") if owner else None,
            writer=writer,
            phase=_phase_of(obj.status),
        )

    def _select_one(
        self, conn: sa.Connection, kind: str, profile: str, name: str, *, for_update: bool = False
    ) -> StoredObject:
        # FOR UPDATE: PostgreSQL's row lock; SQLite's BEGIN IMMEDIATE already serializes writers.
        query = _SELECT_ONE_FOR_UPDATE if for_update else _SELECT_ONE
        row = conn.execute(query, {"b_kind": kind, "b_profile": profile, "b_name": name}).first()
        if row is None:
            where = f" in profile {profile}" if profile else ""
            raise NotFound(f"{kind} {name!r} not found{where}")
        return _row_to_object(row)

    def get(self, kind: str, profile: str, name: str) -> StoredObject:
        if self._raw_path is not None:
            with self._raw_read() as raw:
                return sqlite_fast.select_one(raw, kind, profile, name)
        with self._read() as conn:
            return self._select_one(conn, kind, profile, name)

    def versions(self, kind: str, *, profile: str, owner_uid: str) -> dict[str, int]:
        if self._raw_path is not None:
            with self._raw_read() as raw:
                return dict(raw.execute(sqlite_fast.VERSIONS, (kind, profile, owner_uid)).fetchall())
        query = sa.select(_R.c.uid, _R.c.resource_version).where(
            _R.c.kind == kind, _R.c.profile == profile, _R.c.owner_uid == owner_uid
        )
        with self._read() as conn:
            return {row.uid: row.resource_version for row in conn.execute(query)}

    def get_many(self, uids: Sequence[str]) -> builtins.list[StoredObject]:
        wanted = list(dict.fromkeys(uids))
        if self._raw_path is not None:
            with self._raw_read() as raw:
                return sqlite_fast.select_uids(raw, wanted)
        found: builtins.list[StoredObject] = []
        with self._read() as conn:
            for start in range(0, len(wanted), 500):  # bounded IN lists
                chunk = wanted[start : start + 500]
                found.extend(
                    _row_to_object(r) for r in conn.execute(sa.select(_R).where(_R.c.uid.in_(chunk)))
                )
        return found

    def get_by_uid(self, uid: str) -> StoredObject:
        if self._raw_path is not None:
            with self._raw_read() as raw:
                return sqlite_fast.select_uid(raw, uid)
        with self._read() as conn:
            row = conn.execute(_SELECT_UID, {"b_uid": uid}).first()
        if row is None:
            raise NotFound(f"object with uid {uid} not found")
        return _row_to_object(row)

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
        if (
            self._raw_path is not None
            and (selector is None or selector.empty)
            and not (limit and limit > 0)
            and not continue_token
        ):
            with self._raw_read() as raw:
                return ListResult(
                    sqlite_fast.select_list(
                        raw,
                        kind,
                        profile=profile,
                        profiles=None if profiles is None else list(profiles),
                        phases=None if phases is None else list(phases),
                        owner_uid=owner_uid,
                    )
                )
        query = sa.select(_R).where(_R.c.kind == kind)
        if profile is not None:
            query = query.where(_R.c.profile == profile)
        if profiles is not None:
            if not profiles:
                return ListResult([])
            query = query.where(_R.c.profile.in_(list(profiles)))
        if phases is not None:
            query = query.where(_R.c.phase.in_(list(phases)))
        if owner_uid is not None:
            query = query.where(_R.c.owner_uid == owner_uid)
        if continue_token:
            after_profile, after_name = _decode_continue(continue_token)
            query = query.where(
                sa.or_(
                    _R.c.profile > after_profile,
                    sa.and_(_R.c.profile == after_profile, _R.c.name > after_name),
                )
            )
        wanted = limit if limit and limit > 0 else None
        items: builtins.list[StoredObject] = []
        chunk = 500 if selector is not None and not selector.empty else (wanted + 1 if wanted else None)
        with self._read() as conn:
            narrow = phases is not None or owner_uid is not None
            if chunk is None and narrow and conn.dialect.name == "sqlite":
                # Sorted here: with ORDER BY, SQLite walks the (kind, profile, name) index and
                # reads every object of the kind to find, say, the few active Workloads among
                # all that ever ran; without it, it uses the phase or owner index. (Python's
                # order of str is SQLite's BINARY order of their UTF-8.)
                items = sorted(
                    (_row_to_object(r) for r in conn.execute(query)), key=lambda o: (o.profile, o.name)
                )
                return ListResult(items)
            query = query.order_by(_R.c.profile, _R.c.name)
            if chunk is None:
                items = [_row_to_object(r) for r in conn.execute(query)]
            else:
                last: tuple[str, str] | None = None
                while True:
                    page_query = query
                    if last is not None:
                        page_query = page_query.where(
                            sa.or_(
                                _R.c.profile > last[0],
                                sa.and_(_R.c.profile == last[0], _R.c.name > last[1]),
                            )
                        )
                    rows = list(conn.execute(page_query.limit(chunk)))
                    for row in rows:
                        obj = _row_to_object(row)
                        if selector is None or selector.matches(obj.labels):
                            items.append(obj)
                    if len(rows) < chunk or (wanted and len(items) > wanted):
                        break
                    last = (rows[-1].profile, rows[-1].name)
        if wanted and len(items) > wanted:
            items = items[:wanted]
            return ListResult(items, _encode_continue(items[-1].profile, items[-1].name))
        return ListResult(items)

    def count(self, kind: str, *, phases: Iterable[str] | None = None) -> dict[str, int]:
        query = sa.select(_R.c.phase, sa.func.count()).where(_R.c.kind == kind).group_by(_R.c.phase)
        if phases is not None:
            query = query.where(_R.c.phase.in_(list(phases)))
        with self._read() as conn:
            return {row[0]: int(row[1]) for row in conn.execute(query)}

    def update(self, obj: StoredObject, *, expected_rv: int | None = None) -> StoredObject:
        expected = expected_rv if expected_rv is not None else (obj.resource_version or None)
        now = utcnow()
        with self._write() as (conn, changes):
            current = self._select_one(conn, obj.kind, obj.profile, obj.name)
            if expected is not None and current.resource_version != expected:
                raise Conflict(
                    f"{obj.kind} {obj.name!r} was modified (resourceVersion {current.resource_version}, "
                    f"you sent {expected}); get it again and retry",
                    field="metadata.resourceVersion",
                )
            spec_changed = current.spec != obj.spec
            deleting = obj.deletion_timestamp or current.deletion_timestamp
            if deleting is not None and not obj.finalizers:
                conn.execute(sa.delete(_R).where(_R.c.uid == current.uid))
                changes.append(self._change(current, "deleted"))
                return current.copy(finalizers=[], deletion_timestamp=deleting)
            updated = current.copy(
                spec=obj.spec,
                labels=obj.labels,
                annotations=obj.annotations,
                owner_references=obj.owner_references,
                finalizers=obj.finalizers,
                deletion_timestamp=deleting,
                resource_version=current.resource_version + 1,
                generation=current.generation + (1 if spec_changed else 0),
                updated_at=now,
            )
            result = conn.execute(
                sa.update(_R)
                .where(_R.c.uid == current.uid, _R.c.resource_version == current.resource_version)
                .values(
                    spec=updated.spec,
                    labels=updated.labels,
                    annotations=updated.annotations,
                    owner_references=updated.owner_references,
                    owner_uid=updated.owner_uid,
                    finalizers=updated.finalizers,
                    deletion_timestamp=updated.deletion_timestamp,
                    resource_version=updated.resource_version,
                    generation=updated.generation,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise Conflict(f"{obj.kind} {obj.name!r} was modified concurrently; retry")
            changes.append(self._change(updated, "updated"))
        return updated

    def _write_status(
        self, conn: sa.Connection, write: StatusWrite, changes: builtins.list[Change]
    ) -> StoredObject:
        params = {
            "b_kind": write.kind,
            "b_profile": write.profile,
            "b_name": write.name,
            "status": write.status,
            "phase": _phase_of(write.status),
            "updated_at": utcnow(),
        }
        if write.expected_rv is None:
            row = conn.execute(_UPDATE_STATUS, params).first()
        else:
            row = conn.execute(_UPDATE_STATUS_RV, {**params, "b_rv": write.expected_rv}).first()
        if row is None:
            current = self._select_one(conn, write.kind, write.profile, write.name)  # NotFound if gone
            raise Conflict(
                f"{write.kind} {write.name!r} was modified (resourceVersion {current.resource_version}, "
                f"expected {write.expected_rv})",
                field="metadata.resourceVersion",
            )
        updated = _row_to_object(row)
        changes.append(self._change(updated, "status", writer=write.writer))
        for type_, reason, message in write.events:
            self._record_event(conn, updated, type_=type_, reason=reason, message=message)
        return updated

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
        write = StatusWrite(kind, profile, name, status, expected_rv, writer=writer, events=tuple(events))
        with self._status_writes() as write_one:
            return write_one(write)

    @contextmanager
    def _status_writes(self) -> Iterator[Callable[[StatusWrite], StoredObject]]:
        """One transaction of status writes: plain SQL on a SQLite file, SQLAlchemy elsewhere."""
        if self._raw_path is not None:
            with self._raw_write() as (raw, raw_changes):
                yield lambda write: self._write_status_raw(raw, write, raw_changes)
        else:
            with self._write() as (conn, changes):
                yield lambda write: self._write_status(conn, write, changes)

    def _write_status_raw(
        self, raw: sqlite3.Connection, write: StatusWrite, changes: builtins.list[Change]
    ) -> StoredObject:
        updated = sqlite_fast.write_status(
            raw,
            kind=write.kind,
            profile=write.profile,
            name=write.name,
            status=write.status,
            phase=_phase_of(write.status),
            expected_rv=write.expected_rv,
            now=utcnow(),
            events=write.events,
        )
        changes.append(self._change(updated, "status", writer=write.writer))
        return updated

    def update_status_many(self, writes: Sequence[StatusWrite]) -> builtins.list[StoredObject | None]:
        results: builtins.list[StoredObject | None] = []
        with self._status_writes() as write_one:
            for write in writes:
                # A guarded UPDATE that matches nothing changes nothing: no savepoint needed.
                try:
                    results.append(write_one(write))
                except (NotFound, Conflict):
                    results.append(None)
        return results

    def request_delete(self, kind: str, profile: str, name: str) -> StoredObject | None:
        with self._write() as (conn, changes):
            # Locked: the write below has no resourceVersion guard, so on PostgreSQL a
            # concurrent update (say, removing the last finalizer) could otherwise commit in
            # between, leaving a deleting object without finalizers and two writes with one
            # resource_version.
            current = self._select_one(conn, kind, profile, name, for_update=True)
            if not current.finalizers:
                conn.execute(sa.delete(_R).where(_R.c.uid == current.uid))
                changes.append(self._change(current, "deleted"))
                return None
            if current.deletion_timestamp is not None:
                return current
            now = utcnow()
            updated = current.copy(
                deletion_timestamp=now, resource_version=current.resource_version + 1, updated_at=now
            )
            conn.execute(
                sa.update(_R)
                .where(_R.c.uid == current.uid)
                .values(deletion_timestamp=now, resource_version=updated.resource_version, updated_at=now)
            )
            changes.append(self._change(updated, "updated"))
            return updated

    def purge(self, kind: str, profile: str, name: str) -> None:
        with self._write() as (conn, changes):
            current = self._select_one(conn, kind, profile, name)
            conn.execute(sa.delete(_R).where(_R.c.uid == current.uid))
            changes.append(self._change(current, "deleted"))

    # --- events ------------------------------------------------------------------

    def record_event(self, obj: StoredObject, *, type: str, reason: str, message: str) -> Event:
        with self._write() as (conn, _changes):
            return self._record_event(conn, obj, type_=type, reason=reason, message=message)

    def _record_event(
        self, conn: sa.Connection, obj: StoredObject, *, type_: str, reason: str, message: str
    ) -> Event:
        now = utcnow()
        message = message[:4000]
        reason = reason[:128]
        if conn.dialect.name == "postgresql":
            # One event writer per object at a time: under READ COMMITTED two writers could
            # both read the same latest event (a lost count) or none (duplicates). SQLite's
            # BEGIN IMMEDIATE already serializes them.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(obj.uid))))
        last = conn.execute(_LAST_EVENT, {"b_uid": obj.uid}).first()
        if last is not None and (last.type, last.reason, last.message) == (type_, reason, message):
            count = int(last._mapping["count"]) + 1
            conn.execute(sa.update(_EV).where(_EV.c.id == last.id).values(count=count, last_timestamp=now))
            return Event(
                last.id,
                obj.uid,
                obj.kind,
                obj.profile,
                obj.name,
                type_,
                reason,
                message,
                count,
                last.first_timestamp,
                now,
            )
        result = conn.execute(
            _EV.insert().values(
                object_uid=obj.uid,
                kind=obj.kind,
                profile=obj.profile,
                name=obj.name,
                type=type_,
                reason=reason,
                message=message,
                count=1,
                first_timestamp=now,
                last_timestamp=now,
            )
        )
        event_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
        return Event(event_id, obj.uid, obj.kind, obj.profile, obj.name, type_, reason, message, 1, now, now)

    def list_events(self, *, uid: str, limit: int = 200) -> builtins.list[Event]:
        ev = schema.events
        with self._read() as conn:
            rows = list(
                conn.execute(
                    sa.select(ev).where(ev.c.object_uid == uid).order_by(ev.c.id.desc()).limit(limit)
                )
            )
        return [
            Event(
                r.id,
                r.object_uid,
                r.kind,
                r.profile,
                r.name,
                r.type,
                r.reason,
                r.message,
                r._mapping["count"],
                r.first_timestamp,
                r.last_timestamp,
            )
            for r in reversed(rows)
        ]


def open_store(url: str, *, pool_size: int = 8, create_schema: bool = True) -> SQLStore:
    return SQLStore(url, pool_size=pool_size, create_schema=create_schema)


__all__ = ["SQLStore", "make_engine", "open_store"]
