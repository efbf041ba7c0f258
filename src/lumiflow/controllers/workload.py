"""The Workload controller: launches admitted gangs, watches them, stops and cleans up.

States it drives (the scheduler drives Pending/Queued → Admitted):

* Admitted → launch on the assigned cluster (idempotent) → Running once every replica
  started; a new ``spec.attempt`` on an active Workload stops the old gang and launches the
  new one, keeping the admission (resources stay reserved across a gang restart);
  ``spec.startAfter`` delays a restart (backoff) without giving the resources back.
* Running → every replica ended → Succeeded (all exit 0) or Failed.
* ``spec.stopped`` → gang stopped, phase Stopped, resources released, record kept.
* A new attempt on a finished Workload goes back to the queue.
* Deleting → gang stopped and its files removed, then the finalizer is dropped.
* An owner that no longer exists → the Workload is deleted (garbage collection).

On start it re-attaches to every active Workload, so a server killed with SIGKILL picks
up its replicas (and the outcomes of those that ended meanwhile) where it left them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lumiflow.clusters.base import ClusterBackend, GangSpec, GangStatus, ReplicaLaunch, ReplicaPhase
from lumiflow.clusters.set import ClusterSet
from lumiflow.common.errors import ClusterError, LumiflowError, NotFound
from lumiflow.common.timeutil import parse_rfc3339, to_rfc3339, utcnow
from lumiflow.controllers.manager import DONE, Controller, Result
from lumiflow.resources.workload import (
    ACTIVE_PHASES,
    WORKLOAD_FINALIZER,
    Workload,
    WorkloadPhase,
    WorkloadReplicaStatus,
    WorkloadStatus,
)
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import ObjectRef, StoredObject

log = logging.getLogger(__name__)

#: While replicas are starting or stopping, look again this often (exits also notify).
POLL_SECONDS = 0.25


def _replica_status(r: Any) -> WorkloadReplicaStatus:
    return WorkloadReplicaStatus(
        name=r.name,
        state=r.phase.value,
        exitCode=r.exit_code,
        reason=r.reason,
        message=r.message,
        host=r.host,
        ports=dict(r.ports),
        gpus=list(r.gpus),
        pid=r.pid,
        startTime=to_rfc3339(r.started_at),
        finishTime=to_rfc3339(r.finished_at),
    )


class WorkloadController(Controller):
    kind = "Workload"

    def __init__(
        self, store: ResourceStore, *, clusters: ClusterSet, wake_scheduler: Callable[[], None]
    ) -> None:
        super().__init__(store)
        self.clusters = clusters
        self.wake_scheduler = wake_scheduler
        self._uid_to_ref: dict[str, ObjectRef] = {}
        self._uid_lock = threading.Lock()

    # --- wiring ------------------------------------------------------------------------

    def on_backend_change(self, cluster: str, gang_id: str) -> None:
        """Called by a backend (any thread) when a replica of ``gang_id`` may have changed."""
        with self._uid_lock:
            ref = self._uid_to_ref.get(gang_id)
        if ref is None:
            try:
                ref = self.store.get_by_uid(gang_id).ref
            except LumiflowError:
                return
        self.queue.add(ref)

    def on_start(self) -> None:
        for obj in self.store.list("Workload", phases=ACTIVE_PHASES).items:
            try:
                wl = Workload.parse(obj.to_manifest())
                if wl.status.cluster:
                    self.clusters.get(wl.status.cluster).reattach(obj.uid, wl.status.attempt)
            except LumiflowError as exc:
                log.warning("re-attach of workload %s failed: %s", obj.ref, exc.message)
            self.queue.add(obj.ref)

    def keys_for_resync(self) -> Any:
        # Finished workloads need nothing periodically; active and waiting ones do.
        for obj in self.store.list("Workload", phases=("", "Pending", "Queued", *ACTIVE_PHASES)).items:
            yield obj.ref
        for obj in self.store.list("Workload").items:
            if obj.deletion_timestamp is not None:
                yield obj.ref

    # --- reconcile ---------------------------------------------------------------------

    def reconcile(self, key: ObjectRef) -> Result:
        try:
            obj = self.store.get(key.kind, key.profile, key.name)
        except NotFound:
            return DONE
        with self._uid_lock:
            self._uid_to_ref[obj.uid] = key
        wl = Workload.parse(obj.to_manifest())
        status = wl.status.model_copy(deep=True)
        backend = self._backend(status.cluster)

        if obj.deletion_timestamp is not None:
            return self._finalize(obj, backend)
        if obj.owner_uid and not self._owner_exists(obj.owner_uid):
            self.store.request_delete(obj.kind, obj.profile, obj.name)
            return DONE
        if WORKLOAD_FINALIZER not in obj.finalizers:
            self.store.update(obj.copy(finalizers=[*obj.finalizers, WORKLOAD_FINALIZER]))
            return DONE  # the write wakes us again

        phase = status.phase
        result = DONE
        if wl.spec.stopped:
            result = self._stop(obj, wl, status, backend)
        elif phase.is_terminal():
            if wl.spec.attempt != status.attempt or phase == WorkloadPhase.STOPPED:
                self._requeue_new_attempt(status, wl.spec.attempt)
        elif phase.is_waiting():
            if phase == WorkloadPhase.PENDING:
                self.wake_scheduler()
            if wl.spec.attempt != status.attempt:
                status.attempt = wl.spec.attempt
        else:  # Admitted or Running
            assert backend is not None or status.cluster is None
            if backend is None:
                self._fail(status, "UnknownCluster", f"cluster {status.cluster!r} is not configured")
            else:
                result = self._drive(obj, wl, status, backend)
        self._write(obj, wl.status, status)
        return result

    # --- steps -------------------------------------------------------------------------

    def _backend(self, cluster: str | None) -> ClusterBackend | None:
        if not cluster:
            return None
        try:
            return self.clusters.get(cluster)
        except NotFound:
            return None

    def _owner_exists(self, uid: str) -> bool:
        try:
            self.store.get_by_uid(uid)
        except NotFound:
            return False
        return True

    def _finalize(self, obj: StoredObject, backend: ClusterBackend | None) -> Result:
        if backend is not None:
            backend.release(obj.uid)
        if WORKLOAD_FINALIZER in obj.finalizers:
            self.store.update(obj.copy(finalizers=[f for f in obj.finalizers if f != WORKLOAD_FINALIZER]))
        with self._uid_lock:
            self._uid_to_ref.pop(obj.uid, None)
        self.wake_scheduler()
        return DONE

    def _requeue_new_attempt(self, status: WorkloadStatus, attempt: int) -> None:
        status.phase = WorkloadPhase.PENDING
        status.attempt = attempt
        status.replicas = []
        status.reason = None
        status.message = None
        status.admittedAt = None
        status.startTime = None
        status.completionTime = None
        self.wake_scheduler()

    def _fail(self, status: WorkloadStatus, reason: str, message: str) -> None:
        status.phase = WorkloadPhase.FAILED
        status.reason = reason
        status.message = message
        status.completionTime = status.completionTime or to_rfc3339(utcnow())
        self.wake_scheduler()

    def _gang(self, obj: StoredObject, wl: Workload, attempt: int) -> GangSpec:
        owner_name = wl.spec.owner.name if wl.spec.owner else obj.name
        replicas = tuple(
            ReplicaLaunch(
                name=r.name,
                argv=tuple(r.command),
                env={**r.env, "LUMIFLOW_ATTEMPT": str(attempt)},
                working_dir=r.workingDir,
                source_dir=r.sourceDir,
                request=r.resources.vector(),
                ports=tuple(r.ports),
            )
            for r in wl.spec.replicas
        )
        return GangSpec(
            gang_id=obj.uid,
            attempt=attempt,
            display_name=owner_name,
            profile=obj.profile,
            replicas=replicas,
            grace_seconds=wl.spec.gracePeriodSeconds,
        )

    def _observe(self, status: WorkloadStatus, gang: GangStatus, names: list[str]) -> None:
        status.replicas = [
            _replica_status(gang.replicas[n]) if n in gang.replicas else WorkloadReplicaStatus(name=n)
            for n in names
        ]

    def _drive(
        self, obj: StoredObject, wl: Workload, status: WorkloadStatus, backend: ClusterBackend
    ) -> Result:
        names = [r.name for r in wl.spec.replicas]
        if wl.spec.attempt != status.attempt:
            # Gang restart: stop the old attempt, then launch the new one on the same admission.
            old = backend.status(obj.uid, status.attempt)
            if old.replicas and not old.all_terminal:
                backend.stop(obj.uid, status.attempt)
                self._observe(status, old, names)
                return Result(requeue_after=POLL_SECONDS)
            status.attempt = wl.spec.attempt
            status.phase = WorkloadPhase.ADMITTED
            status.replicas = []
            status.startTime = None
        if status.phase == WorkloadPhase.ADMITTED:
            start_after = parse_rfc3339(wl.spec.startAfter) if wl.spec.startAfter else None
            now = utcnow()
            if start_after is not None and start_after > now:
                status.message = f"restarting at {to_rfc3339(start_after)} (backoff)"
                return Result(requeue_after=(start_after - now).total_seconds())
            try:
                gang = backend.launch(self._gang(obj, wl, status.attempt))
            except ClusterError as exc:
                self._fail(status, "LaunchFailed", exc.message)
                return DONE
            status.message = None
        else:
            gang = backend.status(obj.uid, status.attempt)
            if not gang.replicas:
                # Launch records are missing (deleted by hand?): launch again, idempotently.
                try:
                    gang = backend.launch(self._gang(obj, wl, status.attempt))
                except ClusterError as exc:
                    self._fail(status, "LaunchFailed", exc.message)
                    return DONE
        self._observe(status, gang, names)
        if gang.replicas and gang.all_terminal:
            failed = [r for r in gang.replicas.values() if r.phase == ReplicaPhase.FAILED]
            status.phase = WorkloadPhase.FAILED if failed else WorkloadPhase.SUCCEEDED
            status.completionTime = to_rfc3339(_latest(gang) or utcnow())
            if failed:
                first = failed[0]
                status.reason = first.reason or "Error"
                status.message = f"{first.name}: {first.message or f'exited with code {first.exit_code}'}"
            self.wake_scheduler()
            return DONE
        if gang.all_running_or_done and len(gang.replicas) == len(names):
            if status.phase != WorkloadPhase.RUNNING:
                status.phase = WorkloadPhase.RUNNING
                status.startTime = status.startTime or to_rfc3339(_earliest(gang) or utcnow())
            return DONE
        return Result(requeue_after=POLL_SECONDS)

    def _stop(
        self, obj: StoredObject, wl: Workload, status: WorkloadStatus, backend: ClusterBackend | None
    ) -> Result:
        phase = status.phase
        if phase.is_terminal():
            return DONE
        if phase.is_waiting() or backend is None:
            status.phase = WorkloadPhase.STOPPED
            status.reason, status.message = "Stopped", "stopped before it was admitted"
            status.completionTime = to_rfc3339(utcnow())
            self.wake_scheduler()
            return DONE
        gang = backend.status(obj.uid, status.attempt)
        self._observe(status, gang, [r.name for r in wl.spec.replicas])
        if gang.replicas and not gang.all_terminal:
            backend.stop(obj.uid, status.attempt)
            return Result(requeue_after=POLL_SECONDS)
        status.phase = WorkloadPhase.STOPPED
        status.reason, status.message = "Stopped", "stopped on request"
        status.completionTime = to_rfc3339(_latest(gang) or utcnow())
        self.wake_scheduler()
        return DONE

    def _write(self, obj: StoredObject, before: WorkloadStatus, after: WorkloadStatus) -> None:
        old = before.model_dump(mode="json", exclude_none=True)
        new = after.model_dump(mode="json", exclude_none=True)
        if old != new:
            self.store.update_status(
                obj.kind, obj.profile, obj.name, new, expected_rv=obj.resource_version, writer=self.kind
            )


def _earliest(gang: GangStatus) -> datetime | None:
    times = [r.started_at for r in gang.replicas.values() if r.started_at is not None]
    return min(times) if times else None


def _latest(gang: GangStatus) -> datetime | None:
    times = [r.finished_at for r in gang.replicas.values() if r.finished_at is not None]
    return max(times) if times else None
