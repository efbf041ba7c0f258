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

from lumiflow.common.errors import BadRequest, Unauthorized
from lumiflow.server.deps import platform_of
from lumiflow.store.model import MetricRecord

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
