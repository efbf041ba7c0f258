"""Collecting a TrainingJob's metrics on the platform's side (Katib's collectors, no sidecar).

Katib runs a sidecar beside the training container that must read the metrics before the
pod goes; when the container ends first, the metrics are lost and the trial stays without
them (katib#1795, #1801, #2614). Here the platform reads the job's own outputs, which
outlive its processes: the primary replica's log (``StdOut``), a file the job writes
(``File``: text or JSON lines), TensorFlow event files (``TensorFlowEvent``); ``Push``
points arrive through the API. Collection is on demand — whoever needs the points (a
trial being judged, an early-stopping decision, a chart) calls :meth:`collect` first — and
incremental: the byte offsets and the parser's state are written in the same transaction as
the points they produced (a restart neither loses nor repeats a point). Once the job has
ended and its source is read to the end, the cursor says ``done``.

What to collect is the job's ``lumiflow.dev/metrics-collector`` annotation (JSON, written by
the Trial controller from the experiment's ``metricsCollectorSpec``); a job without one gets
Katib's default, ``StdOut`` with the ``name=value`` pattern, so every job's page can chart
the metrics its log prints.

File and event paths are read on the server's machine (the local cluster; a Ray cluster
whose nodes share the file system); relative paths are relative to the replica's working
directory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumiflow.clusters.set import ClusterSet
from lumiflow.common.errors import LumiflowError, NotFound
from lumiflow.controllers.metrics.parsers import (
    JsonLinesMetricsParser,
    MetricPoint,
    TextMetricsParser,
)
from lumiflow.controllers.metrics.tfevents import TFEventsReader
from lumiflow.resources.workload import Workload
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import MetricRecord, StoredObject

log = logging.getLogger(__name__)

COLLECTOR_ANNOTATION = "lumiflow.dev/metrics-collector"
#: A job's points are capped: a log that prints a million ``x=1`` lines must not fill the
#: database. Past the cap collection stops and the cursor says why.
MAX_POINTS_PER_JOB = 500_000
MAX_NAME_LENGTH = 256
READ_BYTES = 1 << 20
FINISHED = ("Succeeded", "Failed")
PRIMARY_TYPES = ("master", "chief", "launcher")


@dataclass(frozen=True)
class CollectorSpec:
    """What to read: Katib's collector kind, where, and which names."""

    kind: str = "StdOut"  # StdOut | File | TensorFlowEvent | Push | None
    path: str | None = None
    format: str = "TEXT"  # File: TEXT | JSON
    patterns: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    step_key: str = "step"
    replica: str | None = None  # default: the primary replica (master/chief/launcher, else the first)

    @classmethod
    def of(cls, job: StoredObject) -> CollectorSpec:
        raw = job.annotations.get(COLLECTOR_ANNOTATION)
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        names = data.get("names")
        return cls(
            kind=str(data.get("kind") or "StdOut"),
            path=data.get("path") or None,
            format=str(data.get("format") or "TEXT").upper(),
            patterns=tuple(str(p) for p in data.get("metricsFormat") or ()),
            names=tuple(str(n) for n in names) if isinstance(names, list) else None,
            step_key=str(data.get("stepKey") or "step"),
            replica=data.get("replica") or None,
        )

    def to_annotation(self) -> str:
        body: dict[str, Any] = {"kind": self.kind, "format": self.format, "stepKey": self.step_key}
        if self.path:
            body["path"] = self.path
        if self.patterns:
            body["metricsFormat"] = list(self.patterns)
        if self.names is not None:
            body["names"] = list(self.names)
        if self.replica:
            body["replica"] = self.replica
        return json.dumps(body, separators=(",", ":"))

    @property
    def source(self) -> str:
        return {"StdOut": "stdout", "File": "file", "TensorFlowEvent": "tfevent"}.get(self.kind, "push")


@dataclass
class _Batch:
    records: list[MetricRecord] = field(default_factory=list)


def primary_replica(replicas: Sequence[str]) -> str:
    for prefix in PRIMARY_TYPES:
        for name in replicas:
            if name == f"{prefix}-0":
                return name
    return replicas[0]


class MetricsCollector:
    """Reads a job's metrics into the store. Thread-safe; one collection per job at a time."""

    def __init__(self, store: ResourceStore, clusters: ClusterSet) -> None:
        self.store = store
        self.clusters = clusters
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, uid: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(uid)
            if lock is None:
                if len(self._locks) > 10_000:
                    self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                lock = self._locks[uid] = threading.Lock()
            return lock

    def collect(self, job: StoredObject) -> bool:
        """Reads what is new; True once the job has ended and its source is read to the end
        (Push: once it has ended). Never raises for a job's bad output; store errors pass."""
        spec = CollectorSpec.of(job)
        if spec.kind in ("Push", "None"):
            return job.phase in FINISHED
        with self._lock(job.uid):
            cursor = self.store.metric_cursor(job.uid, spec.source) or {}
            if cursor.get("done"):
                return True
            try:
                if spec.kind == "StdOut":
                    return self._collect_log(job, spec, cursor)
                return self._collect_path(job, spec, cursor)
            except NotFound:
                return job.phase in FINISHED  # the job went while we read

    # --- the primary replica's log ----------------------------------------------------------

    def _workload(self, job: StoredObject) -> Workload | None:
        try:
            obj = self.store.get("Workload", job.profile, job.name)
        except NotFound:
            return None
        wl = Workload.parse(obj.to_manifest())
        wl.metadata.uid = obj.uid
        return wl

    def _text_parser(self, spec: CollectorSpec, state: dict[str, Any] | None) -> TextMetricsParser:
        return TextMetricsParser(
            patterns=list(spec.patterns) or None, names=spec.names, step_key=spec.step_key, state=state
        )

    def _collect_log(self, job: StoredObject, spec: CollectorSpec, cursor: dict[str, Any]) -> bool:
        finished = job.phase in FINISHED
        wl = self._workload(job)
        if wl is None or wl.status.cluster is None:
            if finished:  # never ran, or its records were cleaned (cleanPodPolicy: All)
                self._save(job, spec, [], {**cursor, "done": True})
                return True
            return False
        names = [r.name for r in wl.spec.replicas]
        replica = spec.replica if spec.replica in names else primary_replica(names)
        try:
            backend = self.clusters.get(wl.status.cluster)
        except LumiflowError:
            return finished
        attempt = int(cursor.get("attempt", 0))
        offset = int(cursor.get("offset", 0))
        parser = self._text_parser(spec, cursor.get("parser"))
        count = int(cursor.get("count", 0))
        while True:
            try:
                chunk = backend.read_log(
                    wl.metadata.uid or "", attempt, replica, offset=offset, max_bytes=READ_BYTES
                )
                data, offset, complete = chunk.data, chunk.next_offset, chunk.complete
            except NotFound:
                data, complete = b"", attempt < wl.spec.attempt or finished
            except LumiflowError as exc:
                log.warning("metrics of %s/%s: cannot read the log: %s", job.profile, job.name, exc.message)
                return False
            points = parser.feed(data) if data else []
            moved_on = attempt < wl.spec.attempt
            if not data and (complete or moved_on) and moved_on:
                attempt, offset = attempt + 1, 0
                points += parser.finish()
            ended = not data and complete and not moved_on and finished
            if ended:
                points += parser.finish()
            state = {"attempt": attempt, "offset": offset, "parser": parser.state(), "done": ended}
            count = self._save(job, spec, points, {**state, "count": count}, count=count)
            if ended or count >= MAX_POINTS_PER_JOB:
                return ended
            if not data and not moved_on:
                return False

    # --- a file or a folder of event files --------------------------------------------------

    def _resolve(self, job: StoredObject, path: str) -> Path | None:
        if os.path.isabs(path):
            return Path(path)
        wl = self._workload(job)
        if wl is None:
            return None
        names = [r.name for r in wl.spec.replicas]
        wanted = primary_replica(names)
        for r in wl.spec.replicas:
            if r.name == wanted:
                base = r.workingDir or r.sourceDir
                return Path(base) / path if base else None
        return None

    def _collect_path(self, job: StoredObject, spec: CollectorSpec, cursor: dict[str, Any]) -> bool:
        finished = job.phase in FINISHED
        path = self._resolve(job, spec.path or "")
        count = int(cursor.get("count", 0))
        if path is None:
            if finished:
                self._save(job, spec, [], {**cursor, "done": True})
            return finished
        points: list[MetricPoint]
        if spec.kind == "TensorFlowEvent":
            reader = TFEventsReader(path, names=spec.names, state=cursor.get("reader"))
            points = reader.read_new() if path.is_dir() else []
            state: dict[str, Any] = {"reader": reader.state()}
        else:
            offset = int(cursor.get("offset", 0))
            parser: TextMetricsParser | JsonLinesMetricsParser
            if spec.format == "JSON":
                parser = JsonLinesMetricsParser(
                    names=spec.names, step_key=spec.step_key, state=cursor.get("parser")
                )
            else:
                parser = self._text_parser(spec, cursor.get("parser"))
            points = []
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    while data := fh.read(READ_BYTES):
                        points += parser.feed(data)
                        offset += len(data)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                pass
            if finished:
                points += parser.finish()
            state = {"offset": offset, "parser": parser.state()}
        self._save(job, spec, points, {**state, "count": count, "done": finished}, count=count)
        return finished

    # --- writing ---------------------------------------------------------------------------

    def _save(
        self,
        job: StoredObject,
        spec: CollectorSpec,
        points: Sequence[MetricPoint],
        state: dict[str, Any],
        *,
        count: int = 0,
    ) -> int:
        now = time.time()
        room = max(0, MAX_POINTS_PER_JOB - count)
        records = [
            MetricRecord(p.name, int(p.step), float(p.value), p.timestamp or now, spec.source)
            for p in points
            if len(p.name) <= MAX_NAME_LENGTH
        ][:room]
        count += len(records)
        state = {**state, "count": count}
        if count >= MAX_POINTS_PER_JOB:
            state["capped"] = True
        self.store.add_metrics(job.uid, records, cursor=(spec.source, state))
        return count
