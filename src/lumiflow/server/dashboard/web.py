"""What every dashboard page shares: templates, the signed-in viewer, CSRF, safe redirects,
security headers and HTML errors.

Pages are rendered on the server by Jinja2 with autoescaping on, so names, labels, event
messages and log lines are always shown as text. The Content-Security-Policy allows only
this server's own script and style files, so even a missed escape could not run a script.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lumiflow.auth.identity import Identity
from lumiflow.auth.sessions import ActiveSession
from lumiflow.common.errors import Forbidden
from lumiflow.common.quantity import format_cpu, format_memory
from lumiflow.common.timeutil import age
from lumiflow.server.accounts import AccountService
from lumiflow.server.platform import Platform
from lumiflow.server.service import ResourceService

log = logging.getLogger(__name__)

PREFIX = "/ui"
SESSION_COOKIE = "lumiflow_session"
LOGIN_COOKIE = "lumiflow_login"
FORM_COOKIE = "lumiflow_form"
#: Sent by the dashboard's own script on live updates: answer 401, never a redirect.
LIVE_HEADER = "x-lumiflow-live"

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the headers above to every dashboard response (pure ASGI: streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (n, v) for n, v in SECURITY_HEADERS if n not in names
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path on this server, else the home page.

    Refused (open redirects): absolute URLs, scheme-relative ``//host``, backslashes
    (``/\\host`` is ``//host`` to browsers), whitespace and control characters (browsers
    drop tabs and newlines), and anything outside the dashboard.
    """
    home = f"{PREFIX}/"
    if not value or len(value) > 2048:
        return home
    if any(ch == "\\" or ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (value == PREFIX or value.startswith(f"{PREFIX}/")):
        return home
    return value


def _quantity(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "cpu":
        return format_cpu(float(value))
    if key == "memory":
        return format_memory(int(value))
    return str(value)


def _replica_count(job: dict[str, Any]) -> int:
    total = 0
    for spec in (job.get("spec") or {}).get("replicaSpecs", {}).values():
        count = spec.get("replicas", 1) if isinstance(spec, dict) else 1
        total += int(count) if isinstance(count, int) else 0
    return total


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["prefix"] = PREFIX
    env.filters["age"] = age
    env.filters["quantity_of"] = _quantity
    env.filters["replica_count"] = _replica_count
    env.filters["urlquery"] = lambda params: urlencode(
        {k: v for k, v in params.items() if v not in (None, "")}
    )
    return env


@dataclass(frozen=True)
class Viewer:
    """The signed-in person looking at a page."""

    identity: Identity
    session: ActiveSession

    @property
    def csrf(self) -> str:
        return self.session.csrf


class Dashboard:
    """The dashboard's handle on the platform: the same services as the HTTP API."""

    def __init__(self, platform: Platform, service: ResourceService, accounts: AccountService) -> None:
        self.platform = platform
        self.service = service
        self.accounts = accounts
        self.env = _templates()
        self.secure_cookies = platform.settings.public_url.startswith("https://")

    # --- who -----------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer:
        """Raises SessionEnded when the browser is not (or no longer) signed in."""
        session = self.platform.sessions.resolve(request.cookies.get(SESSION_COOKIE))
        return Viewer(identity=session.identity, session=session)

    @staticmethod
    def check_csrf(viewer: Viewer, submitted: str | None) -> None:
        if not viewer.session.csrf_ok(submitted):
            raise Forbidden(
                "this form was not sent by this dashboard session (CSRF token missing or wrong): reload the page"
            )

    @staticmethod
    def check_form_cookie(request: Request, submitted: str | None) -> None:
        """The sign-in form has no session yet: its token must match its own cookie."""
        cookie = request.cookies.get(FORM_COOKIE) or ""
        if not submitted or not cookie or not hmac.compare_digest(cookie, submitted):
            raise Forbidden(
                "this form was not sent by this dashboard (CSRF token missing or wrong): reload the page"
            )

    # --- answers -------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        *,
        viewer: Viewer | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = viewer.session.flash if viewer is not None else None
        html = self.env.get_template(template).render(
            request=request,
            viewer=viewer,
            me=viewer.identity if viewer else None,
            csrf=viewer.csrf if viewer else "",
            flash=flash,
            settings=self.platform.settings,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def fragment(self, template: str, *, final: bool = False, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        response = HTMLResponse(html)
        if final:
            response.headers["X-Lumiflow-Final"] = "1"
        return response

    def set_cookie(self, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
        )

    def delete_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=PREFIX, httponly=True, samesite="lax", secure=self.secure_cookies)

    def to_login(self, request: Request, *, ended: bool) -> Response:
        if request.headers.get(LIVE_HEADER):
            return PlainTextResponse("signed out", status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        next_url = safe_next(target) if request.method == "GET" else f"{PREFIX}/"
        query = f"next={quote(next_url, safe='/')}" + ("&ended=1" if ended else "")
        response = RedirectResponse(f"{PREFIX}/login?{query}", status_code=303)
        if ended:
            self.delete_cookie(response, SESSION_COOKIE)
        return response

    def redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    @staticmethod
    def new_form_token() -> str:
        return secrets.token_urlsafe(32)
