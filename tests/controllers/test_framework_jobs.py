"""Kubeflow kinds run for real on the local cluster, through the API: a PyTorch all_reduce
over gloo, a TFJob whose replicas see the TF_CONFIG the operator would give them, an MPIJob
with its hostfile, checkpoints that outlive a gang restart, and jobs that do not fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ApiHarness
from tests.helpers import pid_alive, wait_until
from tests.jobs import get_job, logs, submit, wait_phase

pytestmark = pytest.mark.timeout(120)


def kubeflow_job(
    kind: str,
    name: str,
    replica_key: str,
    replicas: dict[str, tuple[int, str]],
    *,
    container: str,
    **spec: Any,
) -> dict[str, Any]:
    """``replicas``: type -> (count, python script; "" for a container without a command)."""

    def pod(script: str) -> dict[str, Any]:
        c: dict[str, Any] = {
            "name": container,
            "image": "docker.io/kubeflow/unused-locally:latest",
            "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
        }
        if script:
            c["command"] = ["python3", "-c", script]
        return {"spec": {"containers": [c]}}

    return {
        "apiVersion": "kubeflow.org/v2beta1" if kind == "MPIJob" else "kubeflow.org/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            replica_key: {t: {"replicas": n, "template": pod(script)} for t, (n, script) in replicas.items()},
            **spec,
        },
    }


ALL_REDUCE = """
import os
import torch
import torch.distributed as dist

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
assert world == 2, world
assert os.environ["PET_NODE_RANK"] == str(rank)
dist.init_process_group("gloo")
assert dist.get_rank() == rank and dist.get_world_size() == world
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
print(f"rank={rank} world={world} sum={t.item()} threads={torch.get_num_threads()}", flush=True)
dist.destroy_process_group()
"""


def test_a_pytorchjob_all_reduces_over_gloo(api: ApiHarness) -> None:
    doc = kubeflow_job(
        "PyTorchJob",
        "ddp",
        "pytorchReplicaSpecs",
        {"Master": (1, ALL_REDUCE), "Worker": (1, ALL_REDUCE)},
        container="pytorch",
    )
    created = submit(api, doc)
    assert created["kind"] == "TrainingJob" and created["spec"]["framework"] == "pytorch"
    job = wait_phase(api, "ddp", timeout=100)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    assert logs(api, "ddp", "master-0") == "rank=0 world=2 sum=3.0 threads=1\n"
    assert logs(api, "ddp", "worker-0") == "rank=1 world=2 sum=3.0 threads=1\n"
    # The master's success is the job's (Kubeflow's rule); a worker still finishing then is
    # stopped, so it ends succeeded or stopped, never failed.
    job = wait_until(
        lambda: (
            (j := get_job(api, "ddp")) and all(r["state"] != "Running" for r in j["status"]["replicas"]) and j
        ),
        timeout=30,
        message="every replica to have ended",
    )
    counts = job["status"]["replicaStatuses"]
    assert counts["Master"] == {"active": 0, "succeeded": 1, "failed": 0}
    assert counts["Worker"]["active"] == counts["Worker"]["failed"] == 0


def test_tfjob_replicas_see_tf_config_and_the_ps_is_stopped_when_the_chief_is_done(
    api: ApiHarness, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    printer = (
        "import os, pathlib, time\n"
        "print(os.environ['TF_CONFIG'], flush=True)\n"
        f"pathlib.Path({str(marks)!r}, os.environ['LUMIFLOW_REPLICA_NAME']).write_text(str(os.getpid()))\n"
    )
    ps = printer + "time.sleep(600)\n"  # a parameter server never ends by itself
    chief = (
        printer + f"while len(os.listdir({str(marks)!r})) < 4: time.sleep(0.02)\n"  # everyone printed
    )
    doc = kubeflow_job(
        "TFJob",
        "mnist",
        "tfReplicaSpecs",
        {"Chief": (1, chief), "PS": (1, ps), "Worker": (2, printer)},
        container="tensorflow",
    )
    for rspec in doc["spec"]["tfReplicaSpecs"].values():
        rspec["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "100m"
    submit(api, doc)
    job = wait_phase(api, "mnist", timeout=60)
    status = job["status"]
    assert status["phase"] == "Succeeded", status
    by_name = {r["name"]: r for r in status["replicas"]}
    cluster = {
        rtype: [
            f"{by_name[f'{rtype}-{i}']['host']}:{by_name[f'{rtype}-{i}']['ports']['tfjob-port']}"
            for i in range(count)
        ]
        for rtype, count in (("chief", 1), ("ps", 1), ("worker", 2))
    }
    assert len({addr for addrs in cluster.values() for addr in addrs}) == 4  # a port per replica
    for name in ("chief-0", "ps-0", "worker-0", "worker-1"):
        rtype, index = name.rsplit("-", 1)
        expected = {"cluster": cluster, "task": {"type": rtype, "index": int(index)}, "environment": "cloud"}
        assert json.loads(logs(api, "mnist", name).splitlines()[0]) == expected, name
    ps_pid = int((marks / "ps-0").read_text())
    wait_until(lambda: not pid_alive(ps_pid), timeout=15, message="the PS to be stopped")
    # The PS was stopped by lumiflow, not failed: it counts neither as active nor as failed.
    job = wait_until(
        lambda: (
            (j := get_job(api, "mnist"))
            and {r["name"]: r for r in j["status"]["replicas"]}["ps-0"]["state"] == "Failed"
            and j
        ),
        timeout=15,
        message="the stopped PS in the job's status",
    )
    ps_status = {r["name"]: r for r in job["status"]["replicas"]}["ps-0"]
    assert ps_status["reason"] == "Stopped"
    assert job["status"]["replicaStatuses"]["PS"] == {"active": 0, "succeeded": 0, "failed": 0}
    assert job["status"]["replicaStatuses"]["Chief"] == {"active": 0, "succeeded": 1, "failed": 0}


def test_an_mpijob_gets_its_hostfile_and_cleans_up_everything(api: ApiHarness, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    launcher = (
        "import json, os\n"
        "path = os.environ['OMPI_MCA_orte_default_hostfile']\n"
        f"open({str(seen)!r}, 'w').write(json.dumps({{'hostfile': open(path).read(), "
        "'role': os.environ['K_MPI_JOB_ROLE'], 'path': path}))\n"
    )
    doc = kubeflow_job(
        "MPIJob",
        "pi",
        "mpiReplicaSpecs",
        {"Launcher": (1, launcher), "Worker": (2, "")},  # workers: no command (sshd under Kubeflow)
        container="mpi",
        slotsPerWorker=2,
        runPolicy={"cleanPodPolicy": "All"},
    )
    for rspec in doc["spec"]["mpiReplicaSpecs"].values():
        rspec["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "100m"
    created = submit(api, doc)
    job = wait_phase(api, "pi", timeout=60)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    got = json.loads(seen.read_text())
    assert got["hostfile"] == "127.0.0.1 slots=2\n127.0.0.1 slots=2\n"
    assert got["role"] == "launcher"
    assert got["path"].endswith(f"/jobs/admin/pi-{created['metadata']['uid']}/mpi/hostfile")
    # cleanPodPolicy All: the replicas' records (and logs) go once the job is done.
    wait_until(
        lambda: api.request("GET", "/api/v1/profiles/admin/workloads/pi").status_code == 404,
        timeout=20,
        message="the workload to be cleaned up",
    )
    assert {r["name"] for r in get_job(api, "pi")["status"]["replicas"]} == {
        "launcher-0",
        "worker-0",
        "worker-1",
    }


def test_checkpoints_survive_a_gang_restart_and_go_with_the_job(api: ApiHarness, home: Path) -> None:
    script = (
        "import os, sys\n"
        "from lumiflow.runtime import checkpoint\n"
        "last = checkpoint.latest()\n"
        "if last is None:\n"
        "    checkpoint.save_bytes(3, b'weights-after-epoch-3')\n"
        "    sys.exit(1)  # dies after its checkpoint: the gang restarts (OnFailure)\n"
        "print('resumed', last.step, last.path.read_bytes().decode(), os.environ['LUMIFLOW_ATTEMPT'])\n"
    )
    doc = kubeflow_job(
        "PyTorchJob", "resume", "pytorchReplicaSpecs", {"Worker": (1, script)}, container="pytorch"
    )
    doc["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "100m"}
    }
    created = submit(api, doc)
    job = wait_phase(api, "resume", timeout=60)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    assert job["status"]["restartCount"] == 1
    assert logs(api, "resume", "worker-0") == "resumed 3 weights-after-epoch-3 1\n"
    job_dir = home / "jobs" / "admin" / f"resume-{created['metadata']['uid']}"
    assert [p.name for p in (job_dir / "checkpoints").iterdir()] == ["checkpoint-00000003"]
    r = api.request("DELETE", "/api/v1/profiles/admin/trainingjobs/resume")
    assert r.status_code in (200, 202)
    wait_until(lambda: not job_dir.exists(), timeout=20, message="the job's directory to be removed")


def test_a_job_beyond_quota_waits_and_one_beyond_the_cluster_fails(api_factory: Any) -> None:
    clusters = [
        {"name": "local", "type": "local", "home": True, "options": {"capacity": {"cpu": 4, "memory": "8Gi"}}}
    ]
    with api_factory(clusters=clusters, profiles={"default_quota": {"cpu": "3", "memory": "8Gi"}}) as api:
        two_by_two = kubeflow_job(
            "PyTorchJob",
            "big",
            "pytorchReplicaSpecs",
            {"Master": (1, "print(1)"), "Worker": (1, "print(1)")},
            container="pytorch",
        )
        for rspec in two_by_two["spec"]["pytorchReplicaSpecs"].values():
            rspec["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2"
        submit(api, two_by_two)
        job = wait_phase(api, "big", "Queued", timeout=20)
        assert "waiting for quota of profile admin: cpu 4/3" in job["status"]["message"]

        profile = {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "Profile",
            "metadata": {"name": "lab"},
            "spec": {
                "owner": {"kind": "Group", "name": "admins"},
                "resourceQuotaSpec": {"hard": {"cpu": "100"}},
            },
        }
        assert api.request("POST", "/api/v1/profiles", json=profile).status_code == 201
        three_by_two = json.loads(json.dumps(two_by_two))
        three_by_two["metadata"] = {"name": "huge", "namespace": "lab"}
        three_by_two["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 2
        submit(api, three_by_two)
        job = wait_phase(api, "huge", "Failed", profile="lab", timeout=20)
        failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "Unschedulable"
        assert failed["message"] == "the gang can never fit on cluster local: cpu 6 asked, 4 in all"
