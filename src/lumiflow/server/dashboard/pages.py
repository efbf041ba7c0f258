"""The dashboard's pages for users: overview, training jobs, profiles, any other kind, and
applying manifests. Every read and write goes through the API's ResourceService, so access
rules, validation and errors are exactly the API's (and the CLI's)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

import yaml
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from lumiflow.common.documents import load_documents
from lumiflow.common.errors import BadRequest, LumiflowError, NotFound
from lumiflow.resources import KindInfo
from lumiflow.server.dashboard.views import MetricCharts, metric_charts
from lumiflow.server.dashboard.web import PREFIX, Dashboard

PAGE_SIZE = 50
FormText = Annotated[str | None, Form(max_length=1_572_864)]
Token = Annotated[str | None, Query(alias="continue", max_length=4096)]
ProfileName = Annotated[str | None, Query(max_length=63)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def replica_names(job: dict[str, Any]) -> list[str]:
    """The replicas of a job as the API names them (``worker-0``)."""
    status = job.get("status") or {}
    named = [r.get("name") for r in status.get("replicas") or [] if isinstance(r, dict) and r.get("name")]
    if named:
        return [str(n) for n in named]
    names = []
    for rtype, spec in (job.get("spec") or {}).get("replicaSpecs", {}).items():
        count = spec.get("replicas", 1) if isinstance(spec, dict) else 1
        names += [f"{rtype.lower()}-{i}" for i in range(int(count or 0))]
    return names


def is_final(job: dict[str, Any]) -> bool:
    return (job.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    kinds = d.platform.kinds
    job_kind = kinds.kinds["TrainingJob"]
    profile_kind = kinds.kinds["Profile"]

    def namespaced_kinds() -> list[KindInfo]:
        return [k for k in kinds.kinds.values() if k.namespaced]

    @r.get("/")
    def home(request: Request) -> Response:
        viewer = d.viewer(request)
        me = d.accounts.me(viewer.identity)
        return d.render(request, "home.html", viewer=viewer, info=me, kinds=namespaced_kinds())

    # --- training jobs ---------------------------------------------------------------------

    def job_page(viewer: Any, profile: str | None, after: str | None, limit: int) -> Any:
        return d.service.list(
            viewer.identity,
            job_kind,
            profile=profile or None,
            label_selector=None,
            limit=limit,
            continue_token=after,
        )

    @r.get("/jobs")
    def jobs(
        request: Request, profile: ProfileName = None, after: Token = None, limit: PageSize = PAGE_SIZE
    ) -> Response:
        viewer = d.viewer(request)
        page = job_page(viewer, profile, after, limit)
        return d.render(
            request,
            "jobs.html",
            viewer=viewer,
            jobs=page.items,
            next_token=page.continue_token,
            after=after,
            limit=limit,
            profile=profile or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    @r.get("/jobs/_rows")
    def job_rows(
        request: Request, profile: ProfileName = None, after: Token = None, limit: PageSize = PAGE_SIZE
    ) -> Response:
        viewer = d.viewer(request)
        page = job_page(viewer, profile, after, limit)
        return d.fragment("_job_rows.html", jobs=page.items, prefix=PREFIX)

    def job_view(viewer: Any, profile: str, name: str) -> dict[str, Any]:
        job = d.service.get(viewer.identity, job_kind, profile, name)
        events = d.service.events(viewer.identity, job_kind, profile, name)
        return {"job": job, "events": events, "replicas": replica_names(job)}

    def job_metrics(viewer: Any, profile: str, name: str) -> MetricCharts:
        series = d.service.metrics(viewer.identity, job_kind, profile, name, None)["metrics"]
        return metric_charts(series)

    @r.get("/jobs/{profile}/{name}")
    def job(
        request: Request, profile: str, name: str, replica: Annotated[str | None, Query(max_length=63)] = None
    ) -> Response:
        viewer = d.viewer(request)
        view = job_view(viewer, profile, name)
        names = view["replicas"]
        chosen = replica if replica in names else (names[0] if names else None)
        return d.render(
            request,
            "job.html",
            viewer=viewer,
            replica=chosen,
            final=is_final(view["job"]),
            metrics=job_metrics(viewer, profile, name),
            **view,
        )

    @r.get("/jobs/{profile}/{name}/_status")
    def job_status(request: Request, profile: str, name: str) -> Response:
        viewer = d.viewer(request)
        view = job_view(viewer, profile, name)
        return d.fragment("_job_status.html", final=is_final(view["job"]), **view)

    @r.get("/jobs/{profile}/{name}/_metrics")
    def job_metrics_fragment(request: Request, profile: str, name: str) -> Response:
        viewer = d.viewer(request)
        # The phase first: once the job has ended, the metrics read after it are complete.
        final = is_final(d.service.get(viewer.identity, job_kind, profile, name))
        return d.fragment("_job_metrics.html", final=final, metrics=job_metrics(viewer, profile, name))

    @r.post("/jobs/{profile}/{name}/delete")
    def delete_job(request: Request, profile: str, name: str, csrf: FormText = None) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        d.service.delete(viewer.identity, job_kind, profile, name)
        d.platform.sessions.set_flash(viewer.session, f"trainingjob/{name} deleted")
        return d.redirect(f"{PREFIX}/jobs?{urlencode({'profile': profile})}")

    @r.post("/jobs/{profile}/{name}/suspend")
    def suspend_job(
        request: Request, profile: str, name: str, csrf: FormText = None, suspend: FormText = None
    ) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        if suspend not in ("true", "false"):
            raise BadRequest("suspend must be true or false", field="suspend")
        current = d.service.get(viewer.identity, job_kind, profile, name)
        spec = dict(current["spec"])
        spec["runPolicy"] = {**(spec.get("runPolicy") or {}), "suspend": suspend == "true"}
        meta = current["metadata"]
        doc = {
            "apiVersion": current["apiVersion"],
            "kind": current["kind"],
            "metadata": {
                "name": name,
                "namespace": profile,
                "labels": meta.get("labels", {}),
                "annotations": meta.get("annotations", {}),
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": spec,
        }
        d.service.update(viewer.identity, doc, profile=profile, name=name)
        word = "suspended" if suspend == "true" else "resumed"
        d.platform.sessions.set_flash(viewer.session, f"trainingjob/{name} {word}")
        return d.redirect(f"{PREFIX}/jobs/{quote(profile)}/{quote(name)}")

    # --- applying manifests ----------------------------------------------------------------

    @r.get("/apply")
    def apply_form(request: Request, profile: ProfileName = None) -> Response:
        viewer = d.viewer(request)
        return d.render(
            request,
            "apply.html",
            viewer=viewer,
            manifest="",
            error=None,
            profile=profile or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    @r.post("/apply")
    async def apply(
        request: Request,
        csrf: FormText = None,
        manifest: FormText = None,
        profile: FormText = None,
        file: Annotated[UploadFile | None, File()] = None,
    ) -> Response:
        from starlette.concurrency import run_in_threadpool

        viewer = await run_in_threadpool(d.viewer, request)
        d.check_csrf(viewer, csrf)
        text = manifest or ""
        if file is not None and file.filename:
            raw = await file.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
        return await run_in_threadpool(apply_text, request, viewer, text, profile or None)

    def apply_text(request: Request, viewer: Any, text: str, profile: str | None) -> Response:
        done: list[str] = []
        try:
            if not text.strip():
                raise BadRequest("paste a manifest (YAML or JSON) or choose a file")
            for doc in load_documents(text, source="manifest"):
                obj, action = d.service.apply(viewer.identity, doc, profile=profile)
                done.append(f"{obj['kind'].lower()}/{obj['metadata']['name']} {action}")
        except LumiflowError as exc:
            where = f" (field {exc.field})" if exc.field else ""
            applied = f" Applied before the error: {', '.join(done)}." if done else ""
            return d.render(
                request,
                "apply.html",
                viewer=viewer,
                status=exc.http_status if 400 <= exc.http_status < 500 else 400,
                manifest=text,
                error=f"{exc.message}{where}.{applied}",
                profile=profile or "",
                profiles=d.service.visible_profiles(viewer.identity),
            )
        d.platform.sessions.set_flash(viewer.session, "; ".join(done))
        return d.redirect(f"{PREFIX}/jobs" + (f"?{urlencode({'profile': profile})}" if profile else ""))

    # --- profiles --------------------------------------------------------------------------

    @r.get("/profiles")
    def profiles(request: Request) -> Response:
        viewer = d.viewer(request)
        page = d.service.list(
            viewer.identity, profile_kind, profile=None, label_selector=None, limit=None, continue_token=None
        )
        roles = {
            p["metadata"]["name"]: d.service.role_in(viewer.identity, p["metadata"]["name"]).value
            for p in page.items
        }
        return d.render(request, "profiles.html", viewer=viewer, profiles=page.items, roles=roles)

    # --- every other kind ------------------------------------------------------------------

    def kind_of(plural: str) -> KindInfo:
        info = kinds.by_plural(plural)
        if not info.namespaced:
            raise NotFound(f"unknown resource type {plural!r}")
        return info

    @r.get("/resources/{plural}")
    def objects(request: Request, plural: str, profile: ProfileName = None, after: Token = None) -> Response:
        viewer = d.viewer(request)
        info = kind_of(plural)
        page = d.service.list(
            viewer.identity,
            info,
            profile=profile or None,
            label_selector=None,
            limit=PAGE_SIZE,
            continue_token=after,
        )
        return d.render(
            request,
            "objects.html",
            viewer=viewer,
            info=info,
            items=page.items,
            next_token=page.continue_token,
            after=after,
            profile=profile or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    @r.get("/resources/{plural}/{profile}/{name}")
    def object_detail(request: Request, plural: str, profile: str, name: str) -> Response:
        viewer = d.viewer(request)
        info = kind_of(plural)
        obj = d.service.get(viewer.identity, info, profile, name)
        events = d.service.events(viewer.identity, info, profile, name)
        text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
        return d.render(
            request, "object.html", viewer=viewer, info=info, obj=obj, events=events, manifest=text
        )

    @r.post("/resources/{plural}/{profile}/{name}/delete")
    def delete_object(
        request: Request, plural: str, profile: str, name: str, csrf: FormText = None
    ) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        info = kind_of(plural)
        d.service.delete(viewer.identity, info, profile, name)
        d.platform.sessions.set_flash(viewer.session, f"{info.singular}/{name} deleted")
        return d.redirect(f"{PREFIX}/resources/{quote(plural)}?{urlencode({'profile': profile})}")

    return r
