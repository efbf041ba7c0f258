"""Health, version, metrics, kinds (discovery) and clusters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lumiflow.auth.identity import Identity
from lumiflow.common.quantity import Resources
from lumiflow.common.version import __version__
from lumiflow.resources.workload import ACTIVE_PHASES, WAITING_PHASES, Workload
from lumiflow.server.deps import current_identity, platform_of

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
        platform = platform_of(request)
        platform.access.require_role(caller)
        used: dict[str, Resources] = {}
        queued: dict[str, int] = {}
        for obj in platform.store.list("Workload", phases=(*ACTIVE_PHASES, *WAITING_PHASES)).items:
            wl = Workload.parse(obj.to_manifest())
            if wl.status.phase.holds_resources() and wl.status.cluster:
                used[wl.status.cluster] = used.get(wl.status.cluster, Resources()) + wl.spec.request()
            elif wl.status.phase.is_waiting():
                target = wl.spec.cluster or platform.clusters.home_name
                queued[target] = queued.get(target, 0) + 1
        items = []
        for name, backend in platform.clusters:
            config = platform.clusters.configs[name]
            cap = backend.capacity()
            u = used.get(name, Resources())
            items.append(
                {
                    "name": name,
                    "type": config.type,
                    "home": config.home,
                    "labels": config.labels,
                    "capacity": {"cpu": cap.total.cpu, "memory": cap.total.memory, "gpu": cap.total.gpu},
                    "used": {"cpu": u.cpu, "memory": u.memory, "gpu": u.gpu, "workloads": u.workloads},
                    "queued": queued.get(name, 0),
                }
            )
        return {"kind": "ClusterList", "items": items}

    return r
