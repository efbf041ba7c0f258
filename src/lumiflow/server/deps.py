"""Request dependencies: the platform, the caller's identity, and safe body parsing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lumiflow.auth.identity import Identity
from lumiflow.common.documents import parse_body
from lumiflow.common.errors import BadRequest, Unauthorized
from lumiflow.server.platform import Platform
from lumiflow.server.service import ResourceService

T = TypeVar("T")


class JSON(Response):
    """A JSON response rendered by orjson, without FastAPI's generic encoder pass."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a read of the store: inline when the store answers in microseconds (SQLite,
    a local file in WAL mode, where a thread hop costs more than the read), in the thread
    pool otherwise (a network database must not stall the event loop)."""
    if platform_of(request).store.inline_reads:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


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
    identity = platform.authenticate_cached(token)
    if identity is not None:
        return identity
    if platform.oidc is not None:
        # The first token of a key may need the issuer's keys fetched: never on the event loop.
        return await run_in_threadpool(platform.authenticate, token)
    return platform.authenticate(token)


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest(
            "request body is empty: send a manifest (JSON, or YAML with Content-Type: application/yaml)"
        )
    return parse_body(raw, request.headers.get("content-type"))
