"""The interface of a framework's logic: what its Kubeflow operator adds to a replica, and
when it calls a job successful.

Framework modules know Kubeflow and nothing of clusters: addresses are written as the
cluster interface's placeholders (``${lumiflow:host:worker-0}``,
``${lumiflow:port:worker-0:tfjob-port}``), which the backend that places the gang resolves to
each replica's real host and port (127.0.0.1 and a free port on the local cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lumiflow.clusters import host_placeholder, port_placeholder
from lumiflow.resources.frameworks import Framework
from lumiflow.resources.trainingjob import ReplicaState, RestartPolicy, TrainingJob


@dataclass(frozen=True)
class JobContext:
    name: str
    profile: str
    uid: str
    #: The job's directory under the platform home (checkpoints, MPI hostfile); None when
    #: the platform was set up without one.
    job_dir: Path | None = None


def replica_name(replica_type: str, index: int) -> str:
    return f"{replica_type.lower()}-{index}"


def host(replica_type: str, index: int) -> str:
    return host_placeholder(replica_name(replica_type, index))


def port(replica_type: str, index: int, name: str) -> str:
    return port_placeholder(replica_name(replica_type, index), name)


def replicas_of(job: TrainingJob, replica_type: str) -> int:
    spec = job.spec.replicaSpecs.get(replica_type)
    return spec.replicas if spec is not None else 0


def succeeded_replica(job: TrainingJob, replica: ReplicaState) -> bool:
    """Ended with exit 0 and stays ended (under ``Always`` the pod would be restarted)."""
    spec = job.spec.replicaSpecs.get(replica.type)
    if spec is None or spec.restartPolicy is RestartPolicy.ALWAYS:
        return False
    return replica.state == "Succeeded"


def all_succeeded(job: TrainingJob, replicas: Sequence[ReplicaState], replica_type: str) -> bool:
    """Every replica of ``replica_type`` succeeded (Kubeflow's ``expected == 0``)."""
    want = replicas_of(job, replica_type)
    done = sum(1 for r in replicas if r.type == replica_type and succeeded_replica(job, r))
    return want > 0 and done >= want


class FrameworkLogic:
    """Defaults are a generic job's: no variables, the command as it is, success when every
    replica succeeded."""

    framework: ClassVar[Framework] = Framework.GENERIC

    def environment(self, job: TrainingJob, replica_type: str, index: int, ctx: JobContext) -> dict[str, str]:
        """Variables the operator sets for this replica. They come after the container's own
        env (Kubeflow appends them), so they win over a user's variable of the same name."""
        return {}

    def command(
        self, job: TrainingJob, replica_type: str, index: int, argv: list[str], ctx: JobContext
    ) -> list[str]:
        return argv

    def succeeded(self, job: TrainingJob, replicas: Sequence[ReplicaState]) -> bool:
        """Whether the job has succeeded by the framework's rule, given the replicas of the
        current attempt; replicas still running then are stopped by the controller."""
        return (
            bool(replicas)
            and all(succeeded_replica(job, r) for r in replicas)
            and len(replicas) == job.spec.total_replicas
        )
