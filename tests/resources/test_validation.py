"""Manifests: what is accepted, and bad input refused with the field named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lumiflow.common.errors import ValidationFailed
from lumiflow.resources import default_registry, prepare

pytestmark = pytest.mark.timeout(20)

JOB: dict[str, Any] = {
    "apiVersion": "lumiflow.dev/v1",
    "kind": "TrainingJob",
    "metadata": {"name": "hello", "namespace": "team"},
    "spec": {
        "framework": "generic",
        "replicaSpecs": {
            "Worker": {
                "replicas": 2,
                "restartPolicy": "Never",
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "command": ["python3", "train.py"],
                                "args": ["--epochs", "3"],
                                "env": [{"name": "SEED", "value": "1"}],
                                "workingDir": "/tmp",
                                "resources": {
                                    "requests": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "0"}
                                },
                            }
                        ]
                    }
                },
            }
        },
        "runPolicy": {"backoffLimit": 3, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 86400},
    },
}


def job(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(JOB)
    for path, value in changes.items():
        cursor: Any = doc
        parts = path.split("__")
        for part in parts[:-1]:
            cursor = cursor[int(part)] if part.isdigit() else cursor[part]
        last = parts[-1]
        if value is _DELETE:
            del cursor[last]
        else:
            cursor[int(last) if last.isdigit() else last] = value
    return doc


_DELETE = object()
C0 = "spec__replicaSpecs__Worker__template__spec__containers__0"


def test_the_issue_example_is_accepted_and_normalised() -> None:
    prepared = prepare(default_registry(), job())
    assert prepared.obj.kind == "TrainingJob"
    assert prepared.obj.profile == "team"
    assert prepared.obj.name == "hello"
    worker = prepared.obj.spec["replicaSpecs"]["Worker"]
    assert worker["replicas"] == 2
    assert worker["template"]["spec"]["containers"][0]["command"] == ["python3", "train.py"]
    # Applying the same document twice gives the same stored spec (idempotent apply).
    assert prepare(default_registry(), job()).obj.spec == prepared.obj.spec


def test_kubernetes_fields_a_local_run_cannot_use_are_kept() -> None:
    doc = job()
    pod = doc["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]
    pod["containers"][0]["image"] = "docker.io/kubeflow/tf-mnist:1.0"
    pod["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    pod["nodeSelector"] = {"gpu": "a100"}
    spec = prepare(default_registry(), doc).obj.spec["replicaSpecs"]["Worker"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "docker.io/kubeflow/tf-mnist:1.0"
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "data"
    assert spec["nodeSelector"] == {"gpu": "a100"}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {f"{C0}__comand": ["x"]},
            f"{C0.replace('__0', '[0]').replace('__', '.')}.comand",
            "did you mean 'command'",
        ),
        ({"spec__replicaSpecs__Worker__replicas": -1}, "spec.replicaSpecs.Worker.replicas", "0 or more"),
        ({"spec__replicaSpecs__Worker__replicas": "two"}, "spec.replicaSpecs.Worker.replicas", "integer"),
        ({"metadata__name": "Hello_World"}, "metadata.name", "DNS-1123"),
        ({"metadata__name": "a" * 64}, "metadata.name", "63"),
        ({"kind": "TFJobz"}, "kind", "unknown kind"),
        ({"apiVersion": "kubeflow.org/v1"}, "apiVersion", "not served"),
        ({"spec__replicaSpecs": {}}, "spec.replicaSpecs", "at least 1"),
        (
            {"spec__replicaSpecs__Worker__restartPolicy": "Sometimes"},
            "spec.replicaSpecs.Worker.restartPolicy",
            "Never",
        ),
        ({f"{C0}__resources__requests__cpu": "lots"}, None, "not a quantity"),
        ({f"{C0}__command": "python3 train.py"}, None, "list of strings"),
        ({"spec__runPolicy__backoffLimit": -2}, "spec.runPolicy.backoffLimit", "greater than or equal"),
        ({"spec__replicaSpecs__Worker__replicas": 0}, "spec.replicaSpecs", "no replicas"),
        ({"spec__surprise": 1}, "spec.surprise", "unknown field"),
        ({"metadata__labels": {"bad key!": "x"}}, "metadata.labels", "label key"),
        ({"spec": _DELETE}, "spec", "required"),
        ({"metadata__name": _DELETE}, "metadata.name", "required"),
    ],
)
def test_bad_manifests_name_the_field(changes: dict[str, Any], field: str | None, words: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        prepare(default_registry(), job(**changes))
    if field is not None:
        assert caught.value.field == field, caught.value.message
    assert words.lower() in caught.value.message.lower()


def test_without_a_command_the_local_cluster_cannot_run_it() -> None:
    with pytest.raises(ValidationFailed, match="no command"):
        prepare(default_registry(), job(**{f"{C0}__command": _DELETE, f"{C0}__args": _DELETE}))


def test_secrets_are_refused_with_a_reason() -> None:
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    with pytest.raises(ValidationFailed, match="secretKeyRef"):
        prepare(default_registry(), job(**{f"{C0}__env": env}))


def test_profile_comes_from_the_url_before_the_manifest() -> None:
    assert prepare(default_registry(), job(), profile="other").obj.profile == "other"
    with pytest.raises(ValidationFailed, match="profile is not known"):
        prepare(default_registry(), job(metadata__namespace=_DELETE))


def test_name_in_the_url_must_match() -> None:
    with pytest.raises(ValidationFailed, match="does not match"):
        prepare(default_registry(), job(), name="other")


def test_generate_name_makes_a_unique_name() -> None:
    doc = job(metadata__name=_DELETE)
    doc["metadata"]["generateName"] = "sweep-"
    names = {prepare(default_registry(), doc).obj.name for _ in range(5)}
    assert len(names) == 5
    assert all(n.startswith("sweep-") and len(n) == len("sweep-") + 5 for n in names)


def test_server_fields_from_get_output_are_accepted_and_ignored() -> None:
    doc = job()
    doc["metadata"].update(
        uid="x", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z", generation=3
    )
    doc["status"] = {"phase": "Succeeded"}
    prepared = prepare(default_registry(), doc)
    assert prepared.resource_version == 7
    assert prepared.obj.status == {}


def test_kubeflow_profile_is_accepted_as_is() -> None:
    doc = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": "ml-team"},
        "spec": {
            "owner": {"kind": "User", "name": "alice@cern.ch"},
            "resourceQuotaSpec": {
                "hard": {
                    "cpu": "16",
                    "memory": "64Gi",
                    "requests.nvidia.com/gpu": "2",
                    "persistentvolumeclaims": "5",
                }
            },
        },
    }
    prepared = prepare(default_registry(), doc)
    assert prepared.obj.kind == "Profile"
    assert prepared.obj.profile == ""
    from lumiflow.resources import Profile

    quota = Profile.parse({**doc, "apiVersion": "lumiflow.dev/v1"}).spec.resourceQuotaSpec
    limits = quota.limits()
    assert (limits.cpu, limits.memory, limits.gpu) == (16.0, 64 * 2**30, 2)
    assert quota.unenforced() == ["persistentvolumeclaims"]


def test_profile_quota_values_are_checked() -> None:
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Profile",
        "metadata": {"name": "p"},
        "spec": {"owner": {"kind": "Group", "name": "g"}, "resourceQuotaSpec": {"hard": {"memory": "lots"}}},
    }
    with pytest.raises(ValidationFailed, match="memory"):
        prepare(default_registry(), doc)
