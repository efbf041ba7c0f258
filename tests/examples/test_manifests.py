"""The example's Kubeflow manifests: accepted by lumiflow's own validation as the framework
kinds they claim to be, and their command finds the scripts from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumiflow.common.documents import load_documents
from lumiflow.resources.registry import default_registry, prepare
from lumiflow.resources.trainingjob import main_container
from tests.examples.conftest import EXAMPLE

pytestmark = pytest.mark.timeout(30)

MANIFESTS = {
    "pytorchjob.yaml": ("pytorch", {"Master": 1, "Worker": 1}, "train_torch.py"),
    "tfjob.yaml": ("tensorflow", {"Worker": 2}, "train_tf.py"),
}


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_manifest_is_a_valid_framework_job(name: str, tmp_path: Path) -> None:
    framework, replicas, script = MANIFESTS[name]
    (doc,) = load_documents((EXAMPLE / name).read_text(), source=name)
    assert doc["apiVersion"] == "kubeflow.org/v1"
    job = prepare(default_registry(), doc, profile="physics").model
    assert job.spec.framework.value == framework
    assert {t: s.replicas for t, s in job.spec.replicaSpecs.items()} == replicas
    for spec in job.spec.replicaSpecs.values():
        container = main_container(spec, job.spec.framework)
        assert container.name == framework  # Kubeflow runs the container of that name
        assert container.workingDir is None
        command = [*(container.command or []), *(container.args or [])]
        # A script by its name: the local cluster runs it in the manifest's folder.
        assert command[:2] == ["python3", script]
        assert (EXAMPLE / script).is_file()
        assert command[2:4] == ["--grid", "small"]
