"""The 3DGAN example as a user runs it: its Kubeflow manifests through lumiflow's API on the
local cluster, and what happens when a worker is killed mid-training."""

from __future__ import annotations

import copy
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from lumiflow.common.documents import read_manifests
from tests.helpers import ROOT, pid_alive, wait_until
from tests.jobs import events, logs, wait_phase

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = ROOT / "examples" / "3dgan"
CHECKSUM = re.compile(r"(?:rank|worker) (\d+) parameter checksum sha256 ([0-9a-f]+)")
TWO_CPUS = [
    {"name": "local", "type": "local", "home": True, "options": {"capacity": {"cpu": 4, "memory": "16Gi"}}}
]


def manifest(name: str, **changes: Any) -> dict[str, Any]:
    """The example's manifest as `lumi apply -f` reads it (annotated with its folder)."""
    ((_, doc),) = read_manifests(str(EXAMPLE / name))
    doc = copy.deepcopy(doc)
    for key, value in changes.items():
        doc["spec"][key] = value
    return doc


def set_args(doc: dict[str, Any], replica_specs: str, args: list[str], restart: str | None = None) -> None:
    for spec in doc["spec"][replica_specs].values():
        container = spec["template"]["spec"]["containers"][0]
        container["args"] = args
        if restart:
            spec["restartPolicy"] = restart


def checksums(api: Any, name: str, replicas: list[str]) -> dict[str, str]:
    found = {}
    for replica in replicas:
        match = CHECKSUM.search(logs(api, name, replica))
        assert match, logs(api, name, replica)
        found[replica] = match.group(2)
    return found


def apply(api: Any, doc: dict[str, Any]) -> None:
    r = api.request("POST", "/api/v1/apply", json=doc)
    assert r.status_code == 201, r.text


def test_the_pytorchjob_trains_with_identical_parameters_on_both_ranks(api_factory: Any) -> None:
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, manifest("pytorchjob.yaml"))
        job = wait_phase(api, "calo3dgan-pytorch", timeout=240)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        sums = checksums(api, "calo3dgan-pytorch", ["master-0", "worker-0"])
        assert len(set(sums.values())) == 1, sums
        assert "g_loss=" in logs(api, "calo3dgan-pytorch", "master-0")


@pytest.mark.tensorflow
def test_the_tfjob_trains_with_multi_worker_mirrored_strategy(api_factory: Any) -> None:
    pytest.importorskip("tensorflow")
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, manifest("tfjob.yaml"))
        job = wait_phase(api, "calo3dgan-tf", timeout=280)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        sums = checksums(api, "calo3dgan-tf", ["worker-0", "worker-1"])
        assert len(set(sums.values())) == 1, sums


def _pid_of(api: Any, job: str, replica: str) -> int:
    workload = api.request("GET", f"/api/v1/profiles/admin/workloads/{job}").json()
    for r in workload["status"].get("replicas", []):
        if r["name"] == replica and r.get("state") == "Running" and r.get("pid"):
            return int(r["pid"])
    return 0


def _checkpoint_dir(api: Any, job: str) -> Path:
    uid = api.request("GET", f"/api/v1/profiles/admin/trainingjobs/{job}").json()["metadata"]["uid"]
    return api.platform.settings.home / "jobs" / "admin" / f"{job}-{uid}" / "checkpoints"


def _kill_worker_after_a_checkpoint(api: Any, job: str) -> None:
    checkpoints = _checkpoint_dir(api, job)
    wait_until(
        lambda: checkpoints.is_dir() and any(checkpoints.iterdir()),
        timeout=200,
        interval=0.1,
        message="the first checkpoint",
    )
    pid = wait_until(lambda: _pid_of(api, job, "worker-0"), timeout=30, message="worker-0 running")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout=10, message="worker-0 to die")


@pytest.mark.parametrize("policy", ["OnFailure", "ExitCode"])
def test_a_killed_worker_restarts_the_gang_which_resumes_from_its_checkpoint(
    api_factory: Any, policy: str
) -> None:
    doc = manifest("pytorchjob.yaml")
    doc["metadata"]["name"] = name = f"calo-kill-{policy.lower()}"
    set_args(
        doc,
        "pytorchReplicaSpecs",
        ["--grid", "small", "--epochs", "4", "--steps-per-epoch", "2", "--batch-size", "4", "--events", "64"],
        restart=policy,
    )
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, doc)
        _kill_worker_after_a_checkpoint(api, name)
        job = wait_phase(api, name, timeout=240)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        assert job["status"]["restartCount"] == 1
        assert "Restarting" in [e["reason"] for e in events(api, name)]
        resumed = logs(api, name, "master-0")  # the latest attempt's log
        assert re.search(r"resumed from \S+: [1-9]\d* epochs", resumed), resumed
        sums = checksums(api, name, ["master-0", "worker-0"])
        assert len(set(sums.values())) == 1, sums


def test_exit_code_policy_fails_at_once_on_the_programs_own_error(api_factory: Any) -> None:
    doc = manifest("pytorchjob.yaml")
    doc["metadata"]["name"] = "calo-bad-args"
    set_args(doc, "pytorchReplicaSpecs", ["--grid", "no-such-grid"], restart="ExitCode")
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, doc)
        job = wait_phase(api, "calo-bad-args", timeout=120)
        assert job["status"]["phase"] == "Failed"
        assert job["status"]["restartCount"] == 0
        assert "ExitCode" in job["status"]["message"]


def test_backoff_limit_one_with_two_kills_fails_the_job(api_factory: Any) -> None:
    doc = manifest("pytorchjob.yaml", runPolicy={"backoffLimit": 1})
    doc["metadata"]["name"] = name = "calo-two-kills"
    set_args(
        doc,
        "pytorchReplicaSpecs",
        ["--grid", "small", "--epochs", "6", "--steps-per-epoch", "2", "--batch-size", "4", "--events", "64"],
        restart="OnFailure",
    )
    with api_factory(clusters=TWO_CPUS) as api:
        apply(api, doc)
        _kill_worker_after_a_checkpoint(api, name)
        wait_until(
            lambda: (
                api.request("GET", f"/api/v1/profiles/admin/trainingjobs/{name}")
                .json()["status"]
                .get("restartCount")
                == 1
                and _pid_of(api, name, "worker-0")
            ),
            timeout=120,
            message="the gang to run again",
        )
        pid = _pid_of(api, name, "worker-0")
        os.kill(pid, signal.SIGKILL)
        job = wait_phase(api, name, "Failed", timeout=120)
        failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "BackoffLimitExceeded"
        assert job["status"]["restartCount"] == 1
