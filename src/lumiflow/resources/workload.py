"""``Workload``: the one execution primitive — a gang of replicas placed together.

Controllers create Workloads (a TrainingJob's replicas, later a trial, a pipeline step, a
model server); the scheduler admits them against quota and capacity; the Workload
controller launches them on a cluster backend. Users can read Workloads but not write them.

Restarts are attempts: the owner bumps ``spec.attempt`` and the gang is stopped and started
again as a whole. ``spec.stopped`` stops the gang and gives its resources back while the
record (and its logs) stays.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from lumiflow.common.quantity import Resources
from lumiflow.resources.meta import ResourceModel, Strict

OWNER_FINALIZER = "lumiflow.dev/workloads"
WORKLOAD_FINALIZER = "lumiflow.dev/stop-replicas"
#: Reasons a Workload is queued with that no amount of waiting cures (the scheduler's).
NEVER_FITS_REASONS = frozenset({"UnknownCluster", "Unschedulable"})


class WorkloadPhase(StrEnum):
    PENDING = "Pending"  # created, not yet seen by the scheduler
    QUEUED = "Queued"  # waiting for quota or capacity
    ADMITTED = "Admitted"  # resources reserved on a cluster; launching
    RUNNING = "Running"  # every replica started
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"

    def is_terminal(self) -> bool:
        return self in (WorkloadPhase.SUCCEEDED, WorkloadPhase.FAILED, WorkloadPhase.STOPPED)

    def holds_resources(self) -> bool:
        return self in (WorkloadPhase.ADMITTED, WorkloadPhase.RUNNING)

    def is_waiting(self) -> bool:
        return self in (WorkloadPhase.PENDING, WorkloadPhase.QUEUED)


ACTIVE_PHASES = tuple(p.value for p in WorkloadPhase if p.holds_resources())
WAITING_PHASES = tuple(p.value for p in WorkloadPhase if p.is_waiting())


class ReplicaResources(Strict):
    cpu: float = Field(0.0, ge=0)
    memory: int = Field(0, ge=0)
    gpu: int = Field(0, ge=0)

    def vector(self) -> Resources:
        return Resources(cpu=self.cpu, memory=self.memory, gpu=self.gpu)


class WorkloadReplica(Strict):
    name: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    workingDir: str | None = None
    #: Where the manifest was read from: the working directory when workingDir is unset and
    #: the folder exists where the replica runs (the local cluster: the same machine).
    sourceDir: str | None = None
    resources: ReplicaResources = Field(default_factory=ReplicaResources)
    ports: list[str] = Field(default_factory=list)


class WorkloadOwner(Strict):
    kind: str
    name: str


class WorkloadSpec(Strict):
    owner: WorkloadOwner | None = None
    cluster: str | None = None
    attempt: int = Field(0, ge=0)
    stopped: bool = False
    #: RFC 3339 time before which a new attempt must not start (restart backoff).
    startAfter: str | None = None
    priority: int = 0
    gracePeriodSeconds: float = Field(30.0, ge=0)
    replicas: list[WorkloadReplica] = Field(min_length=1)

    def request(self) -> Resources:
        total = Resources(workloads=1)
        for r in self.replicas:
            total = total + r.resources.vector()
        return total


class WorkloadReplicaStatus(Strict):
    name: str
    state: str = "Pending"
    exitCode: int | None = None
    reason: str | None = None
    message: str | None = None
    host: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    gpus: list[str] = Field(default_factory=list)
    pid: int | None = None
    startTime: str | None = None
    finishTime: str | None = None


class WorkloadStatus(Strict):
    phase: WorkloadPhase = WorkloadPhase.PENDING
    reason: str | None = None
    message: str | None = None
    cluster: str | None = None
    attempt: int = 0
    queuedAt: str | None = None
    admittedAt: str | None = None
    startTime: str | None = None
    completionTime: str | None = None
    replicas: list[WorkloadReplicaStatus] = Field(default_factory=list)


class Workload(ResourceModel):
    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = "Workload"

    spec: WorkloadSpec
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)

    def status_dict(self) -> dict[str, Any]:
        return self.status.model_dump(mode="json", exclude_none=True)
