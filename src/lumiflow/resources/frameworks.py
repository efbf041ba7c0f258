"""What each training framework accepts: replica types, defaults, the container that runs.

Kubeflow's operators default and validate their kinds (``SetDefaults_PyTorchJob``, the
validating webhooks, mpi-operator's ``SetDefaults_MPIJob``); these are the same rules, and
they apply to a TrainingJob of that framework whether it arrived as a ``TFJob`` or as a
``TrainingJob`` with ``framework: tensorflow``. Defaults are written into the stored spec,
as Kubeflow's defaulting does, so that ``lumi get -o yaml`` shows what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Framework(StrEnum):
    GENERIC = "generic"
    TENSORFLOW = "tensorflow"
    PYTORCH = "pytorch"
    XGBOOST = "xgboost"
    MPI = "mpi"

    @property
    def rules(self) -> FrameworkRules:
        return RULES[self]

    @property
    def container_name(self) -> str | None:
        """The container Kubeflow's operator runs for this framework (None: the first one)."""
        return self.rules.container


@dataclass(frozen=True)
class FrameworkRules:
    kubeflow_kind: str | None
    #: Kubeflow's replica types, canonical spelling (empty: any name).
    replica_types: tuple[str, ...] = ()
    #: The container that runs (None: the first one of the pod template).
    container: str | None = None
    #: The port every replica gets (Kubeflow adds it to the container when missing).
    port_name: str | None = None
    port: int | None = None
    #: restartPolicy of a replica spec that gives none, by replica type ("*": any other).
    default_restart: dict[str, str] = field(default_factory=lambda: {"*": "Never"})
    #: replicas of a replica spec that gives none, by type (absent: 1).
    default_replicas: dict[str, int] = field(default_factory=dict)
    #: Replica types that must be present.
    required: tuple[str, ...] = ()
    #: Replica types whose replicas must be exactly 1.
    exactly_one: tuple[str, ...] = ()
    #: Replica types of which at most one may be present, with at most one replica.
    one_of: tuple[str, ...] = ()
    #: Replica types whose container may have no command (the operator runs a default).
    command_optional: tuple[str, ...] = ()
    #: Spec fields that belong to this framework only.
    spec_fields: tuple[str, ...] = ()

    def canonical(self, replica_type: str) -> str | None:
        """Kubeflow accepts replica types in any case (``worker``) and stores them camel-cased."""
        for known in self.replica_types:
            if known.lower() == replica_type.lower():
                return known
        return None

    def restart_default(self, replica_type: str) -> str:
        return self.default_restart.get(replica_type, self.default_restart["*"])


RULES: dict[Framework, FrameworkRules] = {
    Framework.GENERIC: FrameworkRules(kubeflow_kind=None),
    Framework.TENSORFLOW: FrameworkRules(
        kubeflow_kind="TFJob",
        replica_types=("Chief", "Master", "PS", "Worker", "Evaluator"),
        container="tensorflow",
        port_name="tfjob-port",
        port=2222,
        one_of=("Chief", "Master"),
        spec_fields=("successPolicy", "enableDynamicWorker"),
    ),
    Framework.PYTORCH: FrameworkRules(
        kubeflow_kind="PyTorchJob",
        replica_types=("Master", "Worker"),
        container="pytorch",
        port_name="pytorchjob-port",
        port=23456,
        default_restart={"*": "OnFailure"},
        exactly_one=("Master",),
        spec_fields=("nprocPerNode", "elasticPolicy"),
    ),
    Framework.XGBOOST: FrameworkRules(
        kubeflow_kind="XGBoostJob",
        replica_types=("Master", "Worker"),
        container="xgboost",
        port_name="xgboostjob-port",
        port=9999,
        required=("Master",),
        exactly_one=("Master",),
    ),
    Framework.MPI: FrameworkRules(
        kubeflow_kind="MPIJob",
        replica_types=("Launcher", "Worker"),
        default_restart={"Launcher": "OnFailure", "*": "Never"},
        default_replicas={"Worker": 0},
        required=("Launcher",),
        exactly_one=("Launcher",),
        command_optional=("Worker",),
        spec_fields=(
            "slotsPerWorker",
            "runLauncherAsWorker",
            "launcherCreationPolicy",
            "mpiImplementation",
            "sshAuthMountPath",
        ),
    ),
}

#: Every framework-specific spec field and the framework it belongs to.
FIELD_OWNER: dict[str, Framework] = {name: fw for fw, rules in RULES.items() for name in rules.spec_fields}


class FieldError(ValueError):
    """A rule broken at ``field`` (relative to the model being validated): pydantic reports
    it as a value error, and lumiflow's error mapping appends ``field`` to the location."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


__all__ = ["FIELD_OWNER", "RULES", "FieldError", "Framework", "FrameworkRules"]
