"""The 3DGAN pipeline as a user runs it: showers → 2-worker PyTorchJob → physics checks →
registered model; its lineage; a re-run served from the cache."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from lumiflow.pipelines import compiler
from tests.e2e.test_3dgan import EXAMPLE, TWO_CPUS
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LOOSE = {"max_sf_dev": 100.0, "max_profile_l1": 100.0, "max_moment_shift": 1000.0, "max_angle_excess": 100.0}


def pipeline_spec() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("calo3dgan_pipeline", EXAMPLE / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return compiler.compile(module.calo3dgan).model_dump(mode="json", exclude_none=True)


def run(api: Any, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipelineSpec": pipeline_spec(), "parameters": parameters},
    }
    r = api.request("POST", "/api/v1/profiles/admin/pipelineruns", json=doc)
    assert r.status_code == 201, r.text

    def done() -> dict[str, Any] | None:
        got = api.request("GET", f"/api/v1/profiles/admin/pipelineruns/{name}").json()
        return got if got["status"].get("state") in ("SUCCEEDED", "FAILED", "CANCELED") else None

    return wait_until(done, timeout=280, interval=0.5, message=f"run {name}")["status"]


def test_the_3dgan_pipeline_registers_a_model_traceable_to_its_data(api_factory: Any) -> None:
    parameters = {"events": 48, "epochs": 1, "steps": 2, **LOOSE}
    with api_factory(clusters=TWO_CPUS) as api:
        status = run(api, "calo", parameters)
        assert status["state"] == "SUCCEEDED", status
        nodes = {n["task"]: n for n in status["nodes"].values()}
        showers = nodes["generate-showers"]["outputs"]["showers"]["artifact"]
        checkpoints = nodes["train"]["outputs"]["checkpoints"]["artifact"]
        assert showers["metadata"]["events"] == 48 and checkpoints["digest"].startswith("sha256:")
        assert nodes["validate-physics"]["outputs"]["Output"] is True
        metrics = nodes["validate-physics"]["outputs"]["metrics"]["artifact"]["metadata"]
        assert "checks_failed" in metrics
        job = api.request(
            "GET", f"/api/v1/profiles/admin/trainingjobs/{nodes['train']['outputs']['job_name']}"
        )
        assert job.json()["status"]["phase"] == "Succeeded"
        assert job.json()["metadata"]["labels"]["lumiflow.dev/framework"] == "pytorch"
        assert len(job.json()["status"]["replicas"]) == 2  # a Master and a Worker
        models = api.request(
            "GET", "/api/v1/profiles/admin/models", params={"labelSelector": "lumiflow.dev/model=calo3dgan"}
        ).json()["items"]
        assert [m["spec"]["version"] for m in models] == [1]
        model = models[0]
        assert model["spec"]["stage"] == "Staging" and model["spec"]["artifact"]["uri"] == checkpoints["uri"]
        assert model["spec"]["source"]["pipelineRun"] == "calo"

        graph = api.request(
            "GET",
            "/api/v1/profiles/admin/lineage",
            params={"uri": checkpoints["uri"], "direction": "upstream"},
        ).json()
        assert showers["uri"] in {a["uri"] for a in graph["artifacts"]}
        kinds = {x["type"] for x in graph["executions"]}
        assert {"TrainingJob", "PipelineStep"} <= kinds
        down = api.request(
            "GET",
            "/api/v1/profiles/admin/lineage",
            params={"uri": checkpoints["uri"], "direction": "downstream"},
        ).json()
        assert "ModelRegistration" in {x["type"] for x in down["executions"]}

        again = run(api, "calo-again", parameters)
        assert again["state"] == "SUCCEEDED"
        by_task = {n["task"]: n for n in again["nodes"].values()}
        assert by_task["generate-showers"]["cached"] is True and not by_task["generate-showers"].get(
            "workload"
        )
