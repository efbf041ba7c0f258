"""Health, version, metrics, kinds (discovery) and clusters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lumiflow.auth.identity import Identity
from lumiflow.common.version import __version__
from lumiflow.server.deps import current_identity, platform_of, service_of

Caller = Annotated[Identity, Depends(current_identity)]


def router() -> APIRouter:
    r = APIRouter(tags=["system"])

    @r.get("/healthz", summary="Liveness: the server answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @r.get("/api/v1/version", summary="Server version")
    async def version() -> dict[str, str]:
        return {"version": __version__, "apiVersion": "lumiflow.dev/v1"}

    @r.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @r.get("/api/v1/kinds", summary="The kinds this server serves (discovery)")
    def kinds(request: Request, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        return {"kind": "KindList", "items": [k.describe() for k in platform.kinds.kinds.values()]}

    @r.get("/api/v1/clusters", summary="Clusters with capacity, use and queue")
    def clusters(request: Request, caller: Caller) -> dict[str, Any]:
        return {"kind": "ClusterList", "items": service_of(request).clusters(caller)}

    return r
