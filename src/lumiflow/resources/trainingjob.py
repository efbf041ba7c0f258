"""``TrainingJob``: a (distributed) training run — replica specs plus a run policy.

This is the shape every framework kind reduces to (Kubeflow's TFJob, PyTorchJob, ... are
converted to it). ``framework: generic`` runs the replicas' commands as they are.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lumiflow.resources.meta import Condition, ResourceModel, Strict
from lumiflow.resources.podspec import Container, PodTemplateSpec

_REPLICA_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}$")
MAX_TOTAL_REPLICAS = 1024
#: Kubernetes Job's default: a run policy without backoffLimit is still bounded.
DEFAULT_BACKOFF_LIMIT = 6


class Framework(StrEnum):
    GENERIC = "generic"

    @property
    def container_name(self) -> str | None:
        """The container Kubeflow's operator runs for this framework (None: the first one)."""
        return None


class RestartPolicy(StrEnum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"
    EXIT_CODE = "ExitCode"

    def restarts(self, exit_code: int) -> bool:
        """Whether a replica that ended with ``exit_code`` is restarted (before backoffLimit)."""
        if self is RestartPolicy.ALWAYS:
            return True
        if self is RestartPolicy.ON_FAILURE:
            return exit_code != 0
        if self is RestartPolicy.EXIT_CODE:
            # Kubeflow: 128-255 (killed by a signal: preemption, OOM) may be retried;
            # 1-127 are the program's own failures and are permanent.
            return 128 <= exit_code <= 255
        return False


class JobPhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    def is_terminal(self) -> bool:
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED)


class ConditionType(StrEnum):
    CREATED = "Created"
    QUEUED = "Queued"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    SUSPENDED = "Suspended"
    FAILED = "Failed"


class ReplicaSpec(Strict):
    replicas: int = Field(1, ge=0, le=MAX_TOTAL_REPLICAS)
    restartPolicy: RestartPolicy = RestartPolicy.NEVER
    template: PodTemplateSpec

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError(f"replicas must be 0 or more, got {value}")
        return value


class SchedulingPolicy(Strict):
    minAvailable: int | None = Field(default=None, ge=1)
    queue: str | None = None
    priorityClass: str | None = None
    scheduleTimeoutSeconds: int | None = Field(default=None, ge=1)


class RunPolicy(Strict):
    cleanPodPolicy: Literal["All", "Running", "None"] | None = None
    ttlSecondsAfterFinished: int | None = Field(default=None, ge=0)
    activeDeadlineSeconds: int | None = Field(default=None, ge=1)
    backoffLimit: int | None = Field(default=None, ge=0, le=10_000)
    schedulingPolicy: SchedulingPolicy | None = None
    suspend: bool = False
    managedBy: str | None = None

    @property
    def effective_backoff_limit(self) -> int:
        return DEFAULT_BACKOFF_LIMIT if self.backoffLimit is None else self.backoffLimit


class TrainingJobSpec(Strict):
    framework: Framework = Framework.GENERIC
    cluster: str | None = Field(default=None, max_length=63)
    replicaSpecs: dict[str, ReplicaSpec] = Field(min_length=1, max_length=16)
    runPolicy: RunPolicy = Field(default_factory=RunPolicy)
    priority: int = Field(0, ge=-1000, le=1000)

    @field_validator("replicaSpecs")
    @classmethod
    def _types(cls, value: dict[str, ReplicaSpec]) -> dict[str, ReplicaSpec]:
        lowered: set[str] = set()
        for name in value:
            if not _REPLICA_TYPE.match(name):
                raise ValueError(
                    f"replica type {name[:40]!r} must start with a letter and hold only letters and digits"
                )
            if name.lower() in lowered:
                raise ValueError(f"replica types {name!r} differ only in case")
            lowered.add(name.lower())
        total = sum(spec.replicas for spec in value.values())
        if total == 0:
            raise ValueError("the job has no replicas: every replicaSpecs entry has replicas: 0")
        if total > MAX_TOTAL_REPLICAS:
            raise ValueError(f"the job asks for {total} replicas, more than {MAX_TOTAL_REPLICAS}")
        return value

    @model_validator(mode="after")
    def _commands(self) -> TrainingJobSpec:
        for rtype, spec in self.replicaSpecs.items():
            container = main_container(spec, self.framework)
            if not container.command and not container.args:
                raise ValueError(
                    f"replicaSpecs.{rtype}: container {container.name!r} has no command: an image's "
                    "entrypoint cannot run on the local cluster; give command (and args)"
                )
            for env in container.env:
                source = env.valueFrom
                if source is not None and (source.secretKeyRef or source.configMapKeyRef):
                    raise ValueError(
                        f"replicaSpecs.{rtype}: env {env.name}: secretKeyRef/configMapKeyRef are not "
                        "available on lumiflow's clusters yet; use value"
                    )
        return self


def main_container(spec: ReplicaSpec, framework: Framework) -> Container:
    """The container that runs: the framework's named one, else the first."""
    wanted = framework.container_name
    if wanted:
        for container in spec.template.spec.containers:
            if container.name == wanted:
                return container
    return spec.template.spec.containers[0]


class ReplicaTypeStatus(Strict):
    active: int = 0
    succeeded: int = 0
    failed: int = 0


class ReplicaState(Strict):
    name: str
    type: str
    index: int
    state: str = "Pending"
    exitCode: int | None = None
    reason: str | None = None
    message: str | None = None
    host: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    startTime: str | None = None
    finishTime: str | None = None


class TrainingJobStatus(Strict):
    phase: JobPhase = JobPhase.PENDING
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    replicaStatuses: dict[str, ReplicaTypeStatus] = Field(default_factory=dict)
    replicas: list[ReplicaState] = Field(default_factory=list)
    restartCount: int = 0
    attempt: int = 0
    cluster: str | None = None
    startTime: str | None = None
    completionTime: str | None = None
    lastReconcileTime: str | None = None
    observedGeneration: int | None = None
    nextRestartTime: str | None = None


class TrainingJob(ResourceModel):
    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = "TrainingJob"

    spec: TrainingJobSpec
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)


#: Spec fields a user may change after creation; everything else is immutable.
MUTABLE_RUN_POLICY = ("suspend", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit")


def check_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raises ValueError naming the first immutable field that changed."""
    for key in set(old) | set(new):
        if key == "runPolicy":
            old_rp, new_rp = dict(old.get(key) or {}), dict(new.get(key) or {})
            for sub in set(old_rp) | set(new_rp):
                if sub not in MUTABLE_RUN_POLICY and old_rp.get(sub) != new_rp.get(sub):
                    raise ValueError(f"spec.runPolicy.{sub}")
        elif key != "priority" and old.get(key) != new.get(key):
            raise ValueError(f"spec.{key}")
