"""Katib Experiment manifests for tests, objective scripts, and following experiments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.helpers import wait_until

BRANIN = """
import argparse, math, sys
p = argparse.ArgumentParser()
p.add_argument("--x1", type=float, required=True)
p.add_argument("--x2", type=float, required=True)
a = p.parse_args()
b, c, r, s, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6, 10, 1 / (8 * math.pi)
value = (a.x2 - b * a.x1 ** 2 + c * a.x1 - r) ** 2 + s * (1 - t) * math.cos(a.x1) + s
print(f"branin={value}")
"""

#: Prints ``loss`` per epoch: a trial whose ``--quality`` is low stays worse every epoch.
CURVE = """
import argparse, sys, time
p = argparse.ArgumentParser()
p.add_argument("--quality", type=float, required=True)
p.add_argument("--epochs", type=int, default=8)
p.add_argument("--sleep", type=float, default=0.3)
a = p.parse_args()
for epoch in range(1, a.epochs + 1):
    loss = (1.0 - a.quality) * 10 + 1.0 / epoch
    print(f"epoch={epoch} loss={loss:.6f}", flush=True)
    time.sleep(a.sleep)
"""


def write_script(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def batch_job(command: list[str], *, container: str = "training-container") -> dict[str, Any]:
    """Kubernetes' batch/v1 Job, as Katib's own examples write a trial."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": container,
                            "image": "docker.io/python:3.11",
                            "command": command,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                }
            }
        },
    }


def experiment(
    name: str,
    *,
    parameters: list[dict[str, Any]],
    command: list[str],
    metric: str = "loss",
    objective_type: str = "minimize",
    algorithm: str = "random",
    settings: dict[str, str] | None = None,
    parallel: int = 2,
    max_trials: int = 4,
    max_failed: int | None = None,
    goal: float | None = None,
    early_stopping: dict[str, Any] | None = None,
    trial_parameters: list[dict[str, str]] | None = None,
    collector: dict[str, Any] | None = None,
    objective_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    objective: dict[str, Any] = {"type": objective_type, "objectiveMetricName": metric}
    if goal is not None:
        objective["goal"] = goal
    objective.update(objective_extra or {})
    spec: dict[str, Any] = {
        "objective": objective,
        "algorithm": {
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": k, "value": v} for k, v in (settings or {}).items()],
        },
        "parallelTrialCount": parallel,
        "maxTrialCount": max_trials,
        "parameters": parameters,
        "trialTemplate": {
            "primaryContainerName": "training-container",
            "trialParameters": trial_parameters
            if trial_parameters is not None
            else [{"name": p["name"], "reference": p["name"]} for p in parameters],
            "trialSpec": batch_job(command),
        },
    }
    if max_failed is not None:
        spec["maxFailedTrialCount"] = max_failed
    if early_stopping is not None:
        spec["earlyStopping"] = early_stopping
    if collector is not None:
        spec["metricsCollectorSpec"] = collector
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "admin"},
        "spec": spec,
    }


def python(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def get_experiment(api: Any, name: str) -> dict[str, Any]:
    r = api.request("GET", f"/api/v1/profiles/admin/experiments/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def trials(api: Any, name: str) -> list[dict[str, Any]]:
    r = api.request(
        "GET",
        "/api/v1/profiles/admin/trials",
        params={"labelSelector": f"katib.kubeflow.org/experiment={name}"},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def wait_experiment(api: Any, name: str, *, timeout: float = 120.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        exp = get_experiment(api, name)
        return exp if exp["status"].get("phase") in ("Succeeded", "Failed") else None

    return wait_until(done, timeout=timeout, interval=0.2, message=f"experiment {name} to finish")
