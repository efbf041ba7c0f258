"""The web dashboard: server-rendered pages at ``/ui`` over the same services as the API.

It is a small application of its own, mounted into the API's (``create_dashboard``): its
errors are HTML pages rather than JSON bodies, its routes are not part of the OpenAPI
document, and it adds the browser-facing protections the API does not need (session
cookies, CSRF tokens, a strict Content-Security-Policy). It needs Jinja2 and
python-multipart (``pip install 'lumiflow[dashboard]'``); without them the API runs alone.

Pages work without JavaScript; one small script (``static/dashboard.js``) refreshes what
changes by itself (job, experiment and pipeline run states, replica, trial and step tables,
metric charts, a run's graph) and streams logs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lumiflow.auth.sessions import SessionEnded
from lumiflow.common.errors import LumiflowError
from lumiflow.server.accounts import AccountService
from lumiflow.server.platform import Platform
from lumiflow.server.service import ResourceService

log = logging.getLogger(__name__)


def available() -> bool:
    """Whether the dashboard's dependencies (Jinja2, python-multipart) are installed."""
    from importlib.util import find_spec

    return find_spec("jinja2") is not None and (
        find_spec("python_multipart") is not None or find_spec("multipart") is not None
    )


def create_dashboard(platform: Platform, service: ResourceService, accounts: AccountService) -> FastAPI:
    from lumiflow.server.dashboard import admin, live, pages, pipelines, signin, tuning
    from lumiflow.server.dashboard.web import Dashboard, SecurityHeaders

    d = Dashboard(platform, service, accounts)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def error_page(request: Request, status: int, message: str) -> Response:
        viewer = None
        try:
            # For the navigation bar; resolving may refresh a token over HTTP: not on the loop.
            viewer = await run_in_threadpool(d.viewer, request)
        except LumiflowError:
            pass
        return d.render(
            request, "error.html", viewer=viewer, status=status, status_code=status, message=message
        )

    @app.exception_handler(SessionEnded)
    async def _signed_out(request: Request, _exc: SessionEnded) -> Response:
        return d.to_login(request, ended=bool(request.cookies.get("lumiflow_session")))

    @app.exception_handler(LumiflowError)
    async def _lumiflow(request: Request, exc: LumiflowError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc.message)
        return await error_page(request, exc.http_status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "form"))
        return await error_page(
            request, 400, f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        return await error_page(
            request, exc.status_code, "page not found" if exc.status_code == 404 else message
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("dashboard error", exc_info=exc)
        return await error_page(request, 500, "internal error; the server log has the details")

    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    for module in (signin, pages, tuning, pipelines, live, admin):
        app.include_router(module.routes(d))
    app.add_middleware(SecurityHeaders)
    return app


__all__ = ["available", "create_dashboard"]
