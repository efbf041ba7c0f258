"""The 3DGAN Katib example as a user runs it (fewer trials and steps, so that CI can)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_3dgan import TWO_CPUS, apply, manifest
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_the_katib_example_tunes_the_3dgan(api_factory: Any) -> None:
    doc = manifest("katib-experiment.yaml", maxTrialCount=2)
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]["Master"][
        "template"
    ]["spec"]["containers"][0]
    args = container["args"]
    args[args.index("--epochs") + 1] = "2"
    args[args.index("--steps-per-epoch") + 1] = "2"
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, doc)

        def finished() -> dict[str, Any] | None:
            exp = api.request("GET", "/api/v1/profiles/admin/experiments/calo3dgan-tune").json()
            return exp if exp["status"].get("phase") in ("Succeeded", "Failed") else None

        status = wait_until(finished, timeout=280, interval=0.5, message="the experiment to finish")["status"]
        assert status["phase"] == "Succeeded", status
        assert status["trialsSucceeded"] == 2
        best = status["currentOptimalTrial"]
        names = {m["name"] for m in best["observation"]["metrics"]}
        assert names == {"epoch_g_loss", "epoch_d_loss"}
        assigned = {a["name"]: a["value"] for a in best["parameterAssignments"]}
        assert 1e-4 <= float(assigned["lr"]) <= 1e-2 and assigned["batch-size"] in ("4", "8")
        trial = best["bestTrialName"]
        job = api.request("GET", f"/api/v1/profiles/admin/trainingjobs/{trial}").json()
        assert job["metadata"]["labels"]["lumiflow.dev/framework"] == "pytorch"
        log = api.request("GET", f"/api/v1/profiles/admin/trials/{trial}/logs").text
        assert "epoch=2 epoch_d_loss=" in log
        series = api.request("GET", f"/api/v1/profiles/admin/trials/{trial}/metrics").json()["metrics"]
        assert [p["step"] for p in series["epoch_g_loss"]] == [2, 4]  # one per epoch, at its last step
