"""A Kubeflow TFJob through the real CLI and a real server: applied unchanged, shown under
either name, followed with `lumi logs tfjob ... -f`, described with its replicas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import lumi

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SCRIPT = """
import json, os
config = json.loads(os.environ["TF_CONFIG"])
print("task", config["task"]["type"], config["task"]["index"], "of", len(config["cluster"]["worker"]), flush=True)
"""


def tfjob() -> dict[str, Any]:
    container = {
        "name": "tensorflow",
        "image": "tensorflow/tensorflow:2.16.1",
        "command": ["python3", "-c", SCRIPT],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "mnist"},
        "spec": {
            # Done when every worker is (the default, worker 0 alone, could stop worker 1 early).
            "successPolicy": "AllWorkers",
            "runPolicy": {"cleanPodPolicy": "None"},
            "tfReplicaSpecs": {
                "Worker": {
                    "replicas": 2,
                    "restartPolicy": "OnFailure",
                    "template": {"spec": {"containers": [container]}},
                }
            },
        },
    }


def test_a_tfjob_through_the_cli(server_factory: Any, home: Path, tmp_path: Path) -> None:
    server_factory().start()
    manifest = tmp_path / "tfjob.yaml"
    manifest.write_text(yaml.safe_dump(tfjob()))

    assert lumi("apply", "-f", str(manifest), home=home).stdout.strip() == "tfjob/mnist created"
    followed = lumi("logs", "tfjob", "mnist", "--replica", "worker-1", "-f", home=home).stdout
    assert followed == "task worker 1 of 2\n"

    as_tfjob = json.loads(lumi("get", "tfjob", "mnist", "-o", "json", home=home).stdout)
    as_trainingjob = json.loads(lumi("get", "trainingjob", "mnist", "-o", "json", home=home).stdout)
    assert as_tfjob["metadata"]["uid"] == as_trainingjob["metadata"]["uid"]
    assert as_tfjob["kind"] == "TrainingJob" and as_tfjob["spec"]["framework"] == "tensorflow"
    assert as_tfjob["metadata"]["annotations"]["lumiflow.dev/source-kind"] == "TFJob"
    assert as_tfjob["status"]["phase"] == "Succeeded"

    assert "mnist" in lumi("get", "tfjobs", home=home).stdout
    assert lumi("get", "pytorchjobs", home=home).stdout.strip() == "no pytorchjobs found"
    wrong = lumi("get", "pytorchjob", "mnist", home=home, check=False)
    assert wrong.returncode != 0 and "not found" in wrong.stderr + wrong.stdout

    described = lumi("describe", "tfjob", "mnist", home=home).stdout
    for needle in ("applied as TFJob", "tensorflow", "replicas", "worker-0", "worker-1", "Succeeded"):
        assert needle in described, needle
