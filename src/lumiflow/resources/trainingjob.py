"""``TrainingJob``: a (distributed) training run — replica specs plus a run policy.

This is the shape every framework kind reduces to (Kubeflow's TFJob, PyTorchJob, ... are
converted to it in :mod:`lumiflow.resources.kubeflow`). ``framework: generic`` runs the
replicas' commands as they are; ``tensorflow``, ``pytorch``, ``xgboost`` and ``mpi`` follow
their Kubeflow operator's rules (:mod:`lumiflow.resources.frameworks`), and their
framework-specific fields keep Kubeflow's names at the top of the spec (``successPolicy``,
``nprocPerNode``, ``elasticPolicy``, ``slotsPerWorker``, ...).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lumiflow.resources.frameworks import FIELD_OWNER, FieldError, Framework
from lumiflow.resources.meta import Condition, ResourceModel, Strict
from lumiflow.resources.podspec import Container, ContainerPort, PodTemplateSpec

_REPLICA_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,30}$")
MAX_TOTAL_REPLICAS = 1024
#: Kubernetes Job's default: a run policy without backoffLimit is still bounded.
DEFAULT_BACKOFF_LIMIT = 6


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


class RDZVConf(Strict):
    key: str
    value: str


class ElasticPolicy(Strict):
    """PyTorchJob's elastic training (torchrun's rendezvous), Kubeflow's fields."""

    minReplicas: int | None = Field(default=None, ge=1)
    maxReplicas: int | None = Field(default=None, ge=1)
    rdzvBackend: Literal["c10d", "etcd", "etcd-v2"] | None = None
    rdzvPort: int | None = Field(default=None, ge=1, le=65535)
    rdzvHost: str | None = None
    rdzvId: str | None = None
    rdzvConf: list[RDZVConf] | None = None
    standalone: bool | None = None
    nProcPerNode: int | None = Field(default=None, ge=1)
    maxRestarts: int | None = Field(default=None, ge=0)
    metrics: list[dict[str, Any]] | None = None


_NPROC = re.compile(r"^(auto|cpu|gpu|[1-9][0-9]*)$")
#: PyTorchJob's default ``nprocPerNode`` (training-operator's DefaultNprocPerNode).
DEFAULT_NPROC_PER_NODE = "auto"


class TrainingJobSpec(Strict):
    framework: Framework = Framework.GENERIC
    cluster: str | None = Field(default=None, max_length=63)
    replicaSpecs: dict[str, ReplicaSpec] = Field(min_length=1, max_length=16)
    runPolicy: RunPolicy = Field(default_factory=RunPolicy)
    priority: int = Field(0, ge=-1000, le=1000)
    # TensorFlow (TFJob)
    successPolicy: Literal["", "AllWorkers"] | None = None
    enableDynamicWorker: bool | None = None
    # PyTorch (PyTorchJob)
    nprocPerNode: str | None = None
    elasticPolicy: ElasticPolicy | None = None
    # MPI (MPIJob, v2beta1)
    slotsPerWorker: int | None = Field(default=None, ge=1, le=4096)
    runLauncherAsWorker: bool | None = None
    launcherCreationPolicy: Literal["AtStartup", "WaitForWorkersReady"] | None = None
    mpiImplementation: Literal["OpenMPI", "Intel", "MPICH"] | None = None
    sshAuthMountPath: str | None = None

    @field_validator("nprocPerNode", mode="before")
    @classmethod
    def _nproc(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _NPROC.match(value):
            raise ValueError(f"nprocPerNode must be auto, cpu, gpu or a positive integer, got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _framework_defaults(cls, data: Any) -> Any:
        """Kubeflow's defaulting that must happen before validation: replica types in any
        case become camel-cased (``worker`` → ``Worker``), and a replica spec without
        ``restartPolicy`` or ``replicas`` gets the framework's default."""
        if not isinstance(data, dict) or not isinstance(data.get("replicaSpecs"), dict):
            return data
        try:
            rules = Framework(data.get("framework", Framework.GENERIC)).rules
        except ValueError:
            return data  # the field validator names the wrong framework
        specs: dict[str, Any] = {}
        for name, spec in data["replicaSpecs"].items():
            canonical = rules.canonical(str(name)) or str(name)
            if canonical in specs:
                raise FieldError(f"replicaSpecs.{name}", f"replica type {canonical} is given twice")
            if isinstance(spec, dict):
                spec = dict(spec)
                spec.setdefault("restartPolicy", rules.restart_default(canonical))
                if canonical in rules.default_replicas:
                    spec.setdefault("replicas", rules.default_replicas[canonical])
            specs[canonical] = spec
        return {**data, "replicaSpecs": specs}

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

    @property
    def total_replicas(self) -> int:
        return sum(spec.replicas for spec in self.replicaSpecs.values())

    @model_validator(mode="after")
    def _framework_rules(self) -> TrainingJobSpec:
        """The framework's replica types, its container and its port (Kubeflow's webhooks
        and defaulting), and fields that belong to another framework refused."""
        fw = self.framework
        rules = fw.rules
        for name, owner in FIELD_OWNER.items():
            if owner is not fw and getattr(self, name) is not None:
                raise FieldError(name, f"applies to framework {owner.value} only (this job is {fw.value})")
        if rules.replica_types:
            kind = rules.kubeflow_kind
            for name in self.replicaSpecs:
                if name not in rules.replica_types:
                    raise FieldError(
                        f"replicaSpecs.{name}",
                        f"replica type {name!r} is not one of {kind}'s: {', '.join(rules.replica_types)}",
                    )
            for name in rules.required:
                if name not in self.replicaSpecs:
                    raise FieldError(f"replicaSpecs.{name}", f"a {kind} needs a {name} replica spec")
            for name in rules.exactly_one:
                if name in self.replicaSpecs and self.replicaSpecs[name].replicas != 1:
                    raise FieldError(f"replicaSpecs.{name}.replicas", f"must be 1 for a {kind}'s {name}")
            present = [n for n in rules.one_of if n in self.replicaSpecs]
            if len(present) > 1:
                raise FieldError(
                    f"replicaSpecs.{present[1]}", f"a {kind} has at most one of {' or '.join(rules.one_of)}"
                )
            for name in present:
                if self.replicaSpecs[name].replicas > 1:
                    raise FieldError(f"replicaSpecs.{name}.replicas", f"a {kind} has at most one {name}")
        for name, spec in self.replicaSpecs.items():
            container = _framework_container(name, spec, fw)
            if rules.port_name is not None and rules.port is not None:
                _default_port(name, container, rules.port_name, rules.port)
        self._framework_fields()
        sched = self.runPolicy.schedulingPolicy
        if sched is not None and sched.minAvailable is not None and sched.minAvailable > self.total_replicas:
            raise FieldError(
                "runPolicy.schedulingPolicy.minAvailable",
                f"is {sched.minAvailable}, more than the job's {self.total_replicas} replicas",
            )
        return self

    def _framework_fields(self) -> None:
        fw = self.framework
        if fw is Framework.PYTORCH:
            elastic = self.elasticPolicy
            if elastic is not None:
                if elastic.nProcPerNode is not None and self.nprocPerNode is not None:
                    raise FieldError(
                        "elasticPolicy.nProcPerNode", "must not be used with nprocPerNode (deprecated)"
                    )
                if elastic.minReplicas is None and elastic.maxReplicas is None:
                    worker = self.replicaSpecs.get("Worker")
                    if worker is None:
                        raise FieldError("elasticPolicy", "needs a Worker replica spec (or min/maxReplicas)")
                    elastic.minReplicas = elastic.maxReplicas = worker.replicas
                elif elastic.minReplicas is None:
                    elastic.minReplicas = elastic.maxReplicas
                elif elastic.maxReplicas is None:
                    elastic.maxReplicas = elastic.minReplicas
                assert elastic.minReplicas is not None
                assert elastic.maxReplicas is not None
                if elastic.minReplicas > elastic.maxReplicas:
                    raise FieldError("elasticPolicy.minReplicas", "must not be larger than maxReplicas")
                if elastic.rdzvPort is None and "Worker" not in self.replicaSpecs:
                    raise FieldError("elasticPolicy.rdzvPort", "is needed when there is no Worker replica")
            if self.nprocPerNode is None and (elastic is None or elastic.nProcPerNode is None):
                self.nprocPerNode = DEFAULT_NPROC_PER_NODE
        elif fw is Framework.MPI:
            if self.slotsPerWorker is None:
                self.slotsPerWorker = 1
            if self.runLauncherAsWorker is None:
                self.runLauncherAsWorker = False
            if self.launcherCreationPolicy is None:
                self.launcherCreationPolicy = "AtStartup"
            if self.mpiImplementation is None:
                self.mpiImplementation = "OpenMPI"

    @model_validator(mode="after")
    def _commands(self) -> TrainingJobSpec:
        optional = self.framework.rules.command_optional
        for rtype, spec in self.replicaSpecs.items():
            container = main_container(spec, self.framework)
            if not container.command and not container.args and rtype not in optional:
                raise FieldError(
                    f"replicaSpecs.{rtype}",
                    f"container {container.name!r} has no command: an image's entrypoint cannot run "
                    "on the local cluster; give command (and args)",
                )
            for env in container.env:
                source = env.valueFrom
                if source is not None and (source.secretKeyRef or source.configMapKeyRef):
                    raise FieldError(
                        f"replicaSpecs.{rtype}",
                        f"env {env.name}: secretKeyRef/configMapKeyRef are not available on lumiflow's "
                        "clusters yet; use value",
                    )
        return self


def _framework_container(rtype: str, spec: ReplicaSpec, framework: Framework) -> Container:
    wanted = framework.container_name
    containers = spec.template.spec.containers
    if wanted is None:
        return containers[0]
    for container in containers:
        if container.name == wanted:
            return container
    names = ", ".join(c.name for c in containers)
    raise FieldError(
        f"replicaSpecs.{rtype}.template.spec.containers",
        f"needs a container named {wanted!r} (it is the one a {framework.rules.kubeflow_kind} runs); "
        f"found: {names}",
    )


def _default_port(rtype: str, container: Container, name: str, number: int) -> None:
    """Kubeflow's setDefaultPort: the framework's port is added when the container lacks it."""
    if any(p.name == name for p in container.ports):
        return
    for port in container.ports:
        if port.containerPort == number:
            raise FieldError(
                f"replicaSpecs.{rtype}.template.spec.containers",
                f"port {number} is declared as {port.name or 'unnamed'!r}; name it {name!r} "
                "(the framework's port) or use another number",
            )
    container.ports.append(ContainerPort(name=name, containerPort=number))


def main_container(spec: ReplicaSpec, framework: Framework) -> Container:
    """The container that runs: the framework's named one (validated to exist), else the first."""
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


def check_update(old: dict[str, Any], new: dict[str, Any], _status: dict[str, Any]) -> None:
    """Raises ValueError naming the first immutable field that changed."""
    for key in set(old) | set(new):
        if key == "runPolicy":
            old_rp, new_rp = dict(old.get(key) or {}), dict(new.get(key) or {})
            for sub in set(old_rp) | set(new_rp):
                if sub not in MUTABLE_RUN_POLICY and old_rp.get(sub) != new_rp.get(sub):
                    raise ValueError(f"spec.runPolicy.{sub}")
        elif key != "priority" and old.get(key) != new.get(key):
            raise ValueError(f"spec.{key}")
