"""Who am I, users (admin) and tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lumiflow.auth.identity import Identity
from lumiflow.common.errors import Forbidden, NotFound
from lumiflow.resources import Role
from lumiflow.server.deps import current_identity, platform_of, service_of

Caller = Annotated[Identity, Depends(current_identity)]

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,252}$")
_GROUP = re.compile(r"^[A-Za-z0-9/_][A-Za-z0-9._@:/+-]{0,252}$")


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="user name, e.g. alice or alice@cern.ch")
    groups: list[str] = Field(default_factory=list, max_length=64)
    ttlDays: float | None = Field(default=None, gt=0, le=3650)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError(
                "user names are 1-253 letters, digits and . _ @ + -, starting with a letter or digit"
            )
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not _GROUP.match(group):
                raise ValueError(f"group {group[:80]!r} is not a valid group name")
        return sorted(set(value))


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, description="admin only: issue for another user")
    description: str = Field(default="", max_length=500)
    ttlDays: float | None = Field(default=None, gt=0, le=3650)


def router() -> APIRouter:
    r = APIRouter(tags=["identity"])

    @r.get("/api/v1/whoami", summary="The caller's identity, role and profiles")
    def whoami(request: Request, caller: Caller) -> dict[str, Any]:
        service = service_of(request)
        platform = platform_of(request)
        profiles = []
        if caller.has_role:
            for name in platform.profiles.names():
                role = service.role_in(caller, name)
                if role is not Role.NONE:
                    profiles.append({"name": name, "role": role.value})
        return {
            "user": caller.user,
            "groups": sorted(caller.groups),
            "roles": (["admin"] if caller.is_admin else []) + (["user"] if caller.has_role else []),
            "defaultProfile": platform.personal_profile(caller),
            "profiles": profiles,
        }

    @r.get("/api/v1/users", summary="List users (admin)")
    def list_users(request: Request, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        platform.access.require_admin(caller)
        return {"kind": "UserList", "items": [u.to_dict() for u in platform.store.list_users()]}

    @r.post("/api/v1/users", status_code=201, summary="Add a user and issue their first token (admin)")
    def add_user(request: Request, body: NewUser, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        platform.access.require_admin(caller)
        user = platform.store.create_user(body.name, body.groups)
        ttl = timedelta(days=body.ttlDays) if body.ttlDays else None
        issued = platform.identity.issue(user.name, user.groups, description="issued by `users add`", ttl=ttl)
        platform.identity.refresh()
        return {"user": user.to_dict(), "token": issued.token, "tokenInfo": issued.record.to_dict()}

    @r.get("/api/v1/users/{name}", summary="Get a user (admin, or yourself)")
    def get_user(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        if name != caller.user:
            platform.access.require_admin(caller)
        return platform.store.get_user(name).to_dict()

    @r.delete("/api/v1/users/{name}", summary="Delete a user and revoke their tokens (admin)")
    def delete_user(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        platform.access.require_admin(caller)
        if name == caller.user:
            raise Forbidden("you cannot delete yourself")
        platform.store.delete_user(name)
        platform.identity.refresh()
        return {"kind": "Status", "status": "Success", "details": {"kind": "User", "name": name}}

    @r.get("/api/v1/tokens", summary="List tokens (yours; an admin may list anyone's)")
    def list_tokens(
        request: Request, caller: Caller, user: Annotated[str | None, Query(max_length=253)] = None
    ) -> dict[str, Any]:
        platform = platform_of(request)
        wanted = user or (None if caller.is_admin else caller.user)
        if wanted != caller.user:
            platform.access.require_admin(caller)
        return {"kind": "TokenList", "items": [t.to_dict() for t in platform.store.list_tokens(user=wanted)]}

    @r.post("/api/v1/tokens", status_code=201, summary="Issue a token (for yourself; admin for others)")
    def create_token(request: Request, body: NewToken, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        platform.access.require_role(caller)
        name = body.user or caller.user
        if name != caller.user:
            platform.access.require_admin(caller)
        user = platform.store.get_user(name)
        ttl = timedelta(days=body.ttlDays) if body.ttlDays else None
        issued = platform.identity.issue(user.name, user.groups, description=body.description, ttl=ttl)
        return {"token": issued.token, "tokenInfo": issued.record.to_dict()}

    @r.delete("/api/v1/tokens/{token_id}", summary="Revoke a token (yours; admin: anyone's)")
    def revoke_token(request: Request, token_id: str, caller: Caller) -> dict[str, Any]:
        platform = platform_of(request)
        token = platform.store.get_token(token_id)
        if token.user != caller.user and not caller.is_admin:
            raise NotFound(f"token {token_id!r} not found")
        revoked = platform.store.revoke_token(token_id)
        platform.identity.refresh()
        return revoked.to_dict()

    return r
