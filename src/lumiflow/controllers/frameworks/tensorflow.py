"""TFJob: ``TF_CONFIG`` and the success policy, as training-operator's TFJob controller has them.

``TF_CONFIG`` is set only when the job has more than one replica in total
(``isDistributed``). Its ``cluster`` maps each lower-cased replica type to the
``host:port`` of its replicas by index; Go's ``json.Marshal`` writes map keys sorted and no
spaces, and so does this module, so the string is byte-for-byte the operator's. With
``enableDynamicWorker`` the sparse form (``sparseCluster``) is used instead.

Success (``successPolicy``): with a Chief or Master, when it succeeded; otherwise when
worker 0 succeeded (default) or when every worker succeeded (``AllWorkers``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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

PORT_NAME = "tfjob-port"
CHIEF_TYPES = ("Chief", "Master")


def cluster_spec(job: TrainingJob) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for rtype, spec in job.spec.replicaSpecs.items():
        cluster[rtype.lower()] = [
            f"{host(rtype, i)}:{port(rtype, i, PORT_NAME)}" for i in range(spec.replicas)
        ]
    return dict(sorted(cluster.items()))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tf_config(job: TrainingJob, replica_type: str, index: int) -> str:
    cluster = cluster_spec(job)
    rt = replica_type.lower()
    task = {"type": rt, "index": index}
    if job.spec.enableDynamicWorker:
        # convertClusterSpecToSparseClusterSpec: a PS knows itself, a worker itself and the PS.
        worker: dict[str, str] = {}
        ps: list[str] | None = []
        if rt == "ps":
            ps = [cluster[rt][index]]
        elif rt == "worker":
            ps = cluster.get("ps")  # Go: a missing key is a nil slice, written as null
            worker = {str(index): cluster[rt][index]}
        return _dumps({"sparseCluster": {"worker": worker, "ps": ps}, "task": task})
    return _dumps({"cluster": cluster, "task": task, "environment": "cloud"})


class TensorFlow(FrameworkLogic):
    framework = Framework.TENSORFLOW

    def environment(self, job: TrainingJob, replica_type: str, index: int, ctx: JobContext) -> dict[str, str]:
        if job.spec.total_replicas == 1:
            return {}  # a local (non-distributed) run: no TF_CONFIG
        return {"TF_CONFIG": tf_config(job, replica_type, index)}

    def succeeded(self, job: TrainingJob, replicas: Sequence[ReplicaState]) -> bool:
        chiefs = [t for t in CHIEF_TYPES if replicas_of(job, t) > 0]
        if chiefs:
            return all_succeeded(job, replicas, chiefs[0])
        if replicas_of(job, "Worker") > 0:
            if all_succeeded(job, replicas, "Worker"):
                return True
            if job.spec.successPolicy == "AllWorkers":
                return False
            return any(r.type == "Worker" and r.index == 0 and succeeded_replica(job, r) for r in replicas)
        return super().succeeded(job, replicas)
