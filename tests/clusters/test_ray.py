"""The ``ray`` backend on a real two-node Ray cluster, plus what the interface does not cover:
options, Ray missing or unreachable, a torch.distributed gang across the nodes, a server
process that goes away, resources given back when a gang ends, an actor that dies, and a
TrainingJob that names the Ray cluster, through the API.

The cluster runs inside a private network namespace (see ``ray_support.py``):
:func:`test_ray_backend_in_a_private_network` re-runs pytest there on every test marked
``ray`` (the conformance suite's ``[ray]`` entries and the tests below), so that those tests
and the two nodes share a network whose only interface is loopback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from lumiflow.clusters import ReplicaPhase, host_placeholder, port_placeholder, registry
from lumiflow.clusters.ray import RayCluster
from lumiflow.common.errors import TemporaryError, ValidationFailed
from lumiflow.common.quantity import Resources
from tests.clusters.ray_support import INSIDE, RayTestCluster, inside_private_network, missing_tools
from tests.clusters.support import (
    BackendFactory,
    Notes,
    gang,
    gated,
    notes_of,
    py,
    read_all,
    replica,
    wait_phase,
    wait_terminal,
)
from tests.helpers import ROOT, pid_alive, wait_until
from tests.jobs import job_manifest, logs, submit
from tests.jobs import wait_phase as wait_job

#: A guard against a hang: the inner run (cluster start, the suite's [ray] entries, the tests
#: below) takes about 1.5 minutes on an idle 2-core machine, up to 4 when it is loaded.
INNER_TIMEOUT = 420

# --- the launcher (host namespace) -------------------------------------------------------


@pytest.mark.timeout(INNER_TIMEOUT + 30)
def test_ray_backend_in_a_private_network(tmp_path: Path) -> None:
    """Runs every test marked ``ray`` in a private network namespace with the Ray cluster."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    if inside_private_network():
        pytest.skip("the launcher itself runs in the machine's network namespace")
    command = [
        "unshare",
        "--net",
        "--",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "ray",
        f"--basetemp={tmp_path / 'inner'}",
        "tests/clusters/test_backend_suite.py",
        "tests/clusters/test_ray.py",
    ]
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, INSIDE: "1"},
        capture_output=True,
        text=True,
        timeout=INNER_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    print(output[-4000:], f"\ninner run: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, f"the Ray tests failed (exit {result.returncode}):\n{output[-20000:]}"
    assert " passed" in output and "skipped" not in output.splitlines()[-1], output[-4000:]


# --- options (no cluster needed) ---------------------------------------------------------


def make(options: dict[str, object], tmp_path: Path) -> RayCluster:
    return RayCluster(name="lab", options=options, home=tmp_path, notify=Notes())


def test_registered_under_its_type_name() -> None:
    assert registry.get("ray") is RayCluster


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"address": "10.0.0.5:6379", "capacity": {"cpu": 4}}, "capacity"),
        ({"address": "10.0.0.5:6379", "adress": "x"}, "adress"),
        ({}, "address"),
        ({"address": "ray://10.0.0.5:10001"}, "address"),
        ({"address": "10.0.0.5:6379", "strategy": "RANDOM"}, "strategy"),
        ({"address": "10.0.0.5:6379", "placement_timeout": 0}, "placement_timeout"),
        ({"address": "10.0.0.5:6379", "inherit_env": "HOME"}, "inherit_env"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], named: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=named) as caught:
        make(options, tmp_path)
    assert caught.value.field is not None and caught.value.field.startswith("clusters.lab.options")


@pytest.mark.timeout(30)
def test_an_unreachable_cluster_offers_nothing_and_asks_to_retry(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    backend = make({"address": "127.0.0.1:9"}, tmp_path)  # nothing listens on the discard port
    try:
        started = time.monotonic()
        capacity = backend.capacity()
        assert capacity.total == Resources() and capacity.per_replica == Resources()
        with pytest.raises(TemporaryError, match=r"127\.0\.0\.1:9"):
            backend.launch(gang("g-unreachable", replica("main", ("true",))))
        assert time.monotonic() - started < 10  # no minute-long retries inside ray.init
        assert backend.status("g-unreachable", 1).replicas == {}
    finally:
        backend.close()


def test_without_ray_installed_the_backend_says_how_to_get_it(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["ray"] = None  # as if the ray extra were not installed
        from pathlib import Path
        from lumiflow.clusters.ray import RayCluster
        from lumiflow.common.errors import ClusterError
        from tests.clusters.support import gang, replica
        backend = RayCluster(name="lab", options={{"address": "10.0.0.5:6379"}},
                             home=Path({str(tmp_path)!r}), notify=lambda gang_id: None)
        assert backend.capacity().total.cpu == 0
        try:
            backend.launch(gang("g-1", replica("main", ("true",))))
        except ClusterError as exc:
            print(exc.message)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'lumiflow[ray]'" in result.stdout


def test_the_replica_supervisor_needs_only_the_standard_library() -> None:
    """It is shipped to the nodes by value: they need Ray, not lumiflow or its dependencies."""
    path = ROOT / "src" / "lumiflow" / "clusters" / "ray" / "replica.py"
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(path)!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lumiflow', 'ray', 'pydantic'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# --- on the cluster (inside the namespace) -----------------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_a_training_job_that_names_the_ray_cluster_runs_there(
    ray_cluster: RayTestCluster, api_factory: Any
) -> None:
    """The whole way: API, scheduler (Ray's capacity), Workload controller, the ray backend,
    and the logs back through the API."""
    clusters = [
        {"name": "local", "type": "local", "home": True},
        {"name": "ray-lab", "type": "ray", "options": ray_cluster.options(ray_cluster.total)},
    ]
    script = "import os; print(os.environ['LUMIFLOW_REPLICA_NAME'], 'ran', flush=True)"
    with api_factory(clusters=clusters) as api:
        submit(api, job_manifest("on-ray", script, replicas=2, cluster="ray-lab"))
        job = wait_job(api, "on-ray", timeout=90)
        assert job["status"]["phase"] == "Succeeded", job
        workload = api.request("GET", "/api/v1/profiles/admin/workloads/on-ray").json()
        assert workload["status"]["cluster"] == "ray-lab"
        hosts = {r["name"]: r["host"] for r in workload["status"]["replicas"]}
        assert set(hosts.values()) == {"127.0.0.2", "127.0.0.3"}, hosts  # SPREAD
        for name in hosts:
            assert f"{name} ran" in logs(api, "on-ray", replica=name)


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_3dgan_pytorchjob_runs_one_rank_per_node_with_identical_parameters(
    ray_cluster: RayTestCluster, api_factory: Any
) -> None:
    """The example's Kubeflow PyTorchJob, unchanged but for the cluster it names, on Ray."""
    pytest.importorskip("torch")
    import copy

    from lumiflow.common.documents import read_manifests

    ((_, doc),) = read_manifests(str(ROOT / "examples" / "3dgan" / "pytorchjob.yaml"))
    doc = copy.deepcopy(doc)
    doc["spec"]["cluster"] = "ray-lab"
    for spec in doc["spec"]["pytorchReplicaSpecs"].values():
        container = spec["template"]["spec"]["containers"][0]
        # This namespace's only interface is lo: tell gloo (a Kubernetes pod has eth0).
        container["env"] = [{"name": "GLOO_SOCKET_IFNAME", "value": "lo"}]
    clusters = [
        {"name": "local", "type": "local", "home": True},
        {"name": "ray-lab", "type": "ray", "options": ray_cluster.options(ray_cluster.total)},
    ]
    with api_factory(clusters=clusters) as api:
        r = api.request("POST", "/api/v1/apply", json=doc)
        assert r.status_code == 201, r.text
        job = wait_job(api, "calo3dgan-pytorch", timeout=240)
        assert job["status"]["phase"] == "Succeeded", job["status"]
        workload = api.request("GET", "/api/v1/profiles/admin/workloads/calo3dgan-pytorch").json()
        hosts = {r["name"]: r["host"] for r in workload["status"]["replicas"]}
        assert set(hosts.values()) == {"127.0.0.2", "127.0.0.3"}, hosts  # one rank per node
        sums = set()
        for replica in hosts:
            text = logs(api, "calo3dgan-pytorch", replica=replica)
            line = next(x for x in text.splitlines() if "parameter checksum sha256" in x)
            sums.add(line.rsplit(" ", 1)[1])
        assert len(sums) == 1, sums


ALL_REDUCE = textwrap.dedent(
    """
    import os, socket, torch, torch.distributed as dist
    dist.init_process_group("gloo", timeout=__import__("datetime").timedelta(seconds=60))
    rank = dist.get_rank()
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    print(f"rank={rank} world={dist.get_world_size()} sum={value.item():g}", flush=True)
    dist.destroy_process_group()
    """
)


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_torch_gang_runs_one_rank_per_node_and_all_reduces(ray_factory: BackendFactory) -> None:
    pytest.importorskip("torch")
    backend = ray_factory()
    gid = ray_factory.gang_id()
    master = {
        "MASTER_ADDR": host_placeholder("worker-0"),
        "MASTER_PORT": port_placeholder("worker-0", "master"),
        "WORLD_SIZE": "2",
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    spec = gang(
        gid,
        replica("worker-0", py(ALL_REDUCE), env={**master, "RANK": "0"}, ports=("master",)),
        replica("worker-1", py(ALL_REDUCE), env={**master, "RANK": "1"}),
    )
    backend.launch(spec)
    done = wait_terminal(backend, gid, timeout=100)

    w0, w1 = done.replicas["worker-0"], done.replicas["worker-1"]
    logs = {name: read_all(backend, gid, name).decode() for name in done.replicas}
    assert w0.phase == ReplicaPhase.SUCCEEDED and w1.phase == ReplicaPhase.SUCCEEDED, (done, logs)
    # SPREAD: one rank per node, each told the other's real address.
    assert {w0.host, w1.host} == {"127.0.0.2", "127.0.0.3"}
    assert w0.ports["master"] > 0
    # (torch may print warnings of its own around the line)
    assert "rank=0 world=2 sum=3" in logs["worker-0"].splitlines()
    assert "rank=1 world=2 sum=3" in logs["worker-1"].splitlines()


@pytest.mark.ray
@pytest.mark.timeout(90)
def test_a_gang_outlives_the_server_process_that_launched_it(
    ray_factory: BackendFactory, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    """Another process (a lumiflow server, with its own Ray driver) launches a gang and exits;
    this one finds the gang running on the cluster, re-attaches, and is notified at its end."""
    backend = ray_factory()  # the home and options the other process uses too
    gid = ray_factory.gang_id()
    gate = tmp_path / "gate"
    options = ray_cluster.options({"cpu": 4, "gpu": 2})
    server = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from lumiflow.clusters.ray import RayCluster
        from tests.clusters.support import gang, gated, replica
        backend = RayCluster(name="test", options={options!r}, home=Path({str(backend.home)!r}),
                             notify=lambda gang_id: None)
        spec = gang({gid!r}, replica("main", gated(Path({str(gate)!r}), before="echo waiting",
                                                   then="echo done; exit 4")))
        status = backend.launch(spec)
        print(json.dumps({{n: [r.phase.value, r.pid] for n, r in status.replicas.items()}}))
        """
    )
    first = subprocess.run(
        [sys.executable, "-c", server], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert first.returncode == 0, first.stderr[-3000:]
    phase, pid = json.loads(first.stdout.strip().splitlines()[-1])["main"]
    assert phase == "Running" and pid_alive(pid)

    seen = backend.status(gid, 1)  # read from the cluster: nothing of it is in this process
    assert seen.replicas["main"].phase == ReplicaPhase.RUNNING
    assert seen.replicas["main"].pid == pid
    assert seen.replicas["main"].host in {"127.0.0.2", "127.0.0.3"}
    assert backend.read_log(gid, 1, "main").data == b"waiting\n"

    assert backend.reattach(gid, 1).replicas["main"].phase == ReplicaPhase.RUNNING
    notes = notes_of(backend)
    notes.clear()
    gate.touch()
    wait_until(lambda: notes.count(gid) >= 1, timeout=20, message="notify after re-attach")
    main = wait_terminal(backend, gid).replicas["main"]
    assert (main.phase, main.exit_code, main.reason) == (ReplicaPhase.FAILED, 4, "Error")
    assert read_all(backend, gid, "main") == b"waiting\ndone\n"


@pytest.mark.ray
@pytest.mark.timeout(90)
def test_an_ended_gang_gives_its_resources_back_and_keeps_its_logs(ray_factory: BackendFactory) -> None:
    """The scheduler counts an ended Workload's resources as free at once, so Ray must too:
    two gangs in turn that each need every GPU of the cluster both run."""
    import ray

    backend = ray_factory()
    first, second = ray_factory.gang_id(), ray_factory.gang_id()
    for gid in (first, second):
        spec = gang(gid, *(replica(f"w-{i}", py(f"print('gang {gid} rank {i}')"), gpu=1) for i in range(2)))
        launched = backend.launch(spec)
        assert all(r.phase != ReplicaPhase.PENDING for r in launched.replicas.values()), launched
        done = wait_terminal(backend, gid, timeout=30)
        assert all(r.phase == ReplicaPhase.SUCCEEDED for r in done.replicas.values()), done
        assert sorted(g for r in done.replicas.values() for g in r.gpus) == ["0", "1"]

    def collected() -> bool:
        names = [f"lumiflow.test.{first}.1.w-{i}" for i in range(2)]
        for name in names:
            try:
                ray.get_actor(name, namespace="lumiflow")
            except ValueError:
                continue
            return False
        return True

    wait_until(collected, timeout=20, message="the first gang's actors to end")
    for i in range(2):
        assert read_all(backend, first, f"w-{i}") == f"gang {first} rank {i}\n".encode()
    assert backend.status(first, 1).replicas["w-0"].exit_code == 0


@pytest.mark.ray
@pytest.mark.timeout(60)
def test_working_directory_source_folder_or_a_scratch_folder_on_the_node(
    ray_factory: BackendFactory, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    backend = ray_factory()
    gid = ray_factory.gang_id()
    given, source = tmp_path / "wd", tmp_path / "src"
    given.mkdir()
    source.mkdir()
    spec = gang(
        gid,
        replica("given", ("pwd",), working_dir=given),
        dataclasses.replace(replica("source", ("pwd",)), source_dir=str(source)),
        dataclasses.replace(replica("elsewhere", ("pwd",)), source_dir="/no/such/folder/on/the/node"),
    )
    backend.launch(spec)
    done = wait_terminal(backend, gid)
    assert all(r.phase == ReplicaPhase.SUCCEEDED for r in done.replicas.values()), done
    assert read_all(backend, gid, "given").decode().strip() == str(given)
    assert read_all(backend, gid, "source").decode().strip() == str(source)
    scratch = Path(read_all(backend, gid, "elsewhere").decode().strip())
    assert scratch.is_relative_to(ray_cluster.node_dir) and scratch.name == "workdir"


@pytest.mark.ray
@pytest.mark.timeout(60)
def test_a_replica_whose_actor_dies_is_lost_with_137(ray_factory: BackendFactory, tmp_path: Path) -> None:
    import ray

    backend = ray_factory()
    gid = ray_factory.gang_id()
    launched = backend.launch(gang(gid, replica("main", gated(tmp_path / "never"))))
    pid = launched.replicas["main"].pid
    assert pid is not None

    ray.kill(ray.get_actor(f"lumiflow.test.{gid}.1.main", namespace="lumiflow"))

    main = wait_phase(backend, gid, "main", ReplicaPhase.FAILED, timeout=20).replicas["main"]
    assert (main.exit_code, main.reason) == (137, "SupervisorLost")
    # Ray ends the children of a worker that dies; the replica does not run on unsupervised.
    wait_until(lambda: not pid_alive(pid), timeout=20, message="the replica to end with its actor")
