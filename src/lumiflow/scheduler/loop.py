"""The scheduler's loop: reads the queue from the store, decides, writes admissions.

It runs in its own thread, woken whenever something that could change a decision happens
(a Workload created, finished, stopped or deleted; a profile's quota changed) and at least
every ``resync`` seconds. Each pass reads every non-terminal Workload once, decides in
memory (:func:`lumiflow.scheduler.core.schedule`) and writes all admissions in one
transaction, so a thousand queued Workloads cost one pass, not a thousand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from lumiflow.clusters.set import ClusterSet
from lumiflow.common.errors import LumiflowError
from lumiflow.common.quantity import Limits, Resources
from lumiflow.common.timeutil import to_rfc3339, utcnow
from lumiflow.resources.profile import Profile
from lumiflow.resources.workload import ACTIVE_PHASES, WAITING_PHASES, Workload, WorkloadPhase
from lumiflow.scheduler.core import Candidate, ClusterView, ProfileView, schedule
from lumiflow.store.base import ResourceStore, StatusWrite
from lumiflow.store.model import StoredObject

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, *, store: ResourceStore, clusters: ClusterSet, resync: float = 30.0) -> None:
        self.store = store
        self.clusters = clusters
        self.resync = resync
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.admitted_total = 0
        self.queue_length = 0
        self.on_pass: Callable[[int], None] | None = None
        #: Parsed Workloads by uid, with the resourceVersion they were parsed at.
        self._parsed: dict[str, tuple[int, Workload]] = {}
        #: Each profile's quota and home cluster by uid, with the resourceVersion read.
        self._profile_terms: dict[str, tuple[int, Limits, str | None]] = {}

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lumiflow-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.resync)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except LumiflowError as exc:
                log.warning("scheduling pass failed: %s", exc.message)
                time.sleep(0.5)
            except Exception:
                log.exception("scheduling pass failed")
                time.sleep(0.5)

    # --- one pass ------------------------------------------------------------------------

    def _profiles(self) -> dict[str, ProfileView]:
        """Fresh views (a pass adds usage to them) over each profile's terms, which are parsed
        once per resourceVersion."""
        views: dict[str, ProfileView] = {}
        terms: dict[str, tuple[int, Limits, str | None]] = {}
        for obj in self.store.list("Profile").items:
            cached = self._profile_terms.get(obj.uid)
            if cached is not None and cached[0] == obj.resource_version:
                _, limits, home = cached
            else:
                try:
                    profile = Profile.parse(obj.to_manifest())
                    limits = profile.spec.resourceQuotaSpec.limits()
                    home = profile.spec.cluster
                except LumiflowError:
                    limits, home = Limits(cpu=0, memory=0, gpu=0, workloads=0), None
            terms[obj.uid] = (obj.resource_version, limits, home)
            views[obj.name] = ProfileView(name=obj.name, limits=limits, home_cluster=home)
        self._profile_terms = terms
        return views

    def run_once(self) -> int:
        """One scheduling pass; returns how many Workloads it admitted."""
        objs = self.store.list("Workload", phases=(*WAITING_PHASES, *ACTIVE_PHASES)).items
        profiles = self._profiles()
        clusters: dict[str, ClusterView] = {}
        for name, backend in self.clusters:
            cap = backend.capacity()
            clusters[name] = ClusterView(name=name, total=cap.total, per_replica=cap.per_replica)

        candidates: list[Candidate] = []
        waiting_objs: dict[str, tuple[StoredObject, Workload]] = {}
        parsed: dict[str, tuple[int, Workload]] = {}
        for obj in objs:
            cached = self._parsed.get(obj.uid)
            if cached is not None and cached[0] == obj.resource_version:
                wl = cached[1]
            else:
                try:
                    wl = Workload.parse(obj.to_manifest())
                except LumiflowError:
                    continue
            parsed[obj.uid] = (obj.resource_version, wl)
            phase = wl.status.phase
            if phase.holds_resources():
                request = wl.spec.request()
                prof = profiles.get(obj.profile)
                if prof is not None:
                    prof.used = prof.used + request
                cl = clusters.get(wl.status.cluster or "")
                if cl is not None:
                    cl.used = cl.used + request
                continue
            if obj.deletion_timestamp is not None or wl.spec.stopped:
                continue
            largest = Resources()
            for r in wl.spec.replicas:
                v = r.resources.vector()
                largest = Resources(
                    cpu=max(largest.cpu, v.cpu),
                    memory=max(largest.memory, v.memory),
                    gpu=max(largest.gpu, v.gpu),
                )
            assert obj.created_at is not None
            candidates.append(
                Candidate(
                    profile=obj.profile,
                    name=obj.name,
                    uid=obj.uid,
                    request=wl.spec.request(),
                    largest_replica=largest,
                    cluster=wl.spec.cluster,
                    priority=wl.spec.priority,
                    created_at=obj.created_at,
                )
            )
            waiting_objs[obj.uid] = (obj, wl)

        self._parsed = parsed  # only what is still queued or running stays cached
        decision = schedule(candidates, profiles, clusters, home_cluster=self.clusters.home_name)
        now = to_rfc3339(utcnow())
        writes: list[StatusWrite] = []
        for cand, cluster in decision.admitted:
            obj, wl = waiting_objs[cand.uid]
            status = wl.status.model_copy(
                update={
                    "phase": WorkloadPhase.ADMITTED,
                    "cluster": cluster,
                    "admittedAt": now,
                    "queuedAt": wl.status.queuedAt or now,
                    "reason": None,
                    "message": None,
                }
            )
            writes.append(
                StatusWrite(
                    "Workload",
                    obj.profile,
                    obj.name,
                    status.model_dump(mode="json", exclude_none=True),
                    expected_rv=obj.resource_version,
                    writer="scheduler",
                )
            )
        for uid, (reason, message) in decision.waiting.items():
            obj, wl = waiting_objs[uid]
            if wl.status.phase == WorkloadPhase.QUEUED and wl.status.message == message:
                continue
            status = wl.status.model_copy(
                update={
                    "phase": WorkloadPhase.QUEUED,
                    "reason": reason,
                    "message": message,
                    "queuedAt": wl.status.queuedAt or now,
                }
            )
            writes.append(
                StatusWrite(
                    "Workload",
                    obj.profile,
                    obj.name,
                    status.model_dump(mode="json", exclude_none=True),
                    expected_rv=obj.resource_version,
                    writer="scheduler",
                )
            )
        if writes:
            self.store.update_status_many(writes)
        self.passes += 1
        self.admitted_total += len(decision.admitted)
        self.queue_length = len(decision.waiting)
        if self.on_pass is not None:
            self.on_pass(len(decision.admitted))
        return len(decision.admitted)
