"""Who am I, how to sign in, users (admin) and tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lumiflow.auth.identity import Identity
from lumiflow.server.accounts import AccountService, check_groups, check_user_name
from lumiflow.server.deps import current_identity

Caller = Annotated[Identity, Depends(current_identity)]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="user name, e.g. alice or alice@cern.ch")
    groups: list[str] = Field(default_factory=list, max_length=64)
    ttlDays: float | None = Field(default=None, gt=0, le=3650)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_user_name(value)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return check_groups(value)


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, description="admin only: issue for another user")
    description: str = Field(default="", max_length=500)
    ttlDays: float | None = Field(default=None, gt=0, le=3650)


def accounts_of(request: Request) -> AccountService:
    accounts: AccountService = request.app.state.accounts
    return accounts


def router() -> APIRouter:
    r = APIRouter(tags=["identity"])

    @r.get("/api/v1/auth/config", summary="How to sign in to this server (public; read by `lumi login`)")
    def auth_config(request: Request) -> dict[str, Any]:
        return accounts_of(request).sign_in_options()

    @r.get("/api/v1/whoami", summary="The caller's identity, role and profiles")
    def whoami(request: Request, caller: Caller) -> dict[str, Any]:
        return accounts_of(request).me(caller).to_dict()

    @r.get("/api/v1/users", summary="List users (admin)")
    def list_users(request: Request, caller: Caller) -> dict[str, Any]:
        return {"kind": "UserList", "items": [u.to_dict() for u in accounts_of(request).list_users(caller)]}

    @r.post("/api/v1/users", status_code=201, summary="Add a user and issue their first token (admin)")
    def add_user(request: Request, body: NewUser, caller: Caller) -> dict[str, Any]:
        user, issued = accounts_of(request).add_user(caller, body.name, body.groups, ttl_days=body.ttlDays)
        return {"user": user.to_dict(), "token": issued.token, "tokenInfo": issued.record.to_dict()}

    @r.get("/api/v1/users/{name}", summary="Get a user (admin, or yourself)")
    def get_user(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        return accounts_of(request).get_user(caller, name).to_dict()

    @r.delete("/api/v1/users/{name}", summary="Delete a user and revoke their tokens (admin)")
    def delete_user(request: Request, name: str, caller: Caller) -> dict[str, Any]:
        accounts_of(request).delete_user(caller, name)
        return {"kind": "Status", "status": "Success", "details": {"kind": "User", "name": name}}

    @r.get("/api/v1/tokens", summary="List tokens (yours; an admin may list anyone's)")
    def list_tokens(
        request: Request, caller: Caller, user: Annotated[str | None, Query(max_length=253)] = None
    ) -> dict[str, Any]:
        items = accounts_of(request).list_tokens(caller, user)
        return {"kind": "TokenList", "items": [t.to_dict() for t in items]}

    @r.post("/api/v1/tokens", status_code=201, summary="Issue a token (for yourself; admin for others)")
    def create_token(request: Request, body: NewToken, caller: Caller) -> dict[str, Any]:
        issued = accounts_of(request).issue_token(
            caller, user=body.user, description=body.description, ttl_days=body.ttlDays
        )
        return {"token": issued.token, "tokenInfo": issued.record.to_dict()}

    @r.delete("/api/v1/tokens/{token_id}", summary="Revoke a token (yours; admin: anyone's)")
    def revoke_token(request: Request, token_id: str, caller: Caller) -> dict[str, Any]:
        return accounts_of(request).revoke_token(caller, token_id).to_dict()

    return r
