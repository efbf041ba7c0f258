"""The SQLite store's hottest statements in plain DB-API SQL.

Every controller's reconcile reads its object by name, reads an owner or child by uid and
writes a status; on a local SQLite file the statement takes ~20 µs and SQLAlchemy's
connection, statement and result machinery ~10× that. These functions run the same
statements on a ``sqlite3`` connection of the store's own (see ``SQLBase._raw_read`` and
``_raw_write``) and build the same :class:`StoredObject` as ``sql._row_to_object``: JSON
columns through orjson (the engine's deserializer), times as SQLAlchemy's SQLite dialect
keeps them (naive UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``). The store suite runs on this
path (SQLite) and on SQLAlchemy's (PostgreSQL) and compares what each returns with what
``create`` returned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from lumiflow.common.errors import Conflict, NotFound
from lumiflow.store.model import StoredObject

COLUMNS = (
    "uid",
    "kind",
    "api_version",
    "profile",
    "name",
    "labels",
    "annotations",
    "owner_references",
    "finalizers",
    "spec",
    "status",
    "resource_version",
    "generation",
    "created_at",
    "updated_at",
    "deletion_timestamp",
)
_COLS = ", ".join(COLUMNS)
_BY_NAME = "kind = ? AND profile = ? AND name = ?"
SELECT_ONE = f"SELECT {_COLS} FROM resources WHERE {_BY_NAME}"
SELECT_UID = f"SELECT {_COLS} FROM resources WHERE uid = ?"
_SELECT_UIDS = f"SELECT {_COLS} FROM resources WHERE uid IN"
VERSIONS = "SELECT uid, resource_version FROM resources WHERE kind = ? AND profile = ? AND owner_uid = ?"
_SET_STATUS = (
    "UPDATE resources SET status = ?, phase = ?, resource_version = resource_version + 1, updated_at = ?"
)
UPDATE_STATUS = f"{_SET_STATUS} WHERE {_BY_NAME} RETURNING {_COLS}"
UPDATE_STATUS_RV = f"{_SET_STATUS} WHERE {_BY_NAME} AND resource_version = ? RETURNING {_COLS}"
_LAST_EVENT = (
    "SELECT id, type, reason, message, count FROM events WHERE object_uid = ? ORDER BY id DESC LIMIT 1"
)
_REPEAT_EVENT = "UPDATE events SET count = ?, last_timestamp = ? WHERE id = ?"
_INSERT_EVENT = (
    "INSERT INTO events (object_uid, kind, profile, name, type, reason, message, count, first_timestamp,"
    " last_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
)
_INSERT = (
    "INSERT INTO resources (uid, kind, api_version, profile, name, labels, annotations, owner_references,"
    " owner_uid, finalizers, spec, status, phase, resource_version, generation, created_at, updated_at,"
    " deletion_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: Bound parameters per IN list (SQLite's default limit is far above).
CHUNK = 500


def db_time(moment: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect stores it (``UTCDateTime``: naive UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def to_object(row: Sequence[Any]) -> StoredObject:
    loads = orjson.loads
    return StoredObject(
        kind=row[1],
        api_version=row[2],
        profile=row[3],
        name=row[4],
        spec=loads(row[9]),
        status=loads(row[10]),
        labels=loads(row[5]),
        annotations=loads(row[6]),
        owner_references=loads(row[7]),
        finalizers=loads(row[8]),
        uid=row[0],
        resource_version=row[11],
        generation=row[12],
        created_at=_time(row[13]),
        updated_at=_time(row[14]),
        deletion_timestamp=_time(row[15]),
    )


def select_one(conn: sqlite3.Connection, kind: str, profile: str, name: str) -> StoredObject:
    rows = conn.execute(SELECT_ONE, (kind, profile, name)).fetchall()
    if not rows:
        where = f" in profile {profile}" if profile else ""
        raise NotFound(f"{kind} {name!r} not found{where}")
    return to_object(rows[0])


def select_uid(conn: sqlite3.Connection, uid: str) -> StoredObject:
    rows = conn.execute(SELECT_UID, (uid,)).fetchall()
    if not rows:
        raise NotFound(f"object with uid {uid} not found")
    return to_object(rows[0])


def select_uids(conn: sqlite3.Connection, uids: Sequence[str]) -> list[StoredObject]:
    found: list[StoredObject] = []
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        found.extend(map(to_object, conn.execute(f"{_SELECT_UIDS} ({marks})", chunk).fetchall()))
    return found


def select_list(
    conn: sqlite3.Connection,
    kind: str,
    *,
    profile: str | None,
    profiles: Sequence[str] | None,
    phases: Sequence[str] | None,
    owner_uid: str | None,
) -> list[StoredObject]:
    """``sql.SQLStore.list`` without selector or pages: every match, by profile then name."""
    where, params = ["kind = ?"], [kind]
    for column, values in (("profile", profiles), ("phase", phases)):
        if values is not None:
            if not values:
                return []
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    for column, value in (("profile", profile), ("owner_uid", owner_uid)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {_COLS} FROM resources WHERE {' AND '.join(where)}"
    if phases is not None or owner_uid is not None:
        # Sorted here, so that SQLite uses the phase or owner index (see SQLStore.list).
        found = [to_object(row) for row in conn.execute(sql, params).fetchall()]
        found.sort(key=lambda o: (o.profile, o.name))
        return found
    return [to_object(row) for row in conn.execute(f"{sql} ORDER BY profile, name", params).fetchall()]


def insert(conn: sqlite3.Connection, obj: StoredObject, *, phase: str) -> None:
    """``sql.SQLStore.create``'s INSERT of an object whose server fields are set."""
    dumps = orjson.dumps
    assert obj.created_at is not None
    assert obj.updated_at is not None
    conn.execute(
        _INSERT,
        (
            obj.uid,
            obj.kind,
            obj.api_version,
            obj.profile,
            obj.name,
            dumps(obj.labels).decode(),
            dumps(obj.annotations).decode(),
            dumps(obj.owner_references).decode(),
            obj.owner_uid,
            dumps(obj.finalizers).decode(),
            dumps(obj.spec).decode(),
            dumps(obj.status).decode(),
            phase,
            obj.resource_version,
            obj.generation,
            db_time(obj.created_at),
            db_time(obj.updated_at),
            None if obj.deletion_timestamp is None else db_time(obj.deletion_timestamp),
        ),
    )


def write_status(
    conn: sqlite3.Connection,
    *,
    kind: str,
    profile: str,
    name: str,
    status: dict[str, Any],
    phase: str,
    expected_rv: int | None,
    now: datetime,
    events: Sequence[tuple[str, str, str]] = (),
) -> StoredObject:
    """``sql.SQLStore._write_status`` inside the caller's transaction."""
    params: tuple[Any, ...] = (orjson.dumps(status).decode(), phase, db_time(now), kind, profile, name)
    if expected_rv is None:
        rows = conn.execute(UPDATE_STATUS, params).fetchall()
    else:
        rows = conn.execute(UPDATE_STATUS_RV, (*params, expected_rv)).fetchall()
    if not rows:
        current = select_one(conn, kind, profile, name)  # NotFound if gone
        raise Conflict(
            f"{kind} {name!r} was modified (resourceVersion {current.resource_version}, "
            f"expected {expected_rv})",
            field="metadata.resourceVersion",
        )
    updated = to_object(rows[0])
    for type_, reason, message in events:
        record_event(conn, updated, type_, reason, message, now)
    return updated


def record_event(
    conn: sqlite3.Connection, obj: StoredObject, type_: str, reason: str, message: str, now: datetime
) -> None:
    """``sql.SQLStore._record_event``: a repeat of the object's last event counts, else a new one."""
    message, reason, when = message[:4000], reason[:128], db_time(now)
    last = conn.execute(_LAST_EVENT, (obj.uid,)).fetchall()
    if last and last[0][1:4] == (type_, reason, message):
        conn.execute(_REPEAT_EVENT, (int(last[0][4]) + 1, when, last[0][0]))
        return
    conn.execute(
        _INSERT_EVENT, (obj.uid, obj.kind, obj.profile, obj.name, type_, reason, message, when, when)
    )
