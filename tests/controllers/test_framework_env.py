"""The environment every replica of every framework kind sees, compared whole with what the
Kubeflow operators give it.

The expected values are written out by hand from ../shared/KUBEFLOW_COMPAT.md (and the
operators' sources it summarises), not computed by the code under test. Addresses are
resolved as a Kubernetes cluster would (every replica its own host, the framework's port)
and, where it matters, as the local cluster does (one host, a free port per replica).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lumiflow.clusters import Address, resolve_placeholders
from lumiflow.controllers.replicas import build_replicas
from lumiflow.resources import TrainingJob, default_registry, prepare

pytestmark = pytest.mark.timeout(20)

JOB_DIR = Path("/srv/lumiflow/jobs/u1/mnist-uid")
#: What lumiflow adds on top of Kubeflow's variables (besides LUMIFLOW_*).
LUMIFLOW_EXTRAS = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def container(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.cern.ch/ml/train:1.0",
        "command": ["python3", "train.py"],
        "env": [{"name": "USER_VAR", "value": "kept"}],
        "resources": {"requests": {"cpu": "500m"}},
        **extra,
    }


def replica(name: str, replicas: int, **extra: Any) -> dict[str, Any]:
    return {"replicas": replicas, "template": {"spec": {"containers": [container(name, **extra)]}}}


def kubeflow(kind: str, api_version: str, spec: dict[str, Any], name: str = "mnist") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "u1"},
        "spec": spec,
    }


def environments(
    doc: dict[str, Any], hosts: dict[str, str], ports: dict[str, int]
) -> dict[str, dict[str, str]]:
    """Every replica's environment, placeholders resolved with ``hosts``/``ports`` by replica
    name; LUMIFLOW_* variables are checked to be the only others and then left out."""
    prepared = prepare(default_registry(), copy.deepcopy(doc))
    job = prepared.model
    assert isinstance(job, TrainingJob)
    replicas = build_replicas(
        job,
        profile="u1",
        uid="uid",
        public_url="http://lumiflow",
        default_cpu=1.0,
        default_memory=2**29,
        job_dir=JOB_DIR,
    )
    addresses = {
        r.name: Address(host=hosts[r.name], ports={p: ports[r.name] for p in r.ports}) for r in replicas
    }
    out: dict[str, dict[str, str]] = {}
    for r in replicas:
        env = {k: resolve_placeholders(v, addresses) for k, v in r.env.items()}
        assert env["LUMIFLOW_CHECKPOINT_DIR"] == str(JOB_DIR / "checkpoints")
        out[r.name] = {k: v for k, v in env.items() if not k.startswith("LUMIFLOW_")}
    return out


def k8s_hosts(job: str, names: list[str], *, svc: str = "") -> dict[str, str]:
    return {n: f"{job}-{n}{svc}" for n in names}


def expected(kubeflow_vars: dict[str, str], **overrides: str) -> dict[str, str]:
    return {"USER_VAR": "kept", **LUMIFLOW_EXTRAS, **kubeflow_vars, **overrides}


# --- TFJob --------------------------------------------------------------------------------

TF_NAMES = ["chief-0", "ps-0", "worker-0", "worker-1"]


def tfjob(**extra: Any) -> dict[str, Any]:
    spec = {
        "tfReplicaSpecs": {
            "Chief": replica("tensorflow", 1),
            "PS": replica("tensorflow", 1),
            "Worker": replica("tensorflow", 2),
        },
        **extra,
    }
    return kubeflow("TFJob", "kubeflow.org/v1", spec)


def test_tf_config_of_every_replica_is_the_operators() -> None:
    hosts = k8s_hosts("mnist", TF_NAMES, svc=".u1.svc")
    envs = environments(tfjob(), hosts, dict.fromkeys(TF_NAMES, 2222))
    cluster = {
        "chief": ["mnist-chief-0.u1.svc:2222"],
        "ps": ["mnist-ps-0.u1.svc:2222"],
        "worker": ["mnist-worker-0.u1.svc:2222", "mnist-worker-1.u1.svc:2222"],
    }
    tasks = {"chief-0": ("chief", 0), "ps-0": ("ps", 0), "worker-0": ("worker", 0), "worker-1": ("worker", 1)}
    for name, (rtype, index) in tasks.items():
        tf_config = {"cluster": cluster, "task": {"type": rtype, "index": index}, "environment": "cloud"}
        # The operator's string: Go's json.Marshal (sorted map keys, no spaces).
        assert envs[name] == expected({"TF_CONFIG": json.dumps(tf_config, separators=(",", ":"))}), name
    # KUBEFLOW_COMPAT.md's example, worker 1 of 1 chief, 1 ps and 2 workers.
    assert json.loads(envs["worker-1"]["TF_CONFIG"]) == {
        "cluster": {
            "chief": ["mnist-chief-0.u1.svc:2222"],
            "ps": ["mnist-ps-0.u1.svc:2222"],
            "worker": ["mnist-worker-0.u1.svc:2222", "mnist-worker-1.u1.svc:2222"],
        },
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }


def test_tf_config_on_the_local_cluster_has_one_host_and_a_port_per_replica() -> None:
    ports = {"chief-0": 40001, "ps-0": 40002, "worker-0": 40003, "worker-1": 40004}
    envs = environments(tfjob(), dict.fromkeys(TF_NAMES, "127.0.0.1"), ports)
    assert json.loads(envs["ps-0"]["TF_CONFIG"]) == {
        "cluster": {
            "chief": ["127.0.0.1:40001"],
            "ps": ["127.0.0.1:40002"],
            "worker": ["127.0.0.1:40003", "127.0.0.1:40004"],
        },
        "task": {"type": "ps", "index": 0},
        "environment": "cloud",
    }


def test_a_single_replica_tfjob_gets_no_tf_config() -> None:
    doc = kubeflow("TFJob", "kubeflow.org/v1", {"tfReplicaSpecs": {"Worker": replica("tensorflow", 1)}})
    envs = environments(doc, {"worker-0": "h"}, {"worker-0": 2222})
    assert envs == {"worker-0": expected({})}


def test_tf_config_with_master_and_evaluator() -> None:
    doc = kubeflow(
        "TFJob",
        "kubeflow.org/v1",
        {"tfReplicaSpecs": {"Master": replica("tensorflow", 1), "Evaluator": replica("tensorflow", 1)}},
    )
    names = ["master-0", "evaluator-0"]
    envs = environments(doc, k8s_hosts("mnist", names), dict.fromkeys(names, 2222))
    cluster = {"evaluator": ["mnist-evaluator-0:2222"], "master": ["mnist-master-0:2222"]}
    for name, rtype in (("master-0", "master"), ("evaluator-0", "evaluator")):
        config = {"cluster": cluster, "task": {"type": rtype, "index": 0}, "environment": "cloud"}
        assert envs[name] == expected({"TF_CONFIG": json.dumps(config, separators=(",", ":"))})


def test_dynamic_workers_get_the_sparse_cluster_spec() -> None:
    hosts = k8s_hosts("mnist", TF_NAMES)
    envs = environments(tfjob(enableDynamicWorker=True), hosts, dict.fromkeys(TF_NAMES, 2222))
    sparse = {name: json.loads(env["TF_CONFIG"]) for name, env in envs.items()}
    assert sparse["worker-1"] == {
        "sparseCluster": {"worker": {"1": "mnist-worker-1:2222"}, "ps": ["mnist-ps-0:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert sparse["ps-0"] == {
        "sparseCluster": {"worker": {}, "ps": ["mnist-ps-0:2222"]},
        "task": {"type": "ps", "index": 0},
    }
    assert sparse["chief-0"] == {
        "sparseCluster": {"worker": {}, "ps": []},
        "task": {"type": "chief", "index": 0},
    }


# --- PyTorchJob ---------------------------------------------------------------------------


def pytorchjob(workers: int = 2, master: bool = True, **extra: Any) -> dict[str, Any]:
    specs: dict[str, Any] = {"Worker": replica("pytorch", workers)}
    if master:
        specs["Master"] = replica("pytorch", 1)
    return kubeflow("PyTorchJob", "kubeflow.org/v1", {"pytorchReplicaSpecs": specs, **extra})


def test_pytorch_master_and_workers() -> None:
    names = ["master-0", "worker-0", "worker-1"]
    envs = environments(pytorchjob(), k8s_hosts("mnist", names), dict.fromkeys(names, 23456))
    for name, rank in (("master-0", 0), ("worker-0", 1), ("worker-1", 2)):
        assert envs[name] == expected(
            {
                "MASTER_ADDR": "mnist-master-0",
                "PET_MASTER_ADDR": "mnist-master-0",
                "MASTER_PORT": "23456",
                "PET_MASTER_PORT": "23456",
                "WORLD_SIZE": "3",
                "RANK": str(rank),
                "PET_NODE_RANK": str(rank),
                "PET_NPROC_PER_NODE": "auto",
                "PET_NNODES": "3",
            }
        ), name


def test_pytorch_world_size_counts_processes_per_node() -> None:
    names = ["master-0", "worker-0"]
    envs = environments(pytorchjob(workers=1, nprocPerNode=4), k8s_hosts("j", names), dict.fromkeys(names, 1))
    assert envs["worker-0"]["WORLD_SIZE"] == "8"
    assert envs["worker-0"]["PET_NPROC_PER_NODE"] == "4"
    assert envs["worker-0"]["RANK"] == "1"


def test_pytorch_local_cluster_points_every_rank_at_the_masters_own_port() -> None:
    names = ["master-0", "worker-0", "worker-1"]
    envs = environments(
        pytorchjob(),
        dict.fromkeys(names, "127.0.0.1"),
        {"master-0": 41000, "worker-0": 41001, "worker-1": 41002},
    )
    assert {(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs.values()} == {("127.0.0.1", "41000")}


def test_pytorch_without_master_follows_kubeflow_workers_only_rules() -> None:
    names = ["worker-0", "worker-1"]
    envs = environments(pytorchjob(master=False), k8s_hosts("mnist", names), dict.fromkeys(names, 23456))
    # No master: no MASTER_ADDR, RANK or WORLD_SIZE; only the node count.
    assert envs == {n: expected({"PET_NNODES": "2"}) for n in names}


def test_pytorch_elastic_policy() -> None:
    elastic = {"minReplicas": 1, "maxReplicas": 3, "maxRestarts": 2, "rdzvId": "run-1"}
    names = ["worker-0", "worker-1"]
    envs = environments(
        pytorchjob(master=False, elasticPolicy=elastic),
        k8s_hosts("mnist", names),
        dict.fromkeys(names, 23456),
    )
    for name in names:
        assert envs[name] == expected(
            {
                "PET_RDZV_ENDPOINT": "mnist-worker-0:23456",
                "PET_RDZV_BACKEND": "c10d",
                "PET_NNODES": "1:3",
                "PET_MAX_RESTARTS": "2",
                "PET_RDZV_ID": "run-1",
            }
        ), name


def test_pytorch_elastic_defaults_min_and_max_to_the_workers() -> None:
    names = ["worker-0", "worker-1"]
    envs = environments(
        pytorchjob(master=False, elasticPolicy={}), k8s_hosts("j", names), dict.fromkeys(names, 7)
    )
    assert envs["worker-1"]["PET_NNODES"] == "2:2"
    assert envs["worker-1"]["PET_RDZV_ENDPOINT"] == "j-worker-0:7"


# --- XGBoostJob ---------------------------------------------------------------------------


def test_xgboost_master_and_workers() -> None:
    doc = kubeflow(
        "XGBoostJob",
        "kubeflow.org/v1",
        {"xgbReplicaSpecs": {"Master": replica("xgboost", 1), "Worker": replica("xgboost", 2)}},
        name="xgb",
    )
    names = ["master-0", "worker-0", "worker-1"]
    envs = environments(doc, k8s_hosts("xgb", names), dict.fromkeys(names, 9999))
    for name, rank in (("master-0", 0), ("worker-0", 1), ("worker-1", 2)):
        assert envs[name] == expected(
            {
                "MASTER_ADDR": "xgb-master-0",
                "MASTER_PORT": "9999",
                "WORLD_SIZE": "3",
                "RANK": str(rank),
                "PYTHONUNBUFFERED": "1",
                "WORKER_PORT": "9999",
                "WORKER_ADDRS": "xgb-worker-0,xgb-worker-1",
            }
        ), name


def test_xgboost_master_alone_has_no_worker_variables() -> None:
    doc = kubeflow("XGBoostJob", "kubeflow.org/v1", {"xgbReplicaSpecs": {"Master": replica("xgboost", 1)}})
    envs = environments(doc, {"master-0": "m"}, {"master-0": 9999})
    assert envs["master-0"] == expected(
        {"MASTER_ADDR": "m", "MASTER_PORT": "9999", "WORLD_SIZE": "1", "RANK": "0"}
    )


# --- MPIJob -------------------------------------------------------------------------------


def mpijob(**extra: Any) -> dict[str, Any]:
    worker = replica("worker", 2)
    del worker["template"]["spec"]["containers"][0]["command"]  # mpi-operator runs sshd
    spec = {
        "slotsPerWorker": 2,
        "mpiReplicaSpecs": {"Launcher": replica("launcher", 1), "Worker": worker},
        **extra,
    }
    return kubeflow("MPIJob", "kubeflow.org/v2beta1", spec, name="pi")


MPI_NAMES = ["launcher-0", "worker-0", "worker-1"]
HOSTFILE = str(JOB_DIR / "mpi" / "hostfile")


def test_mpi_openmpi_launcher_and_workers() -> None:
    envs = environments(mpijob(), k8s_hosts("pi", MPI_NAMES, svc=".pi.u1.svc"), dict.fromkeys(MPI_NAMES, 0))
    assert envs["launcher-0"] == expected(
        {
            "K_MPI_JOB_ROLE": "launcher",
            "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
            "OMPI_MCA_orte_default_hostfile": HOSTFILE,
            "OMPI_MCA_plm_rsh_args": "-o ConnectionAttempts=10",
            "OMPI_MCA_orte_set_default_slots": "2",
            "NVIDIA_VISIBLE_DEVICES": "",
            "NVIDIA_DRIVER_CAPABILITIES": "",
        }
    )
    for name in ("worker-0", "worker-1"):
        assert envs[name] == expected({"K_MPI_JOB_ROLE": "worker"})


def hostfile_and_argv(doc: dict[str, Any], hosts: dict[str, str]) -> tuple[str, dict[str, list[str]]]:
    job = prepare(default_registry(), copy.deepcopy(doc)).model
    assert isinstance(job, TrainingJob)
    replicas = build_replicas(
        job, profile="u1", uid="uid", public_url="u", default_cpu=1, default_memory=1, job_dir=JOB_DIR
    )
    addresses = {r.name: Address(host=hosts[r.name], ports={}) for r in replicas}
    launcher = next(r for r in replicas if r.name == "launcher-0")
    return resolve_placeholders(launcher.env["LUMIFLOW_MPI_HOSTFILE"], addresses), {
        r.name: r.command for r in replicas
    }


def test_mpi_hostfile_lists_workers_with_their_slots() -> None:
    hosts = k8s_hosts("pi", MPI_NAMES, svc=".pi.u1.svc")
    text, argv = hostfile_and_argv(mpijob(), hosts)
    assert text == "pi-worker-0.pi.u1.svc slots=2\npi-worker-1.pi.u1.svc slots=2\n"
    # The launcher's command writes it where the variable points, then runs the user's.
    assert argv["launcher-0"][:2] == ["sh", "-c"]
    assert argv["launcher-0"][-3:] == [HOSTFILE, "python3", "train.py"]
    assert argv["worker-0"] == ["sleep", "2147483647"]  # sshd's stand-in


def test_mpi_intel_with_the_launcher_as_a_worker() -> None:
    doc = mpijob(mpiImplementation="Intel", runLauncherAsWorker=True)
    hosts = k8s_hosts("pi", MPI_NAMES)
    text, _ = hostfile_and_argv(doc, hosts)
    assert text == "pi-launcher-0:2\npi-worker-0:2\npi-worker-1:2\n"
    envs = environments(doc, hosts, dict.fromkeys(MPI_NAMES, 0))
    assert envs["launcher-0"] == expected(
        {
            "K_MPI_JOB_ROLE": "launcher",
            "I_MPI_HYDRA_HOST_FILE": HOSTFILE,
            "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS": "-o ConnectionAttempts=10",
            "I_MPI_PERHOST": "2",
        }
    )


def test_mpi_mpich() -> None:
    envs = environments(
        mpijob(mpiImplementation="MPICH"), dict.fromkeys(MPI_NAMES, "h"), dict.fromkeys(MPI_NAMES, 0)
    )
    assert envs["launcher-0"] == expected(
        {
            "K_MPI_JOB_ROLE": "launcher",
            "HYDRA_HOST_FILE": HOSTFILE,
            "HYDRA_LAUNCH_EXTRA_ARGS": "-o ConnectionAttempts=10",
            "NVIDIA_VISIBLE_DEVICES": "",
            "NVIDIA_DRIVER_CAPABILITIES": "",
        }
    )


# --- batch/v1 Job and what every framework shares -------------------------------------------


def test_a_batch_job_sees_its_container_env_and_lumiflows() -> None:
    doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "trial", "namespace": "u1"},
        "spec": {
            "template": {"spec": {"containers": [container("training-container")], "restartPolicy": "Never"}}
        },
    }
    assert environments(doc, {"worker-0": "h"}, {"worker-0": 0}) == {"worker-0": expected({})}


def test_omp_threads_follow_the_cpu_request_unless_the_user_set_them() -> None:
    doc = pytorchjob(workers=1)
    specs = doc["spec"]["pytorchReplicaSpecs"]
    specs["Master"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1500m"}}
    worker = specs["Worker"]["template"]["spec"]["containers"][0]
    worker["resources"] = {"limits": {"cpu": "3"}}
    worker["env"] = [{"name": "OMP_NUM_THREADS", "value": "7"}, {"name": "RANK", "value": "99"}]
    envs = environments(doc, {"master-0": "m", "worker-0": "w"}, {"master-0": 1, "worker-0": 2})
    assert envs["master-0"]["OMP_NUM_THREADS"] == "2"  # ceil(1.5)
    assert envs["worker-0"]["OMP_NUM_THREADS"] == "7"  # the user's own
    # The operator's variables come after the container's, so they win (as in Kubernetes).
    assert envs["worker-0"]["RANK"] == "1"
