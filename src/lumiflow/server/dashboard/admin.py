"""Pages for admins: users and their first token, groups → roles, and the clusters."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from lumiflow.common.errors import LumiflowError
from lumiflow.server.dashboard.web import PREFIX, Dashboard, Viewer

FormText = Annotated[str | None, Form(max_length=4096)]


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    settings = d.platform.settings

    def users_page(request: Request, viewer: Viewer, *, status: int = 200, **extra: object) -> Response:
        context: dict[str, object] = {"issued": None, "error": None, "form_name": "", "form_groups": ""}
        context.update(extra)
        return d.render(
            request,
            "admin_users.html",
            viewer=viewer,
            status=status,
            users=d.accounts.list_users(viewer.identity),
            own_tokens=settings.auth.accepts_own_tokens,
            **context,
        )

    @r.get("/admin/users")
    def users(request: Request) -> Response:
        viewer = d.viewer(request)
        return users_page(request, viewer)

    @r.post("/admin/users")
    def add_user(
        request: Request, csrf: FormText = None, name: FormText = None, groups: FormText = None
    ) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        d.platform.access.require_admin(viewer.identity)
        wanted = [g for g in (groups or "").replace(",", " ").split() if g]
        try:
            user, issued = d.accounts.add_user(viewer.identity, (name or "").strip(), wanted)
        except LumiflowError as exc:
            status = exc.http_status if 400 <= exc.http_status < 500 else 400
            return users_page(
                request,
                viewer,
                status=status,
                error=exc.message,
                form_name=name or "",
                form_groups=groups or "",
            )
        # The token is shown on this answer only: it is not stored anywhere it could be shown again.
        return users_page(request, viewer, status=201, issued={"user": user.name, "token": issued.token})

    @r.post("/admin/users/{name}/delete")
    def delete_user(request: Request, name: str, csrf: FormText = None) -> Response:
        viewer = d.viewer(request)
        d.check_csrf(viewer, csrf)
        d.accounts.delete_user(viewer.identity, name)
        d.platform.sessions.set_flash(viewer.session, f"user {name} deleted; their tokens are revoked")
        return d.redirect(f"{PREFIX}/admin/users#{quote(name)}")

    @r.get("/admin/roles")
    def roles(request: Request) -> Response:
        viewer = d.viewer(request)
        d.platform.access.require_admin(viewer.identity)
        return d.render(request, "admin_roles.html", viewer=viewer, auth=settings.auth)

    @r.get("/clusters")
    def clusters(request: Request) -> Response:
        viewer = d.viewer(request)
        return d.render(request, "clusters.html", viewer=viewer, clusters=d.service.clusters(viewer.identity))

    return r
