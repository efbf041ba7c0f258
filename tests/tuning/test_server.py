"""Tuning against a real `lumi up`: the Push collector over HTTP, and a server killed
mid-experiment that resumes to exactly maxTrialCount trials."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_until
from tests.tuning.experiments import CURVE, experiment, python, write_script

CONFIG = {
    "clusters": [
        {
            "name": "local",
            "type": "local",
            "home": True,
            "options": {"capacity": {"cpu": 16, "memory": "16Gi"}},
        }
    ],
}
LR = [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}]


class Api:
    def __init__(self, server: Any) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def close(self) -> None:
        self.client.close()


def _experiment(api: Api, name: str) -> dict[str, Any]:
    r = api.request("GET", f"/api/v1/profiles/admin/experiments/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _finished(api: Api, name: str, timeout: float) -> dict[str, Any]:
    return wait_until(
        lambda: (e := _experiment(api, name))["status"].get("phase") in ("Succeeded", "Failed") and e,
        timeout=timeout,
        interval=0.2,
        message=f"experiment {name} to finish",
    )


@pytest.mark.timeout(90)
def test_trials_push_metrics_with_lumiflow_report(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(CONFIG)
    server.start()
    api = Api(server)
    try:
        push = write_script(
            tmp_path,
            "push.py",
            "import os, lumiflow\nassert os.environ['KATIB_TRIAL_NAME']\n"
            "for i in range(1, 6):\n    lumiflow.report(loss=1.0 / i, step=i)\n"
            "lumiflow.report_many([{'name': 'acc', 'value': 0.5, 'step': 1}])\n",
        )
        manifest = experiment(
            "pushed",
            parameters=LR,
            command=python(push, "--lr=${trialParameters.lr}"),
            parallel=1,
            max_trials=2,
            collector={"collector": {"kind": "Push"}},
            objective_extra={"additionalMetricNames": ["acc"]},
        )
        assert api.request("POST", "/api/v1/apply", json=manifest).status_code == 201
        status = _finished(api, "pushed", 60)["status"]
        assert status["trialsSucceeded"] == 2, status
        metrics = {m["name"]: m for m in status["currentOptimalTrial"]["observation"]["metrics"]}
        assert float(metrics["loss"]["min"]) == pytest.approx(0.2)
        assert float(metrics["acc"]["latest"]) == 0.5
        series = api.request("GET", "/api/v1/profiles/admin/trainingjobs/pushed-0000/metrics").json()[
            "metrics"
        ]
        assert [p["step"] for p in series["loss"]] == [1, 2, 3, 4, 5]

        # The replica's credential writes to its own job only, and nothing else takes it.
        job = api.request("GET", "/api/v1/profiles/admin/workloads/pushed-0000").json()
        env = job["spec"]["replicas"][0]["env"]
        token = env["LUMIFLOW_REPORT_TOKEN"]
        assert env["LUMIFLOW_REPORT_URL"] == f"{server.url}/api/v1/report"
        body = {"metrics": [{"name": "loss", "value": 0.1, "step": 9}]}
        ok = httpx.post(
            f"{server.url}/api/v1/report", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 202 and ok.json() == {"accepted": 1}
        forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        for bad in (forged, server.admin_token, "lfr1.x.y"):
            r = httpx.post(
                f"{server.url}/api/v1/report", json=body, headers={"Authorization": f"Bearer {bad}"}
            )
            assert r.status_code == 401, r.text
        assert (
            httpx.get(
                f"{server.url}/api/v1/profiles", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 401
        )
        for payload, field in (
            ({"metrics": [{"name": "loss", "value": "NaN"}]}, "metrics[0].value"),
            ({"metrics": [{"name": "", "value": 1}]}, "metrics[0].name"),
            ({"metrics": [{"name": "loss", "value": 1, "step": -1}]}, "metrics[0].step"),
            ({"metrics": [{"name": "x", "value": 1}] * 10_001}, "metrics"),
            ({"points": []}, "metrics"),
        ):
            r = httpx.post(
                f"{server.url}/api/v1/report", json=payload, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 400, r.text
            assert r.json()["field"] == field
        after = api.request("GET", "/api/v1/profiles/admin/trainingjobs/pushed-0000/metrics").json()[
            "metrics"
        ]
        assert len(after["loss"]) == 6  # the one good push, none of the bad ones
    finally:
        api.close()


@pytest.mark.timeout(150)
def test_sigkill_mid_experiment_resumes_to_exactly_max_trial_count(
    server_factory: Any, tmp_path: Path
) -> None:
    script = write_script(tmp_path, "curve.py", CURVE)
    server = server_factory(CONFIG)
    server.start()
    api = Api(server)
    manifest = experiment(
        "resumed",
        parameters=[
            {"name": "quality", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.9"}}
        ],
        command=python(script, "--quality=${trialParameters.quality}", "--epochs=4", "--sleep=0.25"),
        algorithm="tpe",
        parallel=2,
        max_trials=8,
    )
    assert api.request("POST", "/api/v1/apply", json=manifest).status_code == 201
    wait_until(
        lambda: _experiment(api, "resumed")["status"].get("trialsSucceeded", 0) >= 2,
        timeout=60,
        message="two trials done",
    )
    api.close()
    server.kill(signal.SIGKILL)
    server.start()
    api = Api(server)
    try:
        status = _finished(api, "resumed", 100)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["trials"] == 8 and status["trialsSucceeded"] == 8, status
        r = api.request(
            "GET",
            "/api/v1/profiles/admin/trials",
            params={"labelSelector": "katib.kubeflow.org/experiment=resumed"},
        )
        names = sorted(t["metadata"]["name"] for t in r.json()["items"])
        assert names == [f"resumed-{i:04d}" for i in range(8)]
        jobs = api.request("GET", "/api/v1/profiles/admin/trainingjobs").json()["items"]
        assert sorted(j["metadata"]["name"] for j in jobs) == names  # one job per trial, none repeated
        values = [next(a["value"] for a in t["spec"]["parameterAssignments"]) for t in r.json()["items"]]
        assert len(set(values)) == 8  # no parameters drawn twice after the restart
    finally:
        api.close()
