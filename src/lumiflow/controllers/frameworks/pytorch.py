"""PyTorchJob: torch.distributed's and torchrun's variables, as training-operator sets them.

With a Master replica every replica gets ``MASTER_ADDR``/``MASTER_PORT`` (and their
``PET_`` twins, which torchrun reads) of master-0, ``WORLD_SIZE`` = replicas ×
``nprocPerNode`` (1 when it is not a number), ``RANK``/``PET_NODE_RANK`` (master 0, worker
i → i+1) and ``PET_NPROC_PER_NODE``. ``PET_NNODES`` is the number of replicas, or
``min:max`` with ``elasticPolicy``, which also sets the rendezvous (``PET_RDZV_ENDPOINT`` at
worker-0 unless ``rdzvHost``/``rdzvPort`` say otherwise, ``PET_RDZV_BACKEND`` c10d by
default, ``PET_MAX_RESTARTS``, ...). A job without a Master (Kubeflow allows it) gets no
master variables: torchrun's rendezvous is the user's to configure.

Success: with a Master, when it succeeded; otherwise when every worker succeeded, or, with
``elasticPolicy``, when any worker did.
"""

from __future__ import annotations

from collections.abc import Sequence

from lumiflow.controllers.frameworks.base import (
    FrameworkLogic,
    JobContext,
    all_succeeded,
    host,
    port,
    replicas_of,
    succeeded_replica,
)
from lumiflow.resources.frameworks import Framework
from lumiflow.resources.trainingjob import ReplicaState, TrainingJob

PORT_NAME = "pytorchjob-port"


def nproc_per_node_int(job: TrainingJob) -> int:
    """getNprocPerNodeInt: the number, or 1 for auto/cpu/gpu or unset."""
    value = job.spec.nprocPerNode
    return int(value) if value is not None and value.isdigit() else 1


class PyTorch(FrameworkLogic):
    framework = Framework.PYTORCH

    def environment(self, job: TrainingJob, replica_type: str, index: int, ctx: JobContext) -> dict[str, str]:
        spec = job.spec
        total = spec.total_replicas
        env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
        if replicas_of(job, "Master") > 0:
            rank = index + 1 if replica_type == "Worker" else index
            master_port = port("Master", 0, PORT_NAME)
            master_addr = host("Master", 0)
            env.update(
                {
                    "MASTER_PORT": master_port,
                    "PET_MASTER_PORT": master_port,
                    "MASTER_ADDR": master_addr,
                    "PET_MASTER_ADDR": master_addr,
                    "WORLD_SIZE": str(total * nproc_per_node_int(job)),
                    "RANK": str(rank),
                    "PET_NODE_RANK": str(rank),
                }
            )
            if spec.nprocPerNode is not None:
                env["PET_NPROC_PER_NODE"] = spec.nprocPerNode
        elastic = spec.elasticPolicy
        if elastic is None:
            env["PET_NNODES"] = str(total)
            return env
        rdzv_host = elastic.rdzvHost if elastic.rdzvHost is not None else host("Worker", 0)
        rdzv_port = str(elastic.rdzvPort) if elastic.rdzvPort is not None else port("Worker", 0, PORT_NAME)
        env["PET_RDZV_ENDPOINT"] = f"{rdzv_host}:{rdzv_port}"
        env["PET_RDZV_BACKEND"] = elastic.rdzvBackend or "c10d"
        env["PET_NNODES"] = f"{elastic.minReplicas}:{elastic.maxReplicas}"
        if elastic.maxRestarts is not None:
            env["PET_MAX_RESTARTS"] = str(elastic.maxRestarts)
        if elastic.nProcPerNode is not None:
            env["PET_NPROC_PER_NODE"] = str(elastic.nProcPerNode)
        if elastic.rdzvId is not None:
            env["PET_RDZV_ID"] = elastic.rdzvId
        if elastic.rdzvConf:
            env["PET_RDZV_CONF"] = ",".join(f"{c.key}={c.value}" for c in elastic.rdzvConf)
        if elastic.standalone:
            env["PET_STANDALONE"] = ""
        return env

    def succeeded(self, job: TrainingJob, replicas: Sequence[ReplicaState]) -> bool:
        if replicas_of(job, "Master") > 0:
            return all_succeeded(job, replicas, "Master")
        if all_succeeded(job, replicas, "Worker"):
            return True
        if job.spec.elasticPolicy is not None:
            return any(r.type == "Worker" and succeeded_replica(job, r) for r in replicas)
        return False
