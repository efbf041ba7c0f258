"""Metric time series: appended in batches, each batch with its collector's cursor."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any

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


class SQLMetrics(SQLBase):
    def add_metrics(
        self,
        uid: str,
        records: Sequence[MetricRecord],
        *,
        cursor: tuple[str, dict[str, Any]] | None = None,
    ) -> int:
        if cursor is None and self._raw_path is not None:
            # The push path (a replica's lumiflow.report): plain SQL on SQLite, see _raw_write.
            with self._raw_write() as raw:
                if raw.execute(_EXISTS_SQL, (uid,)).fetchone() is None:
                    raise NotFound(f"no object with uid {uid!r}")
                raw.executemany(_INSERT_SQL, [(uid, *r) for r in records])
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
        with self._read() as conn:
            row = conn.execute(
                sa.select(_C.c.state).where(_C.c.object_uid == uid, _C.c.source == source)
            ).first()
        return dict(row[0]) if row is not None else None

    def list_metrics(
        self, uid: str, *, names: Iterable[str] | None = None, limit: int = 100_000
    ) -> builtins.list[MetricRecord]:
        query = sa.select(_M.c.name, _M.c.step, _M.c.value, _M.c.timestamp, _M.c.source).where(
            _M.c.object_uid == uid
        )
        if names is not None:
            query = query.where(_M.c.name.in_(list(names)))
        query = query.order_by(_M.c.name, _M.c.step, _M.c.id).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [MetricRecord(r.name, int(r.step), float(r.value), float(r.timestamp), r.source) for r in rows]
