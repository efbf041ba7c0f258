"""``POST /api/v1/report``: a job's replicas push metrics (``lumiflow.report``, Katib's Push).

Authenticated by the job's own report token (see :mod:`lumiflow.auth.report`), never by a
user's: the token names the job the points belong to. A batch is checked whole before
anything is written, and written in one transaction.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from lumiflow.common.errors import BadRequest, LumiflowError, Unauthorized
from lumiflow.server.deps import platform_of
from lumiflow.server.platform import Platform
from lumiflow.store.model import MetricRecord

PATH = "/api/v1/report"
#: On SQLite a small batch is written on the event loop: the write takes tens of microseconds,
#: less than the hop to a worker thread (SQLite serialises writers anyway).
INLINE_POINTS = 1000
MAX_POINTS = 10_000
MAX_NAME = 256
MAX_STEP = 2**53

REPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["metrics"],
                    "properties": {
                        "metrics": {
                            "type": "array",
                            "maxItems": MAX_POINTS,
                            "items": {
                                "type": "object",
                                "required": ["name", "value"],
                                "properties": {
                                    "name": {"type": "string", "maxLength": MAX_NAME},
                                    "value": {"type": "number"},
                                    "step": {"type": "integer", "minimum": 0},
                                    "timestamp": {"type": "number"},
                                },
                            },
                        }
                    },
                }
            }
        },
    }
}


def parse_points(raw: bytes, now: float) -> list[MetricRecord]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest('the body must be JSON: {"metrics": [{"name": ..., "value": ...}]}') from None
    if not isinstance(body, dict) or not isinstance(body.get("metrics"), list):
        raise BadRequest('the body must be {"metrics": [...]}', field="metrics")
    points = body["metrics"]
    if len(points) > MAX_POINTS:
        raise BadRequest(f"at most {MAX_POINTS} points per request, got {len(points)}", field="metrics")
    out = []
    for i, p in enumerate(points):
        if type(p) is dict:
            # The common case in one test (orjson gives exact types; x - x is 0.0 only for a
            # finite float); anything else goes through the checks below for its message.
            name, value, step, ts = p.get("name"), p.get("value"), p.get("step", 0), p.get("timestamp", now)
            if (
                type(name) is str
                and 0 < len(name) <= MAX_NAME
                and ((type(value) is float and value - value == 0.0) or type(value) is int)
                and type(step) is int
                and 0 <= step < MAX_STEP
                and ((type(ts) is float and ts - ts == 0.0) or type(ts) is int)
                and name.isprintable()
            ):
                out.append(MetricRecord(name, step, float(value), float(ts), "push"))
                continue
        where = f"metrics[{i}]"
        if not isinstance(p, dict):
            raise BadRequest(f"{where} must be an object with name and value", field=where)
        name, value = p.get("name"), p.get("value")
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable():
            raise BadRequest(
                f"{where}.name must be printable text of 1 to {MAX_NAME} characters", field=f"{where}.name"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadRequest(f"{where}.value must be a finite number", field=f"{where}.value")
        step = p.get("step", 0)
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < MAX_STEP:
            raise BadRequest(f"{where}.step must be an integer from 0", field=f"{where}.step")
        ts = p.get("timestamp", now)
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise BadRequest(f"{where}.timestamp must be seconds since the epoch", field=f"{where}.timestamp")
        out.append(MetricRecord(name, step, float(value), float(ts), "push"))
    return out


def router() -> APIRouter:
    r = APIRouter(tags=["metrics"])

    @r.post(
        "/api/v1/report",
        status_code=202,
        summary="Push metrics from inside a job (its LUMIFLOW_REPORT_TOKEN)",
        openapi_extra=REPORT_BODY,
    )
    async def report(request: Request) -> JSONResponse:
        import time

        platform = platform_of(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "a job's report token is required (Authorization: Bearer $LUMIFLOW_REPORT_TOKEN)"
            )
        uid = platform.report_tokens.verify(token.strip())
        records = parse_points(await request.body(), time.time())
        written = await run_in_threadpool(platform.store.add_metrics, uid, records)
        return JSONResponse({"accepted": written}, status_code=202)

    return r


class ReportFastPath:
    """``POST /api/v1/report`` answered before FastAPI's routing and dependency machinery.

    Replicas may report a point per training step; the call's cost is what a training loop
    pays. This ASGI layer handles exactly that route (the FastAPI route above stays for the
    OpenAPI schema and answers the same way); everything else passes through. The body is
    bounded by the server's limit and the token checked before the body is parsed. On SQLite
    a batch of up to ``INLINE_POINTS`` is written on the event loop (a local write takes less
    than the hop to a worker thread; the store's transactions are all short, so the wait for
    the write lock is too); larger batches and network databases go to the thread pool.
    """

    def __init__(self, app: ASGIApp, *, platform: Platform, max_bytes: int) -> None:
        self.app = app
        self.platform = platform
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status, body = await self._handle(scope, receive)
        payload = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        import time

        token = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    token = b""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return 400, _error(BadRequest("the request ended before its body"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return 413, {
                    "error": "too_large",
                    "message": f"request body is larger than {self.max_bytes} bytes",
                    "field": None,
                }
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            if not token:
                raise Unauthorized(
                    "a job's report token is required (Authorization: Bearer $LUMIFLOW_REPORT_TOKEN)"
                )
            uid = self.platform.report_tokens.verify(token.decode("latin-1").strip())
            records = parse_points(b"".join(chunks), time.time())
            store = self.platform.store
            if store.inline_reads and len(records) <= INLINE_POINTS:
                written = store.add_metrics(uid, records)
            else:
                written = await run_in_threadpool(store.add_metrics, uid, records)
        except LumiflowError as exc:
            return exc.http_status, _error(exc)
        return 202, {"accepted": written}


def _error(exc: LumiflowError) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message, "field": exc.field}
