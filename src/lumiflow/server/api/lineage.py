"""Lineage and artifacts of a profile: what produced an artifact, and what it went into."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from lumiflow.auth.identity import Identity
from lumiflow.server.deps import current_identity, service_of

Caller = Annotated[Identity, Depends(current_identity)]


def router() -> APIRouter:
    r = APIRouter(tags=["lineage"])

    @r.get("/api/v1/profiles/{profile}/lineage", summary="The lineage graph of an artifact (by URI)")
    async def lineage(
        request: Request,
        profile: str,
        caller: Caller,
        uri: Annotated[str, Query(min_length=1, max_length=2048)],
        direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream",
    ) -> dict[str, Any]:
        service = service_of(request)
        result: dict[str, Any] = await run_in_threadpool(
            service.lineage, caller, profile, uri, downstream=direction == "downstream"
        )
        return result

    @r.get("/api/v1/profiles/{profile}/artifacts", summary="The profile's artifacts, newest first")
    async def artifacts(
        request: Request,
        profile: str,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        service = service_of(request)
        items = await run_in_threadpool(service.artifacts, caller, profile, limit=limit)
        return {"kind": "ArtifactList", "items": items}

    return r
