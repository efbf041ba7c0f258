"""The pipeline step cache and lineage (ML Metadata's artifacts, executions, events, contexts)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from lumiflow.common.timeutil import to_rfc3339, utcnow
from lumiflow.store import schema
from lumiflow.store.model import ArtifactRecord
from lumiflow.store.sql_base import SQLBase

_A = schema.lineage_artifacts
_X = schema.lineage_executions
_E = schema.lineage_events
_CTX = schema.lineage_contexts
_AS = schema.lineage_associations
_CACHE = schema.pipeline_cache


class SQLLineage(SQLBase):
    # --- cache ------------------------------------------------------------------------------

    def cache_get(self, profile: str, key: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(_CACHE.c.outputs, _CACHE.c.source).where(
                    _CACHE.c.profile == profile, _CACHE.c.key == key
                )
            ).first()
        return None if row is None else {"outputs": dict(row.outputs), "source": row.source}

    def cache_put(self, profile: str, key: str, outputs: dict[str, Any], source: str) -> None:
        with self._write() as (conn, _):
            exists = conn.execute(
                sa.select(_CACHE.c.key).where(_CACHE.c.profile == profile, _CACHE.c.key == key)
            ).first()
            if exists is None:
                conn.execute(
                    _CACHE.insert().values(
                        profile=profile, key=key, outputs=outputs, source=source[:512], created_at=utcnow()
                    )
                )

    def cache_forget(self, profile: str, key: str) -> None:
        with self._write() as (conn, _):
            conn.execute(sa.delete(_CACHE).where(_CACHE.c.profile == profile, _CACHE.c.key == key))

    # --- lineage ----------------------------------------------------------------------------

    def _artifact_id(self, conn: sa.Connection, profile: str, a: ArtifactRecord) -> int:
        row = conn.execute(sa.select(_A.c.id).where(_A.c.profile == profile, _A.c.uri == a.uri)).first()
        if row is not None:
            if a.digest is not None:
                conn.execute(
                    sa.update(_A)
                    .where(_A.c.id == row.id)
                    .values(digest=a.digest, size=a.size, type=a.type, properties=a.properties)
                )
            return int(row.id)
        result = conn.execute(
            _A.insert().values(
                profile=profile,
                uri=a.uri,
                type=a.type,
                name=a.name,
                digest=a.digest,
                size=a.size,
                properties=a.properties,
                created_at=utcnow(),
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _context_id(self, conn: sa.Connection, profile: str, type_: str, name: str) -> int:
        row = conn.execute(
            sa.select(_CTX.c.id).where(_CTX.c.profile == profile, _CTX.c.type == type_, _CTX.c.name == name)
        ).first()
        if row is not None:
            return int(row.id)
        result = conn.execute(_CTX.insert().values(profile=profile, type=type_, name=name))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

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
        """Records (or updates, by profile/type/name) an execution with its input and output
        artifacts and the contexts it belongs to; one transaction. Returns its id."""
        with self._write() as (conn, _):
            row = conn.execute(
                sa.select(_X.c.id).where(_X.c.profile == profile, _X.c.type == type, _X.c.name == name)
            ).first()
            if row is None:
                result = conn.execute(
                    _X.insert().values(
                        profile=profile,
                        type=type,
                        name=name,
                        state=state,
                        properties=properties,
                        created_at=utcnow(),
                    )
                )
                execution = int(result.inserted_primary_key[0])  # type: ignore[index]
            else:
                execution = int(row.id)
                conn.execute(
                    sa.update(_X).where(_X.c.id == execution).values(state=state, properties=properties)
                )
            for direction, items in (("INPUT", inputs), ("OUTPUT", outputs)):
                for event_name, artifact in items:
                    artifact_id = self._artifact_id(conn, profile, artifact)
                    seen = conn.execute(
                        sa.select(_E.c.id).where(
                            _E.c.execution_id == execution,
                            _E.c.artifact_id == artifact_id,
                            _E.c.type == direction,
                            _E.c.name == event_name,
                        )
                    ).first()
                    if seen is None:
                        conn.execute(
                            _E.insert().values(
                                execution_id=execution,
                                artifact_id=artifact_id,
                                type=direction,
                                name=event_name,
                            )
                        )
            for ctx_type, ctx_name in contexts:
                ctx = self._context_id(conn, profile, ctx_type, ctx_name)
                linked = conn.execute(
                    sa.select(_AS.c.context_id).where(
                        _AS.c.context_id == ctx, _AS.c.execution_id == execution
                    )
                ).first()
                if linked is None:
                    conn.execute(_AS.insert().values(context_id=ctx, execution_id=execution))
        return execution

    def get_artifact(self, profile: str, uri: str) -> ArtifactRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(_A).where(_A.c.profile == profile, _A.c.uri == uri)).first()
        return None if row is None else _artifact(row)

    def list_artifacts(self, profile: str, *, limit: int = 1000) -> builtins.list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(_A).where(_A.c.profile == profile).order_by(_A.c.id.desc()).limit(limit)
            ).all()
        return [{**_artifact(r).to_dict(), "id": r.id, "createdAt": to_rfc3339(r.created_at)} for r in rows]

    def lineage(self, profile: str, uri: str, *, downstream: bool = False, depth: int = 50) -> dict[str, Any]:
        """The graph around the artifact at ``uri``: upstream (what produced it, and what that
        consumed, recursively) or downstream (what consumed it, and what that produced)."""
        with self._read() as conn:
            start = conn.execute(sa.select(_A).where(_A.c.profile == profile, _A.c.uri == uri)).first()
            if start is None:
                return {"artifacts": [], "executions": [], "events": []}
            artifacts: dict[int, Any] = {start.id: start}
            executions: dict[int, Any] = {}
            events: dict[int, Any] = {}
            frontier = {int(start.id)}
            toward_producer, toward_consumer = ("INPUT", "OUTPUT") if downstream else ("OUTPUT", "INPUT")
            for _ in range(depth):
                if not frontier:
                    break
                linked = conn.execute(
                    sa.select(_E).where(_E.c.artifact_id.in_(frontier), _E.c.type == toward_producer)
                ).all()
                new_exec = {int(e.execution_id) for e in linked} - set(executions)
                for e in linked:
                    events[e.id] = e
                if not new_exec:
                    break
                for x in conn.execute(sa.select(_X).where(_X.c.id.in_(new_exec))).all():
                    executions[x.id] = x
                nxt = conn.execute(
                    sa.select(_E).where(_E.c.execution_id.in_(new_exec), _E.c.type == toward_consumer)
                ).all()
                for e in nxt:
                    events[e.id] = e
                new_art = {int(e.artifact_id) for e in nxt} - set(artifacts)
                for a in conn.execute(sa.select(_A).where(_A.c.id.in_(new_art))).all() if new_art else []:
                    artifacts[a.id] = a
                frontier = new_art
            contexts: dict[int, list[dict[str, str]]] = {}
            if executions:
                rows = conn.execute(
                    sa.select(_AS.c.execution_id, _CTX.c.type, _CTX.c.name)
                    .join(_CTX, _CTX.c.id == _AS.c.context_id)
                    .where(_AS.c.execution_id.in_(list(executions)))
                ).all()
                for r in rows:
                    contexts.setdefault(int(r.execution_id), []).append({"type": r.type, "name": r.name})
        return {
            "artifacts": [{**_artifact(a).to_dict(), "id": a.id} for a in artifacts.values()],
            "executions": [
                {
                    "id": x.id,
                    "type": x.type,
                    "name": x.name,
                    "state": x.state,
                    "properties": dict(x.properties),
                    "contexts": contexts.get(int(x.id), []),
                }
                for x in executions.values()
            ],
            "events": [
                {"execution": e.execution_id, "artifact": e.artifact_id, "type": e.type, "name": e.name}
                for e in events.values()
            ],
        }


def _artifact(row: Any) -> ArtifactRecord:
    return ArtifactRecord(
        uri=row.uri,
        type=row.type,
        name=row.name,
        digest=row.digest,
        size=row.size,
        properties=dict(row.properties or {}),
    )
