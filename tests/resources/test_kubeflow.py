"""Kubeflow's job kinds and batch/v1 Job: accepted unchanged, stored as TrainingJobs, and bad
manifests refused with the field named as the user wrote it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lumiflow.common.errors import ValidationFailed
from lumiflow.resources import default_registry, prepare
from lumiflow.resources.registry import Prepared

pytestmark = pytest.mark.timeout(20)


def pod(name: str = "pytorch", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": "docker.io/kubeflowkatib/pytorch-mnist:v1beta1",
                    "imagePullPolicy": "Always",
                    "command": ["python3", "/opt/mnist.py"],
                    "args": ["--epochs=1"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    **extra,
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "mnist"}}],
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        },
    }


def pytorchjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "mnist", "namespace": "team", "labels": {"app": "mnist"}},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 2},
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": pod()},
                "Worker": {"replicas": 2, "template": pod()},
            },
            **spec,
        },
    }


def accept(doc: dict[str, Any]) -> Prepared:
    return prepare(default_registry(), copy.deepcopy(doc))


def refuse(doc: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        prepare(default_registry(), doc)
    return caught.value


def test_a_pytorchjob_is_stored_as_a_trainingjob_with_everything_kept() -> None:
    prepared = accept(pytorchjob())
    obj = prepared.obj
    assert (obj.kind, obj.api_version, obj.profile, obj.name) == (
        "TrainingJob",
        "lumiflow.dev/v1",
        "team",
        "mnist",
    )
    assert obj.labels == {"app": "mnist", "lumiflow.dev/framework": "pytorch"}
    assert obj.annotations == {
        "lumiflow.dev/source-kind": "PyTorchJob",
        "lumiflow.dev/source-api-version": "kubeflow.org/v1",
    }
    spec = obj.spec
    assert spec["framework"] == "pytorch"
    assert spec["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 2, "suspend": False}
    assert spec["nprocPerNode"] == "auto"  # Kubeflow's default, written down
    worker = spec["replicaSpecs"]["Worker"]
    assert worker["restartPolicy"] == "OnFailure"  # PyTorchJob's default
    template = worker["template"]
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert template["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "mnist"}}]
    assert template["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert template["spec"]["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    c = template["spec"]["containers"][0]
    assert (c["image"], c["imagePullPolicy"]) == ("docker.io/kubeflowkatib/pytorch-mnist:v1beta1", "Always")
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    # The operator's default port is added to the container that runs.
    assert c["ports"] == [{"containerPort": 23456, "name": "pytorchjob-port", "protocol": "TCP"}]


def test_applying_twice_and_reapplying_the_stored_object_change_nothing() -> None:
    first = accept(pytorchjob())
    assert accept(pytorchjob()).obj.spec == first.obj.spec
    stored = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": "mnist", "namespace": "team", "labels": first.obj.labels},
        "spec": first.obj.spec,
    }
    again = accept(stored)
    assert again.obj.spec == first.obj.spec
    assert again.obj.labels == first.obj.labels


def test_every_kind_converts_to_its_framework() -> None:
    tf = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "tf", "namespace": "team"},
        "spec": {
            "successPolicy": "AllWorkers",
            "tfReplicaSpecs": {
                "ps": {"replicas": 1, "template": pod("tensorflow")},
                "worker": {"template": pod("tensorflow")},
            },
        },
    }
    spec = accept(tf).obj.spec
    assert spec["framework"] == "tensorflow"
    assert set(spec["replicaSpecs"]) == {"PS", "Worker"}  # camel-cased, as Kubeflow does
    assert spec["replicaSpecs"]["Worker"]["replicas"] == 1
    assert spec["replicaSpecs"]["PS"]["restartPolicy"] == "Never"
    assert spec["successPolicy"] == "AllWorkers"

    xgb = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "XGBoostJob",
        "metadata": {"name": "xgb", "namespace": "team"},
        "spec": {"xgbReplicaSpecs": {"Master": {"replicas": 1, "template": pod("xgboost")}}},
    }
    spec = accept(xgb).obj.spec
    assert spec["framework"] == "xgboost"
    assert (
        spec["replicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        == 9999
    )

    launcher = pod("launcher")
    worker = pod("worker")
    del worker["spec"]["containers"][0]["command"], worker["spec"]["containers"][0]["args"]
    mpi = {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": "pi", "namespace": "team"},
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running"},
            "sshAuthMountPath": "/home/mpiuser/.ssh",
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": launcher},
                "Worker": {"replicas": 2, "template": worker},
            },
        },
    }
    spec = accept(mpi).obj.spec
    assert spec["framework"] == "mpi"
    assert (spec["mpiImplementation"], spec["launcherCreationPolicy"], spec["runLauncherAsWorker"]) == (
        "OpenMPI",
        "AtStartup",
        False,
    )
    assert spec["replicaSpecs"]["Launcher"]["restartPolicy"] == "OnFailure"
    assert spec["replicaSpecs"]["Worker"]["restartPolicy"] == "Never"
    assert spec["replicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["ports"] == []


def test_a_batch_job_is_one_replica_with_its_run_policy() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "trial", "namespace": "team"},
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 60,
            "suspend": False,
            "completions": 1,
            "parallelism": 1,
            "template": {
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [
                        {"name": "training-container", "image": "x", "command": ["python3", "t.py"]}
                    ],
                }
            },
        },
    }
    obj = accept(job).obj
    assert obj.kind == "TrainingJob"
    assert obj.annotations["lumiflow.dev/source-kind"] == "Job"
    assert obj.labels == {}  # a generic job carries only its user's labels
    assert obj.spec["runPolicy"] == {
        "backoffLimit": 3,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 60,
        "suspend": False,
    }
    (name, replica), *rest = obj.spec["replicaSpecs"].items()
    assert not rest
    assert (name, replica["replicas"], replica["restartPolicy"]) == ("Worker", 1, "OnFailure")


def test_discovery_lists_the_kubeflow_kinds_as_aliases_of_trainingjob() -> None:
    described = default_registry().kinds["TrainingJob"].describe()
    aliases = {a["kind"]: a for a in described["aliases"]}
    assert set(aliases) == {"TFJob", "PyTorchJob", "XGBoostJob", "MPIJob"}
    assert aliases["TFJob"]["plural"] == "tfjobs"
    assert aliases["TFJob"]["labelSelector"] == "lumiflow.dev/framework=tensorflow"
    assert aliases["MPIJob"]["apiVersion"] == "kubeflow.org/v2beta1"
    assert default_registry().resolve("pytorchjobs").kind == "TrainingJob"


def tfjob(replica_specs: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "tf", "namespace": "team"},
        "spec": {"tfReplicaSpecs": replica_specs, **spec},
    }


def test_unknown_replica_type_for_the_framework() -> None:
    err = refuse(tfjob({"Driver": {"template": pod("tensorflow")}}))
    assert err.field == "spec.tfReplicaSpecs.Driver"
    assert "Chief, Master, PS, Worker, Evaluator" in err.message
    err = refuse(pytorchjob(pytorchReplicaSpecs={"Launcher": {"template": pod()}}))
    assert err.field == "spec.pytorchReplicaSpecs.Launcher"


def test_a_pytorchjob_with_workers_and_no_master_is_accepted_as_kubeflow_does() -> None:
    spec = accept(pytorchjob(pytorchReplicaSpecs={"Worker": {"replicas": 2, "template": pod()}})).obj.spec
    assert set(spec["replicaSpecs"]) == {"Worker"}


def test_masters_and_launchers_are_exactly_one() -> None:
    err = refuse(pytorchjob(pytorchReplicaSpecs={"Master": {"replicas": 2, "template": pod()}}))
    assert err.field == "spec.pytorchReplicaSpecs.Master.replicas"
    assert "must be 1" in err.message
    err = refuse(tfjob({"Chief": {"template": pod("tensorflow")}, "Master": {"template": pod("tensorflow")}}))
    assert "at most one of Chief or Master" in err.message
    xgb = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "XGBoostJob",
        "metadata": {"name": "x", "namespace": "t"},
        "spec": {"xgbReplicaSpecs": {"Worker": {"replicas": 2, "template": pod("xgboost")}}},
    }
    err = refuse(xgb)
    assert err.field == "spec.xgbReplicaSpecs.Master"
    assert "needs a Master" in err.message


def test_the_framework_container_must_be_there() -> None:
    err = refuse(tfjob({"Worker": {"template": pod("main")}}))
    assert err.field == "spec.tfReplicaSpecs.Worker.template.spec.containers"
    assert "named 'tensorflow'" in err.message and "found: main" in err.message


def test_duplicate_ports_are_refused() -> None:
    twice = [{"name": "a", "containerPort": 5000}, {"name": "b", "containerPort": 5000}]
    err = refuse(tfjob({"Worker": {"template": pod("tensorflow", ports=twice)}}))
    assert err.field is not None and err.field.startswith(
        "spec.tfReplicaSpecs.Worker.template.spec.containers"
    )
    assert "duplicate containerPort" in err.message
    taken = [{"name": "grpc", "containerPort": 2222}]
    err = refuse(tfjob({"Worker": {"template": pod("tensorflow", ports=taken)}}))
    assert "port 2222 is declared as 'grpc'" in err.message and "tfjob-port" in err.message


def test_fields_of_another_framework_or_kind_are_refused() -> None:
    err = refuse(tfjob({"Worker": {"template": pod("tensorflow")}}, nprocPerNode="2"))
    assert err.field == "spec.nprocPerNode"
    err = refuse(pytorchjob(replicaSpecs={}))
    assert err.field == "spec.replicaSpecs" and "unknown field of a PyTorchJob" in err.message
    native = accept(pytorchjob()).obj
    bad = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": "n", "namespace": "t"},
        "spec": {**native.spec, "slotsPerWorker": 2},
    }
    assert "applies to framework mpi only" in refuse(bad).message


def test_run_policy_and_elastic_rules() -> None:
    err = refuse(pytorchjob(runPolicy={"schedulingPolicy": {"minAvailable": 4}}))
    assert err.field == "spec.runPolicy.schedulingPolicy.minAvailable"
    assert "more than the job's 3 replicas" in err.message
    err = refuse(pytorchjob(runPolicy={"cleanPodPolicy": "Sometimes"}))
    assert err.field == "spec.runPolicy.cleanPodPolicy"
    err = refuse(pytorchjob(nprocPerNode="2", elasticPolicy={"nProcPerNode": 2}))
    assert err.field == "spec.elasticPolicy.nProcPerNode"
    err = refuse(pytorchjob(elasticPolicy={"minReplicas": 3, "maxReplicas": 2}))
    assert err.field == "spec.elasticPolicy.minReplicas"
    assert accept(pytorchjob(nprocPerNode=4)).obj.spec["nprocPerNode"] == "4"
    assert "nprocPerNode" in refuse(pytorchjob(nprocPerNode="many")).message


def test_bad_batch_jobs() -> None:
    def job(**spec: Any) -> dict[str, Any]:
        template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "command": ["true"]}]}}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j", "namespace": "t"},
            "spec": {"template": template, **spec},
        }

    err = refuse(job(completions=3))
    assert err.field == "spec.completions" and "one replica" in err.message
    assert refuse(job(parallelism=2)).field == "spec.parallelism"
    assert refuse(job(podFailurePolicy={"rules": []})).field == "spec.podFailurePolicy"
    assert refuse(job(backoffLimit=-1)).field == "spec.backoffLimit"
    always = job()
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert refuse(always).field == "spec.template.spec.restartPolicy"
    nocommand = job()
    del nocommand["spec"]["template"]["spec"]["containers"][0]["command"]
    err = refuse(nocommand)
    assert err.field == "spec.template" and "no command" in err.message


def test_wrong_api_version_names_the_served_one() -> None:
    doc = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob", "metadata": {"name": "m"}, "spec": {}}
    err = refuse(doc)
    assert err.field == "apiVersion" and "kubeflow.org/v2beta1" in err.message


def test_the_example_pytorchjob_is_accepted() -> None:
    from lumiflow.common.documents import load_documents
    from tests.helpers import ROOT

    (doc,) = load_documents((ROOT / "examples/kubeflow/pytorchjob-ddp.yaml").read_text())
    spec = prepare(default_registry(), doc, profile="team").obj.spec
    assert spec["framework"] == "pytorch" and set(spec["replicaSpecs"]) == {"Master", "Worker"}
