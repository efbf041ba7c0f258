"""When a job of each framework has succeeded: Kubeflow's rules, replica by replica."""

from __future__ import annotations

from typing import Any

import pytest

from lumiflow.controllers.frameworks import logic_for
from lumiflow.resources import TrainingJob
from lumiflow.resources.trainingjob import ReplicaState

pytestmark = pytest.mark.timeout(10)

CONTAINER = {
    "tensorflow": "tensorflow",
    "pytorch": "pytorch",
    "xgboost": "xgboost",
    "mpi": "m",
    "generic": "m",
}


def job(framework: str, replicas: dict[str, int], *, restart: str = "Never", **spec: Any) -> TrainingJob:
    container = {"name": CONTAINER[framework], "command": ["true"]}
    return TrainingJob.parse(
        {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "TrainingJob",
            "metadata": {"name": "j"},
            "spec": {
                "framework": framework,
                "replicaSpecs": {
                    t: {
                        "replicas": n,
                        "restartPolicy": restart,
                        "template": {"spec": {"containers": [container]}},
                    }
                    for t, n in replicas.items()
                },
                **spec,
            },
        }
    )


def states(**by_name: str) -> list[ReplicaState]:
    """``worker_1="Succeeded"`` -> the replica worker-1 of type Worker."""
    out = []
    for key, state in by_name.items():
        rtype, index = key.rsplit("_", 1)
        canonical = {"ps": "PS"}.get(rtype, rtype.capitalize())
        out.append(ReplicaState(name=f"{rtype}-{index}", type=canonical, index=int(index), state=state))
    return out


def succeeded(j: TrainingJob, replicas: list[ReplicaState]) -> bool:
    return logic_for(j.spec.framework).succeeded(j, replicas)


def test_tensorflow_chief_decides() -> None:
    j = job("tensorflow", {"Chief": 1, "PS": 1, "Worker": 2})
    assert succeeded(j, states(chief_0="Succeeded", ps_0="Running", worker_0="Running", worker_1="Running"))
    assert not succeeded(
        j, states(chief_0="Running", ps_0="Running", worker_0="Succeeded", worker_1="Succeeded")
    )


def test_tensorflow_without_chief_worker_zero_or_all_workers() -> None:
    default = job("tensorflow", {"PS": 1, "Worker": 2})
    assert succeeded(default, states(ps_0="Running", worker_0="Succeeded", worker_1="Running"))
    assert not succeeded(default, states(ps_0="Running", worker_0="Running", worker_1="Succeeded"))
    all_workers = job("tensorflow", {"PS": 1, "Worker": 2}, successPolicy="AllWorkers")
    assert not succeeded(all_workers, states(ps_0="Running", worker_0="Succeeded", worker_1="Running"))
    assert succeeded(all_workers, states(ps_0="Running", worker_0="Succeeded", worker_1="Succeeded"))


def test_a_replica_restarted_always_never_counts_as_done() -> None:
    j = job("tensorflow", {"Chief": 1, "Worker": 1}, restart="Always")
    assert not succeeded(j, states(chief_0="Succeeded", worker_0="Running"))


def test_pytorch_master_else_workers() -> None:
    j = job("pytorch", {"Master": 1, "Worker": 2})
    assert succeeded(j, states(master_0="Succeeded", worker_0="Running", worker_1="Running"))
    assert not succeeded(j, states(master_0="Running", worker_0="Succeeded", worker_1="Succeeded"))
    workers = job("pytorch", {"Worker": 2})
    assert not succeeded(workers, states(worker_0="Succeeded", worker_1="Running"))
    assert succeeded(workers, states(worker_0="Succeeded", worker_1="Succeeded"))
    elastic = job("pytorch", {"Worker": 2}, elasticPolicy={"minReplicas": 1, "maxReplicas": 2})
    assert succeeded(elastic, states(worker_0="Running", worker_1="Succeeded"))


def test_xgboost_master_mpi_launcher_generic_everyone() -> None:
    xgb = job("xgboost", {"Master": 1, "Worker": 1})
    assert succeeded(xgb, states(master_0="Succeeded", worker_0="Running"))
    assert not succeeded(xgb, states(master_0="Failed", worker_0="Succeeded"))
    mpi = job("mpi", {"Launcher": 1, "Worker": 2})
    assert succeeded(mpi, states(launcher_0="Succeeded", worker_0="Running", worker_1="Running"))
    generic = job("generic", {"Worker": 2})
    assert not succeeded(generic, states(worker_0="Succeeded", worker_1="Running"))
    assert succeeded(generic, states(worker_0="Succeeded", worker_1="Succeeded"))
