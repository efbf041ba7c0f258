"""XGBoostJob: the Rabit tracker's (and LightGBM's) variables, as training-operator sets them.

Every replica gets ``MASTER_ADDR``/``MASTER_PORT`` of master-0, ``WORLD_SIZE`` (all
replicas), ``RANK`` (master 0, worker i → i + masters) and ``PYTHONUNBUFFERED``; with more
than one replica also ``WORKER_PORT`` (the Worker spec's port) and ``WORKER_ADDRS`` (the
hosts of worker 0 .. n-1, comma-separated). On the local cluster replicas share one host
and each has its own port, so ``WORKER_PORT`` is worker-0's; every replica's address is in
``LUMIFLOW_REPLICA_ADDRESSES``.

Success: when the master succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence

from lumiflow.controllers.frameworks.base import FrameworkLogic, JobContext, all_succeeded, host, port
from lumiflow.resources.frameworks import Framework
from lumiflow.resources.trainingjob import ReplicaState, TrainingJob

PORT_NAME = "xgboostjob-port"


class XGBoost(FrameworkLogic):
    framework = Framework.XGBOOST

    def environment(self, job: TrainingJob, replica_type: str, index: int, ctx: JobContext) -> dict[str, str]:
        total = job.spec.total_replicas
        masters = job.spec.replicaSpecs["Master"].replicas
        rank = index + masters if replica_type == "Worker" else index
        env = {
            "MASTER_PORT": port("Master", 0, PORT_NAME),
            "MASTER_ADDR": host("Master", 0),
            "WORLD_SIZE": str(total),
            "RANK": str(rank),
            "PYTHONUNBUFFERED": "1",
        }
        if total > 1:
            env["WORKER_PORT"] = port("Worker", 0, PORT_NAME)
            env["WORKER_ADDRS"] = ",".join(host("Worker", i) for i in range(total - 1))
        return env

    def succeeded(self, job: TrainingJob, replicas: Sequence[ReplicaState]) -> bool:
        return all_succeeded(job, replicas, "Master")
