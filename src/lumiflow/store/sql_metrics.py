"""Metric time series: appended in batches, each batch with its collector's cursor."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from lumiflow.common.errors import NotFound
from lumiflow.store import schema
from lumiflow.store.model import MetricRecord
from lumiflow.store.sql_base import SQLBase

_M = schema.metrics
_C = schema.metric_cursors
_EXISTS_SQL = "SELECT id FROM resources WHERE uid = ?"
_INSERT_SQL = (
    "INSERT INTO metrics (object_uid, name, step, value, timestamp, source) VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_CURSOR_SQL = (
    "INSERT INTO metric_cursors (object_uid, source, state) VALUES (?, ?, ?)"
    " ON CONFLICT (object_uid, source) DO UPDATE SET state = excluded.state"
)
_CURSOR_SQL = "SELECT state FROM metric_cursors WHERE object_uid = ? AND source = ?"
_LIST_SQL = "SELECT name, step, value, timestamp, source FROM metrics WHERE object_uid = ?"


class SQLMetrics(SQLBase):
    def add_metrics(
        self,
        uid: str,
        records: Sequence[MetricRecord],
        *,
        cursor: tuple[str, dict[str, Any]] | None = None,
    ) -> int:
        if self._raw_path is not None:
            # Plain SQL on a SQLite file (see _raw_write): the push path and every collector's.
            with self._raw_write() as (raw, _changes):
                if not raw.execute(_EXISTS_SQL, (uid,)).fetchall():
                    raise NotFound(f"no object with uid {uid!r}")
                if records:
                    raw.executemany(_INSERT_SQL, [(uid, *r) for r in records])
                if cursor is not None:
                    source, state = cursor
                    raw.execute(_UPSERT_CURSOR_SQL, (uid, source, orjson.dumps(state).decode()))
            return len(records)
        with self._write() as (conn, _changes):
            exists = conn.execute(
                sa.select(schema.resources.c.id).where(schema.resources.c.uid == uid)
            ).first()
            if exists is None:
                raise NotFound(f"no object with uid {uid!r}")
            if records:
                conn.execute(
                    _M.insert(),
                    [
                        {
                            "object_uid": uid,
                            "name": r.name,
                            "step": r.step,
                            "value": r.value,
                            "timestamp": r.timestamp,
                            "source": r.source,
                        }
                        for r in records
                    ],
                )
            if cursor is not None:
                source, state = cursor
                updated = conn.execute(
                    sa.update(_C).where(_C.c.object_uid == uid, _C.c.source == source).values(state=state)
                )
                if updated.rowcount == 0:
                    conn.execute(_C.insert().values(object_uid=uid, source=source, state=state))
        return len(records)

    def metric_cursor(self, uid: str, source: str) -> dict[str, Any] | None:
        if self._raw_path is not None:
            with self._raw_read() as raw:
                rows = raw.execute(_CURSOR_SQL, (uid, source)).fetchall()
            return dict(orjson.loads(rows[0][0])) if rows else None
        with self._read() as conn:
            row = conn.execute(
                sa.select(_C.c.state).where(_C.c.object_uid == uid, _C.c.source == source)
            ).first()
        return dict(row[0]) if row is not None else None

    def list_metrics(
        self, uid: str, *, names: Iterable[str] | None = None, limit: int = 100_000
    ) -> builtins.list[MetricRecord]:
        if self._raw_path is not None:
            wanted = None if names is None else list(names)
            sql, params = _LIST_SQL, [uid]
            if wanted is not None:
                if not wanted:
                    return []
                sql = f"{sql} AND name IN ({', '.join('?' * len(wanted))})"
                params.extend(wanted)
            with self._raw_read() as raw:
                found = raw.execute(f"{sql} ORDER BY name, step, id LIMIT ?", (*params, limit)).fetchall()
            return [MetricRecord(n, int(st), float(v), float(t), src) for n, st, v, t, src in found]
        query = sa.select(_M.c.name, _M.c.step, _M.c.value, _M.c.timestamp, _M.c.source).where(
            _M.c.object_uid == uid
        )
        if names is not None:
            query = query.where(_M.c.name.in_(list(names)))
        query = query.order_by(_M.c.name, _M.c.step, _M.c.id).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [MetricRecord(r.name, int(r.step), float(r.value), float(r.timestamp), r.source) for r in rows]
