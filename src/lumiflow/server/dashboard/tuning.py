"""The dashboard's tuning pages: Katib Experiments listed, and one experiment with its best
trial, charts, trials and events. Reads go through ``ResourceService`` (trials by Katib's
``katib.kubeflow.org/experiment`` label), so who sees what is the API's rule."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lumiflow.server.dashboard.pages import PAGE_SIZE, FormText, PageSize, ProfileName, Token
from lumiflow.server.dashboard.views import experiment_view, summarize
from lumiflow.server.dashboard.web import PREFIX, Dashboard
from lumiflow.tuning.trials import EXPERIMENT_LABEL

#: Trials read per request to the store while gathering an experiment's trials.
TRIAL_PAGE = 1000
#: An experiment page shows at most this many trials (the charts and table of the first ones).
MAX_TRIALS_SHOWN = 5000


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    kinds = d.platform.kinds
    experiment_kind = kinds.kinds["Experiment"]
    trial_kind = kinds.kinds["Trial"]

    def experiment_page(viewer: Any, profile: str | None, after: str | None, limit: int) -> Any:
        return d.service.list(
            viewer.identity,
            experiment_kind,
            profile=profile or None,
            label_selector=None,
            limit=limit,
            continue_token=after,
        )

    @r.get("/experiments")
    def experiments(
        request: Request, profile: ProfileName = None, after: Token = None, limit: PageSize = PAGE_SIZE
    ) -> Response:
        viewer = d.viewer(request)
        page = experiment_page(viewer, profile, after, limit)
        return d.render(
            request,
            "experiments.html",
            viewer=viewer,
            experiments=[summarize(e) for e in page.items],
            next_token=page.continue_token,
            after=after,
            limit=limit,
            profile=profile or "",
            profiles=d.service.visible_profiles(viewer.identity),
        )

    @r.get("/experiments/_rows")
    def experiment_rows(
        request: Request, profile: ProfileName = None, after: Token = None, limit: PageSize = PAGE_SIZE
    ) -> Response:
        viewer = d.viewer(request)
        page = experiment_page(viewer, profile, after, limit)
        return d.fragment(
            "_experiment_rows.html", experiments=[summarize(e) for e in page.items], prefix=PREFIX
        )

    def trials_of(viewer: Any, profile: str, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while len(items) < MAX_TRIALS_SHOWN:
            page = d.service.list(
                viewer.identity,
                trial_kind,
                profile=profile,
                label_selector=f"{EXPERIMENT_LABEL}={name}",
                limit=TRIAL_PAGE,
                continue_token=token,
            )
            items += page.items
            token = page.continue_token
            if not token:
                break
        return items[:MAX_TRIALS_SHOWN]

    def view_of(viewer: Any, profile: str, name: str) -> dict[str, Any]:
        doc = d.service.get(viewer.identity, experiment_kind, profile, name)
        trials = trials_of(viewer, profile, name)
        events = d.service.events(viewer.identity, experiment_kind, profile, name)
        return {
            "view": experiment_view(doc, trials),
            "events": events,
            "truncated": len(trials) >= MAX_TRIALS_SHOWN,
        }

    @r.get("/experiments/{profile}/{name}")
    def experiment(request: Request, profile: str, name: str) -> Response:
        viewer = d.viewer(request)
        shown = view_of(viewer, profile, name)
        return d.render(request, "experiment.html", viewer=viewer, **shown)

    @r.get("/experiments/{profile}/{name}/_status")
    def experiment_status(request: Request, profile: str, name: str) -> Response:
        viewer = d.viewer(request)
        shown = view_of(viewer, profile, name)
        return d.fragment("_experiment_status.html", final=shown["view"].final, prefix=PREFIX, **shown)

    @r.post("/experiments/{profile}/{name}/delete")
    def delete_experiment(request: Request, profile: str, name: str, csrf: FormText = None) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        d.service.delete(viewer.identity, experiment_kind, profile, name)
        d.platform.sessions.set_flash(viewer.session, f"experiment/{name} deleted")
        return d.redirect(f"{PREFIX}/experiments?{urlencode({'profile': profile})}")

    return r
