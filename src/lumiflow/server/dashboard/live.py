"""Live logs: a replica's log as server-sent events, and as plain text without JavaScript.

Each event carries one chunk of the log as a JSON string (the page appends it as text, never
as HTML) and an ``id`` of ``attempt:offset``. When the connection drops, the browser's
EventSource reconnects with that id in ``Last-Event-ID`` and the stream carries on where it
stopped, so no line is shown twice. An ``end`` event says the job has finished and nothing
more will come.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from lumiflow.server.dashboard.web import Dashboard
from lumiflow.server.logs import LogRequest, LogStream

Replica = Annotated[str | None, Query(max_length=63)]


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    if not value or len(value) > 40:
        return None
    attempt, _, offset = value.partition(":")
    if not (attempt.isdigit() and offset.isdigit()):
        return None
    return int(attempt), int(offset)


def routes(d: Dashboard) -> APIRouter:
    r = APIRouter()
    job_kind = d.platform.kinds.kinds["TrainingJob"]

    async def open_stream(
        request: Request, profile: str, name: str, replica: str | None, *, follow: bool
    ) -> LogStream:
        viewer = await run_in_threadpool(d.viewer, request)
        await run_in_threadpool(d.service.get, viewer.identity, job_kind, profile, name)
        resume = parse_event_id(request.headers.get("last-event-id")) if follow else None
        stream = LogStream(d.platform, LogRequest(profile, name, replica, None, follow, resume))
        await run_in_threadpool(stream.check)
        return stream

    @r.get("/jobs/{profile}/{name}/_logs")
    async def log_events(request: Request, profile: str, name: str, replica: Replica = None) -> Response:
        stream = await open_stream(request, profile, name, replica, follow=True)

        async def events() -> AsyncIterator[bytes]:
            decoders: dict[int, codecs.IncrementalDecoder] = {}
            yield b"retry: 2000\n\n"
            async for attempt, offset, data in stream.positioned():
                decoder = decoders.setdefault(attempt, codecs.getincrementaldecoder("utf-8")("replace"))
                text = decoder.decode(data)
                if text:
                    yield f"id: {attempt}:{offset}\ndata: {json.dumps(text)}\n\n".encode()
            yield b"event: end\ndata: {}\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    @r.get("/jobs/{profile}/{name}/log.txt")
    async def log_text(request: Request, profile: str, name: str, replica: Replica = None) -> Response:
        stream = await open_stream(request, profile, name, replica, follow=False)
        return StreamingResponse(stream.chunks(), media_type="text/plain; charset=utf-8")

    return r
