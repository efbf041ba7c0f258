"""Routes for every kind, generated from the kinds registry (one route per verb and kind).

Namespaced kinds live under ``/api/v1/profiles/{profile}/{plural}``; ``/api/v1/{plural}``
lists across every profile the caller can see. Profiles themselves are
``/api/v1/profiles[/{name}]``. Lists have Kubernetes' shape (``items`` and
``metadata.continue``); bodies are JSON, or YAML with ``Content-Type: application/yaml``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lumiflow.auth.identity import Identity
from lumiflow.resources import KindInfo
from lumiflow.server.deps import JSON, current_identity, platform_of, read, read_body, service_of
from lumiflow.server.logs import LogRequest, LogStream

Caller = Annotated[Identity, Depends(current_identity)]
LabelSelector = Annotated[
    str | None, Query(alias="labelSelector", max_length=4096, description="key=value,key!=v,key in (a,b)")
]
Limit = Annotated[int | None, Query(ge=1, le=1000, description="page size")]
Continue = Annotated[
    str | None, Query(alias="continue", max_length=4096, description="token from the previous page")
]

MANIFEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["apiVersion", "kind"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {"type": "object"},
                    },
                }
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def _list_body(info: KindInfo, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if token:
        meta["continue"] = token
    return {"apiVersion": info.api_version, "kind": f"{info.kind}List", "metadata": meta, "items": items}


def _deleted(info: KindInfo, name: str, remaining: dict[str, Any] | None) -> JSONResponse:
    if remaining is not None:
        return JSONResponse(remaining, status_code=202)
    return JSONResponse({"kind": "Status", "status": "Success", "details": {"kind": info.kind, "name": name}})


def namespaced_routes(info: KindInfo) -> APIRouter:
    router = APIRouter(tags=[info.plural])
    base = f"/api/v1/profiles/{{profile}}/{info.plural}"

    @router.get(
        f"/api/v1/{info.plural}",
        summary=f"List {info.plural} in every profile you can see",
        response_class=JSON,
    )
    async def list_all(
        request: Request,
        caller: Caller,
        label_selector: LabelSelector = None,
        limit: Limit = None,
        continue_: Continue = None,
    ) -> JSON:
        page = await read(
            request,
            service_of(request).list,
            caller,
            info,
            profile=None,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_,
        )
        return JSON(_list_body(info, page.items, page.continue_token))

    @router.get(base, summary=f"List {info.plural} of a profile", response_class=JSON)
    async def list_profile(
        request: Request,
        profile: str,
        caller: Caller,
        label_selector: LabelSelector = None,
        limit: Limit = None,
        continue_: Continue = None,
    ) -> JSON:
        page = await read(
            request,
            service_of(request).list,
            caller,
            info,
            profile=profile,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_,
        )
        return JSON(_list_body(info, page.items, page.continue_token))

    @router.get(f"{base}/{{name}}", summary=f"Get a {info.singular}", response_class=JSON)
    async def get(request: Request, profile: str, name: str, caller: Caller) -> JSON:
        return JSON(await read(request, service_of(request).get, caller, info, profile, name))

    @router.get(
        f"{base}/{{name}}/status",
        summary=f"The status of a {info.singular} (written by its controller)",
        response_class=JSON,
    )
    async def status(request: Request, profile: str, name: str, caller: Caller) -> JSON:
        obj = await read(request, service_of(request).get, caller, info, profile, name)
        return JSON(
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": obj["metadata"],
                "status": obj["status"],
            }
        )

    @router.get(f"{base}/{{name}}/events", summary=f"Events of a {info.singular}", response_class=JSON)
    async def events(request: Request, profile: str, name: str, caller: Caller) -> JSON:
        items = await read(request, service_of(request).events, caller, info, profile, name)
        return JSON({"kind": "EventList", "items": items})

    if info.user_writable:

        @router.post(base, status_code=201, summary=f"Create a {info.singular}", openapi_extra=MANIFEST_BODY)
        async def create(request: Request, profile: str, caller: Caller) -> dict[str, Any]:
            doc = await read_body(request)
            return await run_in_threadpool(service_of(request).create, caller, doc, profile=profile)

        @router.put(
            f"{base}/{{name}}", summary=f"Replace a {info.singular}'s spec", openapi_extra=MANIFEST_BODY
        )
        async def update(request: Request, profile: str, name: str, caller: Caller) -> dict[str, Any]:
            doc = await read_body(request)
            return await run_in_threadpool(
                service_of(request).update, caller, doc, profile=profile, name=name
            )

        @router.delete(f"{base}/{{name}}", summary=f"Delete a {info.singular}")
        def delete(request: Request, profile: str, name: str, caller: Caller) -> JSONResponse:
            return _deleted(info, name, service_of(request).delete(caller, info, profile, name))

    if info.has_logs:

        @router.get(
            f"{base}/{{name}}/logs",
            summary=f"Stream a replica's log of a {info.singular}",
            response_class=StreamingResponse,
        )
        async def logs(
            request: Request,
            profile: str,
            name: str,
            caller: Caller,
            replica: Annotated[str | None, Query(max_length=63)] = None,
            attempt: Annotated[int | None, Query(ge=0, le=100_000)] = None,
            follow: bool = False,
        ) -> Response:
            service = service_of(request)
            await run_in_threadpool(service.get, caller, info, profile, name)
            stream = LogStream(platform_of(request), LogRequest(profile, name, replica, attempt, follow))
            await run_in_threadpool(stream.check)
            return StreamingResponse(stream.chunks(), media_type="text/plain; charset=utf-8")

    if info.has_metrics:

        @router.get(
            f"{base}/{{name}}/metrics",
            summary=f"Metric series of a {info.singular} (name=value lines, files, events, pushes)",
            response_class=JSON,
        )
        async def metrics(
            request: Request,
            profile: str,
            name: str,
            caller: Caller,
            metric: Annotated[list[str] | None, Query(alias="name", max_length=64)] = None,
        ) -> JSON:
            service = service_of(request)
            body = await run_in_threadpool(service.metrics, caller, info, profile, name, metric)
            return JSON(body)

    return router


def profile_routes(info: KindInfo) -> APIRouter:
    router = APIRouter(tags=["profiles"])

    @router.get("/api/v1/profiles", summary="List the profiles you can see")
    def list_profiles(
        request: Request,
        caller: Caller,
        label_selector: LabelSelector = None,
        limit: Limit = None,
        continue_: Continue = None,
    ) -> dict[str, Any]:
        page = service_of(request).list(
            caller, info, profile=None, label_selector=label_selector, limit=limit, continue_token=continue_
        )
        return _list_body(info, page.items, page.continue_token)

    @router.post(
        "/api/v1/profiles", status_code=201, summary="Create a profile (admin)", openapi_extra=MANIFEST_BODY
    )
    async def create(request: Request, caller: Caller) -> dict[str, Any]:
        doc = await read_body(request)
        return await run_in_threadpool(service_of(request).create, caller, doc, profile=None)

    @router.get("/api/v1/profiles/{name}", summary="Get a profile with its quota usage")
    def get(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        return service_of(request).get(caller, info, "", name)

    @router.put(
        "/api/v1/profiles/{name}",
        summary="Replace a profile's spec (quota: admin)",
        openapi_extra=MANIFEST_BODY,
    )
    async def update(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        doc = await read_body(request)
        return await run_in_threadpool(service_of(request).update, caller, doc, profile=None, name=name)

    @router.delete("/api/v1/profiles/{name}", summary="Delete an empty profile (admin)")
    def delete(request: Request, name: str, caller: Caller) -> JSONResponse:
        return _deleted(info, name, service_of(request).delete(caller, info, "", name))

    @router.get("/api/v1/profiles/{name}/events", summary="Events of a profile")
    def events(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        return {"kind": "EventList", "items": service_of(request).events(caller, info, "", name)}

    return router


def apply_routes() -> APIRouter:
    router = APIRouter(tags=["apply"])

    @router.post(
        "/api/v1/apply",
        summary="Create or update any kind from its manifest (idempotent)",
        openapi_extra=MANIFEST_BODY,
    )
    async def apply(
        request: Request,
        response: Response,
        caller: Caller,
        profile: Annotated[str | None, Query(max_length=63)] = None,
    ) -> dict[str, Any]:
        doc = await read_body(request)
        manifest, action = await run_in_threadpool(service_of(request).apply, caller, doc, profile=profile)
        response.headers["X-Lumiflow-Action"] = action
        response.status_code = 201 if action == "created" else 200
        return manifest

    return router


__all__ = ["apply_routes", "namespaced_routes", "profile_routes"]
