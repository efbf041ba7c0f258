"""Signing in and out of the dashboard.

Single sign-on (auth.mode oidc): ``/ui/login/sso`` starts authorization code + PKCE and
sends the browser to the issuer; ``/ui/auth/callback`` finishes it and creates the session.
Tokens (embedded mode, and service accounts beside single sign-on when
``auth.embedded_tokens`` is on): the sign-in form takes a token and creates the same kind of
session. Either way, ``next`` only ever leads to a dashboard page (see ``safe_next``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lumiflow.auth.sessions import SessionEnded
from lumiflow.common.errors import NotFound, Unauthorized
from lumiflow.server.dashboard.web import (
    FORM_COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    Dashboard,
    safe_next,
)

FormText = Annotated[str | None, Form(max_length=16_384)]


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    settings = d.platform.settings
    session_seconds = int(settings.auth.session_hours * 3600)

    def login_page(
        request: Request,
        *,
        next_url: str,
        error: str | None = None,
        status: int = 200,
        notice: str | None = None,
    ) -> Response:
        form_token = d.new_form_token()
        response = d.render(
            request,
            "login.html",
            status=status,
            next_url=next_url,
            error=error,
            notice=notice,
            form_token=form_token,
            sso=settings.auth.mode == "oidc",
            tokens=settings.auth.accepts_own_tokens,
            issuer=settings.auth.issuer,
        )
        d.set_cookie(response, FORM_COOKIE, form_token, max_age=3600)
        return response

    @r.get("/login")
    def login(
        request: Request, next: str | None = None, ended: bool = False, signed_out: bool = False
    ) -> Response:
        next_url = safe_next(next)
        try:
            d.viewer(request)
            return d.redirect(next_url)
        except SessionEnded:
            pass
        notice = None
        if ended:
            notice = "Your session ended: sign in again."
        elif signed_out:
            notice = "You are signed out."
        return login_page(request, next_url=next_url, notice=notice)

    @r.post("/login")
    def login_with_token(
        request: Request, token: FormText = None, csrf: FormText = None, next: FormText = None
    ) -> Response:
        if not settings.auth.accepts_own_tokens:
            raise NotFound("this server signs in through single sign-on only")
        d.check_form_cookie(request, csrf)
        next_url = safe_next(next)
        if not token or not token.strip():
            return login_page(request, next_url=next_url, error="Paste a token to sign in.", status=400)
        try:
            cookie, _identity = d.platform.sessions.start_with_token(token.strip())
        except Unauthorized as exc:
            return login_page(
                request, next_url=next_url, error=f"That token does not work: {exc.message}", status=401
            )
        response = d.redirect(next_url)
        d.set_cookie(response, SESSION_COOKIE, cookie, max_age=session_seconds)
        d.delete_cookie(response, FORM_COOKIE)
        return response

    @r.get("/login/sso")
    def login_sso(request: Request, next: str | None = None) -> Response:
        if settings.auth.mode != "oidc":
            raise NotFound("single sign-on is not configured on this server (auth.mode is embedded)")
        cookie, url = d.platform.sessions.begin_oidc(
            next_url=safe_next(next), redirect_uri=f"{settings.public_url}{PREFIX}/auth/callback"
        )
        response = RedirectResponse(url, status_code=303)
        d.set_cookie(response, LOGIN_COOKIE, cookie, max_age=600)
        return response

    @r.get("/auth/callback")
    def callback(
        request: Request,
        code: str | None = None,
        state: str | None = None,
        iss: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Response:
        if settings.auth.mode != "oidc":
            raise NotFound("single sign-on is not configured on this server (auth.mode is embedded)")
        home = f"{PREFIX}/"
        if error:
            d.platform.sessions.end(request.cookies.get(LOGIN_COOKIE))
            reason = f"{error}: {error_description}" if error_description else error
            response = login_page(
                request, next_url=home, error=f"The identity provider refused: {reason[:300]}", status=401
            )
            d.delete_cookie(response, LOGIN_COOKIE)
            return response
        if not code or not state:
            return login_page(request, next_url=home, error="The sign-in answer is incomplete.", status=400)
        try:
            cookie, _identity, next_url = d.platform.sessions.complete_oidc(
                request.cookies.get(LOGIN_COOKIE),
                state=state,
                code=code,
                issuer=iss,
                redirect_uri=f"{settings.public_url}{PREFIX}/auth/callback",
            )
        except Unauthorized as exc:
            response = login_page(request, next_url=home, error=exc.message, status=401)
            d.delete_cookie(response, LOGIN_COOKIE)
            return response
        response = d.redirect(safe_next(next_url))
        d.set_cookie(response, SESSION_COOKIE, cookie, max_age=session_seconds)
        d.delete_cookie(response, LOGIN_COOKIE)
        return response

    @r.post("/logout")
    def logout(request: Request, csrf: FormText = None) -> Response:
        try:
            viewer = d.viewer(request)
        except SessionEnded:
            return d.redirect(f"{PREFIX}/login?signed_out=1")
        d.check_csrf(viewer, csrf)
        d.platform.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = d.redirect(f"{PREFIX}/login?signed_out=1")
        d.delete_cookie(response, SESSION_COOKIE)
        return response

    return r
