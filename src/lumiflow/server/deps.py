"""Request dependencies: the platform, the caller's identity, and safe body parsing."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from lumiflow.auth.identity import Identity
from lumiflow.common.documents import parse_body
from lumiflow.common.errors import BadRequest, Unauthorized
from lumiflow.server.platform import Platform
from lumiflow.server.service import ResourceService


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def service_of(request: Request) -> ResourceService:
    service: ResourceService = request.app.state.service
    return service


async def current_identity(request: Request) -> Identity:
    """Authenticates the bearer token (a cached dictionary lookup after the first request)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>' (see `lumi login`)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    platform = platform_of(request)
    identity = platform.access.classify(platform.identity.authenticate(token))
    if identity.has_role:
        platform.ensure_personal_profile(identity)
    return identity


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest(
            "request body is empty: send a manifest (JSON, or YAML with Content-Type: application/yaml)"
        )
    return parse_body(raw, request.headers.get("content-type"))
