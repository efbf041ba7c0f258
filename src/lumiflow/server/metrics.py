"""Prometheus metrics of one app instance (its own registry: no process-wide globals)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lumiflow.resources.workload import WorkloadPhase
from lumiflow.server.platform import Platform


class _PlatformCollector(Collector):
    def __init__(self, platform: Platform) -> None:
        self.p = platform

    def collect(self) -> Iterator[Any]:
        phases = GaugeMetricFamily("lumiflow_workloads", "Workloads by phase", labels=["phase"])
        try:
            counts = self.p.store.count("Workload")
        except Exception:
            counts = {}
        for phase in WorkloadPhase:
            phases.add_metric([phase.value], counts.get(phase.value, 0))
        yield phases
        queue = GaugeMetricFamily("lumiflow_queue_length", "Workloads waiting for admission")
        queue.add_metric([], counts.get("Pending", 0) + counts.get("Queued", 0))
        yield queue
        passes = GaugeMetricFamily("lumiflow_scheduler_passes", "Scheduling passes since start")
        passes.add_metric([], self.p.scheduler.passes)
        yield passes
        admitted = GaugeMetricFamily("lumiflow_scheduler_admitted", "Workloads admitted since start")
        admitted.add_metric([], self.p.scheduler.admitted_total)
        yield admitted


class Metrics:
    def __init__(self, platform: Platform) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "lumiflow_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.requests = Counter(
            "lumiflow_http_requests", "HTTP requests", ["method", "status"], registry=self.registry
        )
        self.registry.register(_PlatformCollector(platform))


class MetricsMiddleware:
    """Times every request by its route template (not its raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            code = str(status["code"])
            self.metrics.latency.labels(scope["method"], template, code).observe(time.perf_counter() - start)
            self.metrics.requests.labels(scope["method"], code).inc()
