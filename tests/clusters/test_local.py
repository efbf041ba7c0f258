"""Behaviour of the ``local`` backend that the interface does not cover: its shims and
files, its options, GPU bookkeeping across a restart, and the environment it builds."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from lumiflow.clusters import ClusterBackend, ReplicaPhase
from lumiflow.clusters.local import backend as local_backend
from lumiflow.common.errors import ClusterError, ValidationFailed
from tests.clusters.support import (
    BackendFactory,
    gang,
    gated,
    py,
    read_all,
    replica,
    sh,
    wait_terminal,
)
from tests.helpers import pid_alive, wait_until

DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"
# The descriptors open in the replica (the one listdir used is closed again, so fstat fails).
LIST_FDS = """
import json, os
fds = []
for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
    try:
        os.fstat(fd)
    except OSError:
        continue
    fds.append(fd)
print(json.dumps(fds))
"""


def replica_dir(backend: ClusterBackend, gang_id: str, name: str, attempt: int = 1) -> Path:
    return backend.home / "clusters" / backend.name / gang_id / str(attempt) / name


def env_of(backend: ClusterBackend, gang_id: str, name: str = "main") -> dict[str, str]:
    status = wait_terminal(backend, gang_id)
    assert status.replicas[name].phase == ReplicaPhase.SUCCEEDED, status
    env = json.loads(read_all(backend, gang_id, name))
    assert isinstance(env, dict)
    return env


# --- the shim ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_supervisor_killed_is_reported_and_its_replica_does_not_survive(
    local_factory: BackendFactory,
) -> None:
    backend = local_factory()
    gid = local_factory.gang_id()
    launched = backend.launch(gang(gid, replica("main", ("sleep", "1000"))))
    child = launched.replicas["main"].pid
    assert child is not None and pid_alive(child)
    shim = int(json.loads((replica_dir(backend, gid, "main") / "shim.json").read_text())["pid"])
    assert shim != child

    os.kill(shim, signal.SIGKILL)

    status = wait_terminal(backend, gid)
    main = status.replicas["main"]
    assert main.phase == ReplicaPhase.FAILED
    assert main.reason == "SupervisorLost"
    assert main.exit_code == 137
    wait_until(lambda: not pid_alive(child), timeout=5, message="the orphaned replica to be killed")


@pytest.mark.timeout(30)
def test_an_outcome_written_just_before_the_lock_is_probed_is_kept(
    local_factory: BackendFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shim writes ``exit.json`` and then ends; a status that missed the file and then
    finds the lock free must not take the replica for lost."""
    backend = local_factory()
    gid = local_factory.gang_id()
    gate = tmp_path / "gate"
    backend.launch(gang(gid, replica("main", gated(gate, then="exit 0"))))
    real_lock_held = local_backend.lock_held

    def shim_ends_meanwhile(path: Path) -> bool:
        gate.touch()
        wait_until(lambda: (path.parent / "exit.json").exists() and not real_lock_held(path))
        return False

    monkeypatch.setattr(local_backend, "lock_held", shim_ends_meanwhile)
    main = backend.status(gid, 1).replicas["main"]
    assert (main.phase, main.exit_code, main.reason) == (ReplicaPhase.SUCCEEDED, 0, "Completed")


@pytest.mark.timeout(30)
def test_replica_inherits_no_descriptor_of_the_launcher_or_shim(local_factory: BackendFactory) -> None:
    """The lock and the start pipe belong to the shim: a replica holding them would keep
    the replica "alive" in the lock's eyes after its shim died."""
    backend = local_factory()
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", py(LIST_FDS))))
    status = wait_terminal(backend, gid)
    assert status.replicas["main"].phase == ReplicaPhase.SUCCEEDED
    assert json.loads(read_all(backend, gid, "main")) == [0, 1, 2]


@pytest.mark.timeout(30)
def test_files_of_a_replica_and_release_removes_them(local_factory: BackendFactory) -> None:
    backend = local_factory()
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", sh("exit 4"))))
    wait_terminal(backend, gid)
    rdir = replica_dir(backend, gid, "main")
    outcome = json.loads((rdir / "exit.json").read_text())
    assert outcome["exitCode"] == 4
    assert outcome["reason"] == "Error"
    assert (rdir.parent / "gang.json").exists()

    backend.release(gid)
    assert not rdir.parent.parent.exists()


@pytest.mark.timeout(30)
def test_invalid_gang_ids_are_refused(local_factory: BackendFactory) -> None:
    backend = local_factory()
    for bad in ("", "../escape", ".hidden", "a/b"):
        with pytest.raises(ClusterError):
            backend.launch(gang(bad, replica("main", sh("exit 0"))))


# --- options -------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_capacity_is_parsed_from_quantities(local_factory: BackendFactory) -> None:
    capacity = local_factory(options={"capacity": {"cpu": "500m", "memory": "2Gi", "gpu": 2}}).capacity()
    assert capacity.total.cpu == 0.5
    assert capacity.total.memory == 2 * 2**30
    assert capacity.total.gpu == 2
    assert capacity.per_replica == capacity.total


@pytest.mark.timeout(10)
def test_unknown_option_is_refused_by_name(local_factory: BackendFactory) -> None:
    with pytest.raises(ValidationFailed, match="colour") as info:
        local_factory(options={"capacity": {"cpu": 1}, "colour": "blue"})
    assert info.value.field is not None


@pytest.mark.timeout(10)
def test_bad_quantity_is_refused(local_factory: BackendFactory) -> None:
    with pytest.raises(ValidationFailed, match="lots"):
        local_factory(options={"capacity": {"cpu": "lots"}})
    with pytest.raises(ValidationFailed):
        local_factory(options={"capacity": {"gpu": "1.5"}})


@pytest.mark.timeout(30)
def test_gpus_option_names_the_device_ids(local_factory: BackendFactory) -> None:
    backend = local_factory(options={"capacity": {"cpu": 2}, "gpus": ["3", "5"]})
    assert backend.capacity().total.gpu == 2
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", py(DUMP_ENV), gpu=2)))
    assert env_of(backend, gid)["CUDA_VISIBLE_DEVICES"] == "3,5"


# --- environment ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_path_starts_with_the_venv_even_when_it_is_already_on_path(
    local_factory: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"/usr/bin:{venv_bin}:/bin")
    backend = local_factory()
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", py(DUMP_ENV))))
    path = env_of(backend, gid)["PATH"].split(":")
    assert path[0] == venv_bin
    assert path.count(venv_bin) == 1
    assert "/usr/bin" in path


@pytest.mark.timeout(30)
def test_only_listed_server_variables_are_inherited(
    local_factory: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUMIFLOW_TEST_SECRET", "do-not-leak")
    monkeypatch.setenv("LUMIFLOW_TEST_SHARED", "passed")
    monkeypatch.setenv("HOME", "/home/of-the-server")
    backend = local_factory(options={"capacity": {"cpu": 2}, "inherit_env": ["LUMIFLOW_TEST_SHARED"]})
    gid = local_factory.gang_id()
    backend.launch(gang(gid, replica("main", py(DUMP_ENV), env={"HOME": "/home/of-the-replica"})))
    env = env_of(backend, gid)
    assert "LUMIFLOW_TEST_SECRET" not in env
    assert env["LUMIFLOW_TEST_SHARED"] == "passed"
    assert env["HOME"] == "/home/of-the-replica"  # the replica's own env wins


@pytest.mark.timeout(30)
def test_working_directory(local_factory: BackendFactory, tmp_path: Path) -> None:
    backend = local_factory()
    given, default = local_factory.gang_id(), local_factory.gang_id()
    (tmp_path / "wd").mkdir()
    backend.launch(gang(given, replica("main", sh("pwd"), working_dir=tmp_path / "wd")))
    backend.launch(gang(default, replica("main", sh("pwd"))))
    wait_terminal(backend, given)
    wait_terminal(backend, default)
    assert read_all(backend, given, "main").decode().strip() == str(tmp_path / "wd")
    default_dir = read_all(backend, default, "main").decode().strip()
    assert Path(default_dir).is_relative_to(replica_dir(backend, default, "main"))


# --- GPU bookkeeping ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_gpus_are_given_back_when_a_gang_ends(local_factory: BackendFactory) -> None:
    backend = local_factory(capacity={"cpu": 4, "gpu": 2})
    first = local_factory.gang_id()
    backend.launch(gang(first, replica("a", sh("exit 0"), gpu=1), replica("b", sh("exit 0"), gpu=1)))
    wait_terminal(backend, first)
    second = local_factory.gang_id()
    launched = backend.launch(gang(second, replica("a", py(DUMP_ENV), gpu=2)))
    assert launched.replicas["a"].gpus == ["0", "1"]


@pytest.mark.timeout(30)
def test_a_gang_asking_too_many_gpus_holds_none(local_factory: BackendFactory) -> None:
    backend = local_factory(capacity={"cpu": 4, "gpu": 2})
    greedy = local_factory.gang_id()
    spec = gang(greedy, *(replica(f"w-{i}", ("sleep", "1000"), gpu=1) for i in range(3)))
    with pytest.raises(ClusterError, match="GPU"):
        backend.launch(spec)
    fits = local_factory.gang_id()
    launched = backend.launch(
        gang(fits, replica("a", sh("exit 0"), gpu=1), replica("b", sh("exit 0"), gpu=1))
    )
    assert sorted(g for r in launched.replicas.values() for g in r.gpus) == ["0", "1"]


@pytest.mark.timeout(30)
def test_reattach_restores_which_gpus_are_taken(local_factory: BackendFactory, tmp_path: Path) -> None:
    first = local_factory(capacity={"cpu": 4, "gpu": 2})
    running = local_factory.gang_id()
    gate = tmp_path / "gate"
    launched = first.launch(gang(running, replica("main", gated(gate), gpu=1)))
    taken = launched.replicas["main"].gpus
    assert len(taken) == 1
    first.close()

    second = local_factory(capacity={"cpu": 4, "gpu": 2})
    second.reattach(running, 1)
    newcomer = local_factory.gang_id()
    with pytest.raises(ClusterError, match="GPU"):
        second.launch(gang(newcomer, replica("main", sh("exit 0"), gpu=2)))
    other = local_factory.gang_id()
    placed = second.launch(gang(other, replica("main", sh("exit 0"), gpu=1)))
    assert placed.replicas["main"].gpus != taken
    gate.touch()
    wait_terminal(second, running)


# --- how shims are started ----------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fork_server", [True, False])
def test_shims_start_with_or_without_the_fork_server(
    local_factory: BackendFactory, fork_server: bool
) -> None:
    backend = local_factory(options={"capacity": {"cpu": 4}, "fork_server": fork_server})
    gid = local_factory.gang_id()
    gate = backend.home / "gate"
    backend.launch(gang(gid, replica("a", gated(gate, then="echo a")), replica("b", sh("exit 4"))))
    shim_a = int(json.loads((replica_dir(backend, gid, "a") / "shim.json").read_text())["pid"])
    # Either way the shim leads a session of its own, apart from the server's.
    assert os.getsid(shim_a) == shim_a
    assert os.getsid(shim_a) != os.getsid(os.getpid())
    gate.write_text("go")
    status = wait_terminal(backend, gid)
    assert (status.replicas["a"].exit_code, status.replicas["b"].exit_code) == (0, 4)
    assert read_all(backend, gid, "a") == b"a\n"


@pytest.mark.timeout(30)
def test_a_dead_fork_server_falls_back_to_starting_shims_directly(local_factory: BackendFactory) -> None:
    backend = local_factory(options={"capacity": {"cpu": 4}})
    first = local_factory.gang_id()
    backend.launch(gang(first, replica("main", py("print(1)"))))
    assert wait_terminal(backend, first).replicas["main"].exit_code == 0
    server = backend._forkserver._proc  # type: ignore[attr-defined]
    assert server is not None
    server.kill()
    server.wait(timeout=10)
    second = local_factory.gang_id()
    backend.launch(gang(second, replica("main", py("print(2)"))))
    assert wait_terminal(backend, second).replicas["main"].exit_code == 0
    assert read_all(backend, second, "main") == b"2\n"
    # The next launch starts a new fork server.
    third = local_factory.gang_id()
    backend.launch(gang(third, replica("main", py("print(3)"))))
    assert wait_terminal(backend, third).replicas["main"].exit_code == 0
    assert backend._forkserver._proc is not None  # type: ignore[attr-defined]
    assert backend._forkserver._proc.pid != server.pid  # type: ignore[attr-defined]
