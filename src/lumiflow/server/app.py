"""The HTTP application factory: ``create_app(platform)``, nothing built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp

from lumiflow.common.version import __version__
from lumiflow.server import dashboard, errors
from lumiflow.server.accounts import AccountService
from lumiflow.server.api import identity, lineage, report, resources, system
from lumiflow.server.limits import BodySizeLimit
from lumiflow.server.metrics import Metrics, MetricsMiddleware
from lumiflow.server.platform import Platform
from lumiflow.server.service import ResourceService

log = logging.getLogger(__name__)


def create_app(platform: Platform, *, manage_lifecycle: bool = True) -> FastAPI:
    """Builds the API over ``platform``; with ``manage_lifecycle`` the app starts the
    platform's loops on start-up and stops them on shutdown."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            platform.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                platform.stop()

    app = FastAPI(
        title="lumiflow",
        version=__version__,
        description="A self-hostable, centralized machine-learning platform with Kubeflow's semantics.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    app.state.service = ResourceService(platform)
    app.state.accounts = AccountService(platform)
    app.state.metrics = Metrics(platform)
    errors.install(app)
    app.include_router(system.router())
    app.include_router(identity.router())
    app.include_router(resources.apply_routes())
    app.include_router(report.router())
    app.include_router(lineage.router())
    for info in platform.kinds.kinds.values():
        if info.namespaced:
            app.include_router(resources.namespaced_routes(info))
        else:
            app.include_router(resources.profile_routes(info))
    if dashboard.available():
        app.mount("/ui", dashboard.create_dashboard(platform, app.state.service, app.state.accounts))

        @app.get("/", include_in_schema=False)
        async def _to_dashboard() -> RedirectResponse:
            return RedirectResponse("/ui/", status_code=307)

    else:
        log.warning("the dashboard needs jinja2 and python-multipart: pip install 'lumiflow[dashboard]'")
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(BodySizeLimit, max_bytes=platform.settings.server.max_body_bytes)
    return app


def served_app(app: FastAPI, platform: Platform) -> ASGIApp:
    """What the server runs: ``app`` behind the metric-push fast path (``ReportFastPath``).

    Outside FastAPI itself, so that a replica's push skips its error, body-limit and routing
    layers too (~20 % of the push's time in the server); every other request, and the
    lifespan, goes to ``app`` unchanged. The push route inside ``app`` answers the same way
    (it is what an in-process test client reaches, and what the OpenAPI schema shows)."""
    return report.ReportFastPath(app, platform=platform, max_bytes=platform.settings.server.max_body_bytes)
