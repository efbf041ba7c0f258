"""``lumiflow.report``: a replica pushes metrics to the platform (Katib's Push collector).

Inside a lumiflow job the platform sets ``LUMIFLOW_REPORT_URL`` and ``LUMIFLOW_REPORT_TOKEN``
(a credential that can only add points to this job); each call is one HTTP request on a kept-
alive connection and returns once the points are stored, so a process that exits right after
reporting loses nothing. Steps: given, or the count of values of that name this process
reported so far. Outside lumiflow (no such variables) the points are printed as Katib's
``name=value`` lines, which the StdOut collector reads, so a script runs the same anywhere.

Standard library only: this runs inside the user's job.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_POINTS_PER_REQUEST = 10_000


class ReportError(RuntimeError):
    """The platform refused the points (the message says why) or could not be reached."""


class Reporter:
    def __init__(self, url: str | None, token: str | None, *, timeout: float = 30.0) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self._local = threading.local()
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environ(cls) -> Reporter:
        return cls(os.environ.get("LUMIFLOW_REPORT_URL"), os.environ.get("LUMIFLOW_REPORT_TOKEN"))

    def _step(self, name: str, step: int | None) -> int:
        with self._lock:
            count = self._counts.get(name, 0) + 1
            self._counts[name] = count
        return int(step) if step is not None else count

    def points(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for record in records:
            name = record.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"a metric needs a name, got {record!r}")
            value = float(record["value"])
            if not math.isfinite(value):
                raise ValueError(f"metric {name!r}: value must be finite, got {value}")
            step = record.get("step")
            out.append(
                {
                    "name": name,
                    "value": value,
                    "step": self._step(name, None if step is None else int(step)),
                    "timestamp": float(record.get("timestamp") or now),
                }
            )
        return out

    def send(self, records: Iterable[Mapping[str, Any]]) -> int:
        points = self.points(records)
        if not points:
            return 0
        if not self.url or not self.token:
            for p in points:
                print(f"{p['name']}={p['value']!r} step={p['step']}", flush=True)
            return len(points)
        for start in range(0, len(points), MAX_POINTS_PER_REQUEST):
            self._post({"metrics": points[start : start + MAX_POINTS_PER_REQUEST]})
        return len(points)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        assert self.url is not None
        cached: tuple[http.client.HTTPConnection, str] | None = getattr(self._local, "conn", None)
        if cached is not None:
            return cached
        parts = urlsplit(self.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)
        self._local.conn = (conn, parts.path or "/")
        return conn, parts.path or "/"

    def _post(self, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
        }
        delay = 0.2
        for attempt in range(6):
            conn, path = self._connection()
            try:
                conn.request("POST", path, body=payload, headers=headers)
                response = conn.getresponse()
                text = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 5:
                    raise ReportError(f"cannot reach the platform at {self.url}: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if response.status < 300:
                return
            if response.status >= 500 and attempt < 5:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                message = json.loads(text).get("message", text.decode(errors="replace"))
            except ValueError:
                message = text.decode(errors="replace")
            raise ReportError(f"the platform refused the metrics ({response.status}): {message}")


_reporter: Reporter | None = None
_reporter_lock = threading.Lock()


def _default() -> Reporter:
    global _reporter
    with _reporter_lock:
        if _reporter is None:
            _reporter = Reporter.from_environ()
            if not _reporter.url:
                print(
                    "lumiflow.report: not in a lumiflow job (no LUMIFLOW_REPORT_URL); printing metrics",
                    file=sys.stderr,
                )
        return _reporter


def report(step: int | None = None, **metrics: float) -> None:
    """Reports ``name=value`` metrics at ``step`` (one request): ``report(loss=0.3, step=5)``."""
    _default().send({"name": k, "value": v, "step": step} for k, v in metrics.items())


def report_many(records: Iterable[Mapping[str, Any]]) -> None:
    """Reports many points in one request: ``[{"name": "loss", "value": 0.3, "step": 5}, ...]``."""
    _default().send(records)
