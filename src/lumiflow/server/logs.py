"""Streaming a replica's log through the API, across gang restarts when following.

The log lives with the cluster backend (a file on the local cluster); this module finds the
Workload behind an object, checks the replica exists, and streams bytes from an offset.
With ``follow`` it waits for a queued job to start, keeps reading while the replica runs,
and, when the gang restarts, carries on with the next attempt after a separator line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from lumiflow.common.errors import BadRequest, NotFound
from lumiflow.resources.workload import Workload
from lumiflow.server.platform import Platform

POLL_SECONDS = 0.2
#: Owners' final phases: jobs say Succeeded/Failed; pipeline runs use Kubeflow's upper case.
TERMINAL = ("Succeeded", "Failed", "SUCCEEDED", "FAILED", "CANCELED")


@dataclass
class LogRequest:
    profile: str
    workload: str  # the Workload's name (a TrainingJob's Workload has the job's name)
    replica: str | None
    attempt: int | None
    follow: bool
    #: (attempt, byte offset) to carry on from, as a reconnecting live view asks.
    resume: tuple[int, int] | None = None


class LogStream:
    def __init__(self, platform: Platform, request: LogRequest) -> None:
        self.p = platform
        self.r = request
        self.first_attempt = 0

    def _workload(self) -> Workload | None:
        try:
            obj = self.p.store.get("Workload", self.r.profile, self.r.workload)
        except NotFound:
            return None
        wl = Workload.parse(obj.to_manifest())
        wl.metadata.uid = obj.uid
        return wl

    def check(self) -> None:
        """Resolves the replica and the first attempt before streaming starts (so that
        errors get a status code)."""
        if self.r.attempt is not None and self.r.attempt < 0:
            raise BadRequest("attempt must be 0 or more", field="attempt")
        wl = self._workload()
        self.first_attempt = 0
        if wl is None:
            if self.r.follow:
                return
            raise NotFound(f"no logs yet for {self.r.workload}: it has not been scheduled")
        names = [r.name for r in wl.spec.replicas]
        if self.r.replica is None:
            self.r.replica = names[0]
        elif self.r.replica not in names:
            raise NotFound(
                f"replica {self.r.replica!r} not found (replicas: {', '.join(names)})", field="replica"
            )
        if self.r.attempt is not None:
            if self.r.attempt > wl.spec.attempt:
                raise NotFound(
                    f"attempt {self.r.attempt} has not happened (latest: {wl.spec.attempt})", field="attempt"
                )
            self.first_attempt = self.r.attempt
        else:
            # Following starts with the attempt about to run or running; a plain read shows
            # the attempt whose replicas ran last.
            self.first_attempt = wl.spec.attempt if self.r.follow else wl.status.attempt

    def _owner_finished(self, wl: Workload) -> bool:
        if wl.spec.owner is None:
            return True
        try:
            owner = self.p.store.get(wl.spec.owner.kind, self.r.profile, wl.spec.owner.name)
        except NotFound:
            return True
        return owner.status.get("phase") in TERMINAL or owner.deletion_timestamp is not None

    def _read(self, wl: Workload, attempt: int, offset: int) -> tuple[bytes, int, bool]:
        assert wl.status.cluster is not None
        assert self.r.replica is not None
        backend = self.p.clusters.get(wl.status.cluster)
        try:
            chunk = backend.read_log(
                wl.metadata.uid or "", attempt, self.r.replica, offset=offset, max_bytes=256 * 1024
            )
        except NotFound:
            return b"", offset, False
        return chunk.data, chunk.next_offset, chunk.complete

    async def chunks(self) -> AsyncIterator[bytes]:
        async for _attempt, _offset, data in self.positioned():
            yield data

    async def positioned(self) -> AsyncIterator[tuple[int, int, bytes]]:
        """The log as (attempt, offset after the data, data); a separator line between
        attempts comes with the new attempt and offset 0."""
        current = self.first_attempt
        offset = 0
        if self.r.resume is not None and self.r.resume[0] >= current:
            current, offset = self.r.resume
        while True:
            wl = await run_in_threadpool(self._workload)
            if wl is None or wl.status.cluster is None:
                if not self.r.follow or (wl is None and offset):
                    return
                await asyncio.sleep(POLL_SECONDS)
                continue
            if self.r.replica is None:
                self.r.replica = wl.spec.replicas[0].name
            data, offset, complete = await run_in_threadpool(self._read, wl, current, offset)
            if data:
                yield current, offset, data
                continue
            if not self.r.follow:
                return
            moved_on = wl.status.attempt > current
            if complete or moved_on:
                if self.r.attempt is not None:
                    return
                if wl.spec.attempt > current:
                    current, offset = current + 1, 0
                    yield current, 0, f"--- lumiflow: gang restarted, attempt {current} ---\n".encode()
                    continue
                settled = wl.status.phase.is_terminal() and wl.spec.attempt == wl.status.attempt
                if settled and await run_in_threadpool(self._owner_finished, wl):
                    return
            await asyncio.sleep(POLL_SECONDS)
