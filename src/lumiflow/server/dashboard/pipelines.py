"""The dashboard's pipeline pages: runs listed, one run with its DAG drawn live, a step's
inputs, outputs and log, pipelines with their versions, a profile's artifacts and an
artifact's lineage. Every read goes through ``ResourceService`` (runs, versions, workloads,
``lineage`` and ``artifacts``), so who sees what is the API's rule; terminating a run is the
API's PUT of the run with ``spec.terminate`` set.

A step's log is its Workload's (a retried step has one Workload per attempt). The live view
reads it the way the job page does (server-sent events of text, resumable by ``attempt:offset``)
but decides the end from the Workload's own phase: a step ends long before its run does.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lumiflow.common.errors import NotFound
from lumiflow.pipelines.checks import PIPELINE_LABEL
from lumiflow.pipelines.runs import workload_name
from lumiflow.resources.workload import WorkloadPhase
from lumiflow.server.dashboard import dag_svg
from lumiflow.server.dashboard.live import parse_event_id
from lumiflow.server.dashboard.pages import PAGE_SIZE, FormText, PageSize, ProfileName, Token
from lumiflow.server.dashboard.pipeline_views import (
    default_step,
    human_size,
    is_final,
    lineage_view,
    pipeline_steps,
    run_graph,
    short_digest,
    show_value,
    step_rows,
    step_view,
    summarize_run,
)
from lumiflow.server.dashboard.web import PREFIX, Dashboard
from lumiflow.server.logs import LogRequest, LogStream

#: How often a step's live log looks for more while its Workload runs.
LOG_POLL_SECONDS = 0.5
#: Versions shown per pipeline on the pipelines page.
VERSIONS_SHOWN = 20
ARTIFACTS_SHOWN = 200

StepId = Annotated[str | None, Query(max_length=1024)]
Attempt = Annotated[int | None, Query(ge=1, le=1000)]
PipelineName = Annotated[str | None, Query(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Uri = Annotated[str, Query(min_length=1, max_length=4096)]
Direction = Annotated[str, Query(pattern="^(upstream|downstream)$")]
ArtifactLimit = Annotated[int, Query(ge=1, le=1000)]


def run_path(profile: str, name: str) -> str:
    return f"{PREFIX}/runs/{quote(profile, safe='')}/{quote(name, safe='')}"


def step_href(profile: str, name: str, node: str) -> str:
    return f"{run_path(profile, name)}?{urlencode({'step': node})}#step"


def lineage_href(profile: str, uri: str, direction: str = "upstream") -> str:
    query = urlencode({"uri": uri, "direction": direction})
    return f"{PREFIX}/artifacts/{quote(profile, safe='')}/lineage?{query}"


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    kinds = d.platform.kinds.kinds
    run_kind, pipeline_kind, version_kind = kinds["PipelineRun"], kinds["Pipeline"], kinds["PipelineVersion"]
    workload_kind = kinds["Workload"]
    d.env.globals.update(lineage_href=lineage_href, step_href=step_href, run_path=run_path)
    d.env.filters.update(show_value=show_value, human_size=human_size, short_digest=short_digest)

    # --- runs ------------------------------------------------------------------------------------

    def run_page(
        viewer: Any, profile: str | None, pipeline: str | None, after: str | None, limit: int
    ) -> Any:
        return d.service.list(
            viewer.identity,
            run_kind,
            profile=profile or None,
            label_selector=f"{PIPELINE_LABEL}={pipeline}" if pipeline else None,
            limit=limit,
            continue_token=after,
        )

    @r.get("/runs")
    def runs(
        request: Request,
        profile: ProfileName = None,
        pipeline: PipelineName = None,
        after: Token = None,
        limit: PageSize = PAGE_SIZE,
    ) -> Response:
        viewer = d.viewer(request)
        page = run_page(viewer, profile, pipeline, after, limit)
        return d.render(
            request,
            "runs.html",
            viewer=viewer,
            runs=[summarize_run(doc) for doc in page.items],
            next_token=page.continue_token,
            after=after,
            limit=limit,
            profile=profile or "",
            pipeline=pipeline or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    @r.get("/runs/_rows")
    def run_rows(
        request: Request,
        profile: ProfileName = None,
        pipeline: PipelineName = None,
        after: Token = None,
        limit: PageSize = PAGE_SIZE,
    ) -> Response:
        viewer = d.viewer(request)
        page = run_page(viewer, profile, pipeline, after, limit)
        return d.fragment("_run_rows.html", runs=[summarize_run(doc) for doc in page.items], prefix=PREFIX)

    def status_view(viewer: Any, profile: str, name: str, step: str | None) -> dict[str, Any]:
        doc = d.service.get(viewer.identity, run_kind, profile, name)
        summary = summarize_run(doc)
        spec = doc.get("spec") or {}
        nodes = (doc.get("status") or {}).get("nodes") or {}
        graph = run_graph(spec.get("pipelineSpec") or {}, nodes, final=summary.final)
        drawing = dag_svg.run_graph(
            graph.roots,
            graph.edges,
            href=lambda node: step_href(profile, name, node),
            label=f"the steps of run {name}",
        )
        return {
            "run": doc,
            "summary": summary,
            "graph": drawing,
            "steps": step_rows(doc),
            "selected": step,
            "events": d.service.events(viewer.identity, run_kind, profile, name),
            "base": run_path(profile, name),
        }

    @r.get("/runs/{profile}/{name}")
    def run(
        request: Request, profile: str, name: str, step: StepId = None, attempt: Attempt = None
    ) -> Response:
        viewer = d.viewer(request)
        shown = status_view(viewer, profile, name, step)
        chosen = step or default_step(shown["run"])
        shown["selected"] = chosen
        view = step_view(shown["run"], chosen) if chosen else None
        return d.render(
            request,
            "run.html",
            viewer=viewer,
            step=view,
            chosen=chosen,
            attempt=attempt
            if view is not None and attempt is not None and attempt <= view.attempts
            else None,
            profile=profile,
            **shown,
        )

    @r.get("/runs/{profile}/{name}/_status")
    def run_status(request: Request, profile: str, name: str, step: StepId = None) -> Response:
        viewer = d.viewer(request)
        shown = status_view(viewer, profile, name, step)
        return d.fragment(
            "_run_status.html", final=shown["summary"].final, prefix=PREFIX, csrf=viewer.csrf, **shown
        )

    @r.get("/runs/{profile}/{name}/_step")
    def run_step(request: Request, profile: str, name: str, step: StepId = None) -> Response:
        viewer = d.viewer(request)
        doc = d.service.get(viewer.identity, run_kind, profile, name)
        view = step_view(doc, step) if step else None
        if view is None:
            raise NotFound(f"run {name} has no step {step!r}", field="step")
        return d.fragment(
            "_run_step.html",
            final=view.final,
            prefix=PREFIX,
            step=view,
            profile=profile,
        )

    def step_workload(
        viewer: Any, profile: str, name: str, step: str | None, attempt: int | None
    ) -> tuple[str | None, bool]:
        """The Workload holding the step's log (of ``attempt``, by default the latest), None
        while it has not started; and whether the step has ended."""
        doc = d.service.get(viewer.identity, run_kind, profile, name)
        view = step_view(doc, step) if step else None
        if view is None:
            raise NotFound(f"run {name} has no step {step!r}", field="step")
        if view.launched:
            raise NotFound(f"step {step} launched {view.workload}: its page has the log", field="step")
        if attempt is not None:
            if attempt > view.attempts:
                raise NotFound(f"step {step} has had {view.attempts} attempts", field="attempt")
            wl = workload_name(name, view.id, attempt)
        elif view.workload:
            wl = view.workload
        else:
            return None, view.final
        d.service.get(viewer.identity, workload_kind, profile, wl)
        return wl, view.final

    def workload_ended(viewer: Any, profile: str, wl: str) -> bool:
        try:
            doc = d.service.get(viewer.identity, workload_kind, profile, wl)
            return WorkloadPhase((doc.get("status") or {}).get("phase") or "Pending").is_terminal()
        except (NotFound, ValueError):
            return True

    @r.get("/runs/{profile}/{name}/_logs")
    async def step_log_events(
        request: Request, profile: str, name: str, step: StepId = None, attempt: Attempt = None
    ) -> Response:
        viewer = await run_in_threadpool(d.viewer, request)
        found = await run_in_threadpool(step_workload, viewer, profile, name, step, attempt)
        resume = parse_event_id(request.headers.get("last-event-id"))

        async def events() -> AsyncIterator[bytes]:
            wl, ended = found
            yield b"retry: 2000\n\n"
            while wl is None and not ended:  # a pending step: its Workload comes when it starts
                await asyncio.sleep(LOG_POLL_SECONDS)
                wl, ended = await run_in_threadpool(step_workload, viewer, profile, name, step, attempt)
            position = resume
            decoders: dict[int, codecs.IncrementalDecoder] = {}
            while wl is not None:
                # The phase first: once the Workload has ended, what is read after is all of it.
                done = await run_in_threadpool(workload_ended, viewer, profile, wl)
                stream = LogStream(d.platform, LogRequest(profile, wl, None, None, False, position))
                try:
                    await run_in_threadpool(stream.check)
                    async for at, offset, data in stream.positioned():
                        position = (at, offset)
                        decoder = decoders.setdefault(at, codecs.getincrementaldecoder("utf-8")("replace"))
                        text = decoder.decode(data)
                        if text:
                            yield f"id: {at}:{offset}\ndata: {json.dumps(text)}\n\n".encode()
                except NotFound:
                    pass
                if done:
                    break
                await asyncio.sleep(LOG_POLL_SECONDS)
            yield b"event: end\ndata: {}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    @r.get("/runs/{profile}/{name}/log.txt")
    async def step_log_text(
        request: Request, profile: str, name: str, step: StepId = None, attempt: Attempt = None
    ) -> Response:
        viewer = await run_in_threadpool(d.viewer, request)
        wl, _ = await run_in_threadpool(step_workload, viewer, profile, name, step, attempt)
        if wl is None:
            raise NotFound(f"step {step} has not started: no log yet", field="step")
        stream = LogStream(d.platform, LogRequest(profile, wl, None, None, False))
        await run_in_threadpool(stream.check)
        return StreamingResponse(stream.chunks(), media_type="text/plain; charset=utf-8")

    @r.post("/runs/{profile}/{name}/terminate")
    def terminate_run(request: Request, profile: str, name: str, csrf: FormText = None) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        current = d.service.get(viewer.identity, run_kind, profile, name)
        meta = current["metadata"]
        doc = {
            "apiVersion": current["apiVersion"],
            "kind": current["kind"],
            # No resourceVersion: the controller writes the status all the time, and only
            # spec.terminate may change, so the service's retried replace loses nothing.
            "metadata": {
                "name": name,
                "namespace": profile,
                "labels": meta.get("labels", {}),
                "annotations": meta.get("annotations", {}),
            },
            "spec": {**current["spec"], "terminate": True},
        }
        if not is_final((current.get("status") or {}).get("state")):
            d.service.update(viewer.identity, doc, profile=profile, name=name)
            d.platform.sessions.set_flash(viewer.session, f"pipelinerun/{name} is being terminated")
        return d.redirect(run_path(profile, name))

    # --- pipelines -------------------------------------------------------------------------------

    @r.get("/pipelines")
    def pipelines(
        request: Request, profile: ProfileName = None, after: Token = None, limit: PageSize = PAGE_SIZE
    ) -> Response:
        viewer = d.viewer(request)
        page = d.service.list(
            viewer.identity,
            pipeline_kind,
            profile=profile or None,
            label_selector=None,
            limit=limit,
            continue_token=after,
        )
        shown = []
        for doc in page.items:
            meta = doc["metadata"]
            versions = d.service.list(
                viewer.identity,
                version_kind,
                profile=meta["namespace"],
                label_selector=f"{PIPELINE_LABEL}={meta['name']}",
                limit=None,
                continue_token=None,
            ).items
            versions.sort(key=lambda v: -int((v.get("spec") or {}).get("version") or 0))
            shown.append(
                {
                    "pipeline": doc,
                    "versions": [
                        {
                            "version": v["spec"].get("version"),
                            "name": v["metadata"]["name"],
                            "description": v["spec"].get("description") or "",
                            "steps": pipeline_steps(v["spec"].get("pipelineSpec") or {}),
                            "created": v["metadata"].get("creationTimestamp"),
                        }
                        for v in versions[:VERSIONS_SHOWN]
                    ],
                    "more": max(0, len(versions) - VERSIONS_SHOWN),
                }
            )
        return d.render(
            request,
            "pipelines.html",
            viewer=viewer,
            pipelines=shown,
            next_token=page.continue_token,
            after=after,
            limit=limit,
            profile=profile or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    # --- artifacts and lineage -------------------------------------------------------------------

    @r.get("/artifacts")
    def artifacts(
        request: Request, profile: ProfileName = None, limit: ArtifactLimit = ARTIFACTS_SHOWN
    ) -> Response:
        viewer = d.viewer(request)
        visible = d.service.visible_profiles(viewer.identity)
        chosen = profile or d.service.default_profile(viewer.identity)
        if not profile and chosen not in visible:
            chosen = visible[0] if visible else ""
        items = d.service.artifacts(viewer.identity, chosen, limit=limit) if chosen else []
        return d.render(
            request,
            "artifacts.html",
            viewer=viewer,
            artifacts=items,
            profile=chosen,
            profiles=visible,
            limit=limit,
        )

    @r.get("/artifacts/{profile}/lineage")
    def lineage(request: Request, profile: str, uri: Uri, direction: Direction = "upstream") -> Response:
        viewer = d.viewer(request)
        downstream = direction == "downstream"
        graph = d.service.lineage(viewer.identity, profile, uri, downstream=downstream)

        def execution_href(x: dict[str, Any]) -> str | None:
            props = x.get("properties") or {}
            run = props.get("run")
            kind, xname = x.get("type"), str(x.get("name") or "")
            if kind == "TrainingJob":
                return f"{PREFIX}/jobs/{quote(profile, safe='')}/{quote(xname, safe='')}"
            if kind == "Experiment":
                return f"{PREFIX}/experiments/{quote(profile, safe='')}/{quote(xname, safe='')}"
            if run and props.get("step"):
                return step_href(profile, str(run), str(props["step"]))
            return run_path(profile, str(run)) if run else None

        view = lineage_view(
            graph,
            focus=uri,
            artifact_href=lambda u: lineage_href(profile, u, direction),
            execution_href=execution_href,
        )
        drawing = dag_svg.lineage_graph(view.boxes, view.edges, label=f"the {direction} lineage of {uri}")
        focus = next((a for a in view.artifacts if a.get("uri") == uri), {})
        return d.render(
            request,
            "lineage.html",
            viewer=viewer,
            profile=profile,
            uri=uri,
            direction=direction,
            focus=focus,
            graph=drawing,
            view=view,
            execution_href=execution_href,
        )

    return r
