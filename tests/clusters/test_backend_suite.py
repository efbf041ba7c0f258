"""The conformance suite of :class:`lumiflow.clusters.base.ClusterBackend`.

Every test here uses only the interface (launch, status, read_log, stop, reattach, release,
capacity, notify), so it runs unchanged on every backend in ``conftest.BACKEND_TYPES``. The
replicas are real processes; tests wait for states by polling with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lumiflow.clusters import GangSpec, ReplicaLaunch, ReplicaPhase, host_placeholder, port_placeholder
from lumiflow.common.errors import ClusterError, NotFound
from tests.clusters.support import (
    BackendFactory,
    gang,
    gated,
    notes_of,
    py,
    q,
    read_all,
    replica,
    sh,
    wait_file,
    wait_log,
    wait_phase,
    wait_terminal,
)
from tests.helpers import pid_alive, wait_until

RUNNING = ReplicaPhase.RUNNING
SUCCEEDED = ReplicaPhase.SUCCEEDED
FAILED = ReplicaPhase.FAILED


# --- launch and exit codes -----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_gang_of_two_runs_then_succeeds(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    gate = tmp_path / "gate"
    spec = gang(gid, replica("worker-0", gated(gate)), replica("worker-1", gated(gate)))

    launched = backend.launch(spec)

    # launch returns once every replica has started: both run (they wait on the gate).
    assert set(launched.replicas) == {"worker-0", "worker-1"}
    assert all(r.phase == RUNNING for r in launched.replicas.values()), launched
    running = backend.status(gid, 1)
    assert [r.phase for r in running.replicas.values()] == [RUNNING, RUNNING]
    assert all(r.exit_code is None for r in running.replicas.values())
    assert not running.all_terminal

    gate.touch()
    done = wait_terminal(backend, gid)
    for r in done.replicas.values():
        assert r.phase == SUCCEEDED, r
        assert r.exit_code == 0


@pytest.mark.timeout(30)
def test_exit_code_3_is_failed_with_3(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    backend.launch(gang(gid, replica("main", sh("exit 3"))))

    done = wait_terminal(backend, gid)
    main = done.replicas["main"]
    assert main.phase == FAILED
    assert main.exit_code == 3


@pytest.mark.timeout(30)
def test_replica_killed_by_sigkill_exits_137(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    launched = backend.launch(gang(gid, replica("main", ("sleep", "1000"))))
    pid = launched.replicas["main"].pid
    assert pid is not None and pid_alive(pid)

    os.kill(pid, signal.SIGKILL)

    main = wait_terminal(backend, gid).replicas["main"]
    assert main.phase == FAILED
    assert main.exit_code == 137


@pytest.mark.timeout(30)
def test_command_that_does_not_exist_fails_to_start(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    missing = "lumiflow-no-such-command-xyz"

    launched = backend.launch(gang(gid, replica("main", (missing, "--flag"))))

    # "Failed to start" is a state launch already knows when it returns.
    assert launched.replicas["main"].phase != ReplicaPhase.PENDING
    main = wait_terminal(backend, gid).replicas["main"]
    assert main.phase == FAILED
    assert main.exit_code == 127
    assert main.reason == "StartError"
    log = read_all(backend, gid, "main").decode()
    assert missing in log
    assert "No such file" in log


# --- logs ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_read_log_is_exact_incremental_and_completes(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    gate = tmp_path / "gate"
    argv = gated(gate, before="echo out-1; echo err-1 >&2", then="echo out-2; echo err-2 >&2")
    backend.launch(gang(gid, replica("main", argv)))

    first = wait_log(backend, gid, "main", b"out-1\nerr-1\n")
    assert first.next_offset == len(b"out-1\nerr-1\n")
    assert first.complete is False
    # Nothing new yet: same offset, still not complete.
    again = backend.read_log(gid, 1, "main", offset=first.next_offset)
    assert (again.data, again.next_offset, again.complete) == (b"", first.next_offset, False)

    gate.touch()
    wait_terminal(backend, gid)
    rest = backend.read_log(gid, 1, "main", offset=first.next_offset)
    assert rest.data == b"out-2\nerr-2\n"
    assert rest.next_offset == len(b"out-1\nerr-1\nout-2\nerr-2\n")
    assert rest.complete is True

    # A bounded read of an ended replica is complete only when it reached the end.
    head = backend.read_log(gid, 1, "main", offset=0, max_bytes=4)
    assert (head.data, head.next_offset, head.complete) == (b"out-", 4, False)
    tail = backend.read_log(gid, 1, "main", offset=head.next_offset)
    assert head.data + tail.data == b"out-1\nerr-1\nout-2\nerr-2\n"
    assert tail.complete is True


@pytest.mark.timeout(30)
def test_read_log_of_unknown_replica_or_gang_is_not_found(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    backend.launch(gang(gid, replica("main", sh("echo hi"))))
    wait_terminal(backend, gid)

    with pytest.raises(NotFound):
        backend.read_log(gid, 1, "no-such-replica")
    with pytest.raises(NotFound):
        backend.read_log(gid, 2, "main")  # an attempt that never ran
    with pytest.raises(NotFound):
        backend.read_log("g-never-launched", 1, "main")
    assert read_all(backend, gid, "main") == b"hi\n"


# --- idempotent launch and attempts ------------------------------------------------------


@pytest.mark.timeout(30)
def test_launch_twice_starts_each_replica_once(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    gate, starts = tmp_path / "gate", tmp_path / "starts"

    def spec(attempt: int) -> GangSpec:
        def r(name: str) -> ReplicaLaunch:
            before = f"echo {name}-{attempt} >> {q(starts)}"
            return replica(name, gated(gate, before=before, then=f"echo attempt-{attempt}"))

        return gang(gid, r("worker-0"), r("worker-1"), attempt=attempt)

    first = backend.launch(spec(1))
    pids = {n: r.pid for n, r in first.replicas.items()}
    second = backend.launch(spec(1))
    assert {n: r.pid for n, r in second.replicas.items()} == pids
    assert all(r.phase == RUNNING for r in second.replicas.values())

    gate.touch()
    ended = wait_terminal(backend, gid)
    assert all(r.phase == SUCCEEDED for r in ended.replicas.values())
    # Launching an attempt that already ended starts nothing either.
    again = backend.launch(spec(1))
    assert all(r.phase == SUCCEEDED for r in again.replicas.values())
    assert sorted(starts.read_text().split()) == ["worker-0-1", "worker-1-1"]

    # A new attempt: fresh processes, their own logs.
    gate.unlink()
    fresh = backend.launch(spec(2))
    assert all(r.phase == RUNNING for r in fresh.replicas.values())
    assert backend.status(gid, 1).all_terminal  # attempt 1 is untouched
    gate.touch()
    wait_terminal(backend, gid, attempt=2)
    assert sorted(starts.read_text().split()) == ["worker-0-1", "worker-0-2", "worker-1-1", "worker-1-2"]
    for name in ("worker-0", "worker-1"):
        assert read_all(backend, gid, name, attempt=1) == b"attempt-1\n"
        assert read_all(backend, gid, name, attempt=2) == b"attempt-2\n"


@pytest.mark.timeout(30)
def test_concurrent_launches_start_each_replica_once(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    gate, starts = tmp_path / "gate", tmp_path / "starts"
    names = [f"w-{i}" for i in range(4)]
    spec = gang(gid, *(replica(n, gated(gate, before=f"echo {n} >> {q(starts)}")) for n in names))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: backend.launch(spec), range(3)))

    for result in results:
        assert set(result.replicas) == set(names)
        assert all(r.phase == RUNNING for r in result.replicas.values()), result
    gate.touch()
    wait_terminal(backend, gid)
    assert sorted(starts.read_text().split()) == names


@pytest.mark.timeout(30)
def test_status_while_launching_does_not_keep_replicas_from_starting(backend_factory: BackendFactory) -> None:
    """``status`` may run in any thread at any time (a notify wakes a reader)."""
    backend = backend_factory()
    gids = [backend_factory.gang_id() for _ in range(12)]
    current = [gids[0]]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            backend.status(current[0], 1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for gid in gids:
            current[0] = gid
            launched = backend.launch(gang(gid, *(replica(f"r-{i}", sh("exit 0")) for i in range(3))))
            assert all(r.phase != ReplicaPhase.PENDING for r in launched.replicas.values()), launched
    finally:
        done.set()
        watcher.join(timeout=10)
    for gid in gids:
        assert all(r.phase == SUCCEEDED for r in wait_terminal(backend, gid).replicas.values())


# --- environment -------------------------------------------------------------------------

DUMP_ENV = "import json, os, sys; print(json.dumps(dict(os.environ)))"


@pytest.mark.timeout(30)
def test_environment_addresses_and_gpus(backend_factory: BackendFactory) -> None:
    backend = backend_factory(capacity={"cpu": 4, "gpu": 2})
    gid = backend_factory.gang_id()
    peer = f"{host_placeholder('worker-1')}:{port_placeholder('worker-1', 'p')}"
    env = {
        "GREETING": "hello world",
        "PEER": peer,
        "OWN": f"{host_placeholder('worker-0')}:{port_placeholder('worker-0', 'p')}",
    }
    spec = gang(
        gid,
        replica("worker-0", py(DUMP_ENV), env=env, gpu=1, ports=("p",)),
        replica("worker-1", py(DUMP_ENV), env={"GREETING": "hi"}, gpu=1, ports=("p",)),
        replica("ps", py(DUMP_ENV)),
    )
    backend.launch(spec)
    status = wait_terminal(backend, gid)
    assert all(r.phase == SUCCEEDED for r in status.replicas.values()), status
    seen = {name: json.loads(read_all(backend, gid, name)) for name in status.replicas}

    w0, w1 = status.replicas["worker-0"], status.replicas["worker-1"]
    assert seen["worker-0"]["GREETING"] == "hello world"
    assert seen["worker-1"]["GREETING"] == "hi"
    assert "GREETING" not in seen["ps"]
    assert seen["worker-0"]["PEER"] == f"{w1.host}:{w1.ports['p']}"
    assert seen["worker-0"]["OWN"] == f"{w0.host}:{w0.ports['p']}"
    assert w0.ports["p"] != w1.ports["p"]
    assert "${lumiflow:" not in json.dumps(seen)

    venv_bin = str(Path(sys.executable).parent)
    for name, replica_env in seen.items():
        assert replica_env["PATH"].split(":")[0] == venv_bin, name

    gpus0 = seen["worker-0"]["CUDA_VISIBLE_DEVICES"]
    gpus1 = seen["worker-1"]["CUDA_VISIBLE_DEVICES"]
    assert gpus0 and gpus1 and gpus0 != gpus1
    assert "," not in gpus0 and "," not in gpus1
    assert [gpus0] == w0.gpus
    assert [gpus1] == w1.gpus
    assert seen["ps"]["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.timeout(30)
def test_ports_given_to_a_replica_can_be_served_and_reached(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    server = (
        "import os, socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind((os.environ['HOST'], int(os.environ['PORT']))); s.listen()\n"
        "c, _ = s.accept(); print(c.recv(100).decode())\n"
    )
    client = (
        "import os, socket, time\n"
        "host, port = os.environ['SERVER'].rsplit(':', 1)\n"
        "deadline = time.monotonic() + 20\n"
        "while True:\n"
        "    try:\n"
        "        c = socket.create_connection((host, int(port)), timeout=1); break\n"
        "    except OSError:\n"
        "        if time.monotonic() > deadline: raise\n"
        "        time.sleep(0.05)\n"
        "c.sendall(b'ping from client'); c.close()\n"
    )
    server_env = {"HOST": host_placeholder("server"), "PORT": port_placeholder("server", "svc")}
    spec = gang(
        gid,
        replica("server", py(server), env=server_env, ports=("svc",)),
        replica(
            "client",
            py(client),
            env={"SERVER": f"{host_placeholder('server')}:{port_placeholder('server', 'svc')}"},
        ),
    )
    backend.launch(spec)
    status = wait_terminal(backend, gid, timeout=25)
    assert all(r.phase == SUCCEEDED for r in status.replicas.values()), status
    assert read_all(backend, gid, "server") == b"ping from client\n"


@pytest.mark.timeout(30)
def test_placeholder_naming_unknown_replica_starts_nothing(backend_factory: BackendFactory) -> None:
    backend = backend_factory(capacity={"cpu": 4, "gpu": 2})
    gid = backend_factory.gang_id()
    spec = gang(
        gid,
        replica("worker-0", ("sleep", "1000"), gpu=1),
        replica("worker-1", ("sleep", "1000"), gpu=1, env={"PEER": host_placeholder("worker-9")}),
    )
    with pytest.raises(ClusterError, match="worker-9"):
        backend.launch(spec)

    # A gang starts all or nothing: it holds no GPU, and (checked after the next launch has
    # returned, so that a replica started by mistake had time to show) none of it runs.
    other = backend_factory.gang_id()
    launched = backend.launch(
        gang(other, replica("a", ("sleep", "1000"), gpu=1), replica("b", ("sleep", "1000"), gpu=1))
    )
    assert all(r.phase == RUNNING for r in launched.replicas.values()), launched
    status = backend.status(gid, 1)
    assert not any(r.phase == RUNNING or r.phase.is_terminal() for r in status.replicas.values()), status
    backend.stop(other, 1, grace_seconds=0)


# --- stop ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_stop_ends_a_running_gang_with_reason_stopped(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    backend.launch(gang(gid, replica("a", ("sleep", "1000")), replica("b", ("sleep", "1000"))))
    pids = [r.pid for r in backend.status(gid, 1).replicas.values()]

    backend.stop(gid, 1)
    backend.stop(gid, 1)  # idempotent

    done = wait_terminal(backend, gid)
    for r in done.replicas.values():
        assert r.phase == FAILED
        assert r.reason == "Stopped"
        assert r.exit_code == 128 + signal.SIGTERM
    assert not any(pid_alive(p) for p in pids if p)
    backend.stop(gid, 1)  # stopping an ended gang changes nothing
    assert backend.status(gid, 1).replicas["a"].reason == "Stopped"


@pytest.mark.timeout(30)
def test_stop_kills_a_replica_that_ignores_sigterm_after_the_grace_period(
    backend_factory: BackendFactory,
) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    grace = 1.0
    argv = sh("trap '' TERM; echo ready; exec sleep 1000")
    backend.launch(gang(gid, replica("stubborn", argv), grace=grace))
    wait_log(backend, gid, "stubborn", b"ready\n")

    started = time.monotonic()
    backend.stop(gid, 1)
    done = wait_terminal(backend, gid, timeout=grace + 10)
    elapsed = time.monotonic() - started

    assert elapsed >= grace
    assert elapsed < grace + 3
    stubborn = done.replicas["stubborn"]
    assert stubborn.reason == "Stopped"
    assert stubborn.exit_code == 137


@pytest.mark.timeout(30)
def test_stop_grace_seconds_overrides_the_gang_grace(backend_factory: BackendFactory) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    argv = sh("trap '' TERM; echo ready; exec sleep 1000")
    backend.launch(gang(gid, replica("stubborn", argv), grace=60))
    wait_log(backend, gid, "stubborn", b"ready\n")

    started = time.monotonic()
    backend.stop(gid, 1, grace_seconds=0.5)
    done = wait_terminal(backend, gid, timeout=10)
    elapsed = time.monotonic() - started

    assert 0.5 <= elapsed < 3.5
    assert done.replicas["stubborn"].reason == "Stopped"
    assert done.replicas["stubborn"].exit_code == 137


@pytest.mark.timeout(30)
def test_stop_leaves_no_child_process_behind(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    plain, stubborn = tmp_path / "plain.pid", tmp_path / "stubborn.pid"
    spec = gang(
        gid,
        replica("plain", sh(f"sleep 1000 & echo $! > {q(plain)}; wait")),
        # The grandchild ignores SIGTERM; the shell itself dies of it.
        replica("stubborn", sh(f"(trap '' TERM; exec sleep 1000) & echo $! > {q(stubborn)}; wait")),
        grace=30,
    )
    backend.launch(spec)
    grandchildren = [int(wait_file(plain)), int(wait_file(stubborn))]
    assert all(pid_alive(p) for p in grandchildren)

    backend.stop(gid, 1)
    done = wait_terminal(backend, gid)

    assert all(r.reason == "Stopped" for r in done.replicas.values())
    wait_until(lambda: not any(pid_alive(p) for p in grandchildren), timeout=5, message="grandchildren gone")


@pytest.mark.timeout(30)
def test_background_processes_end_with_the_replica(backend_factory: BackendFactory, tmp_path: Path) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    pidfile = tmp_path / "bg.pid"
    backend.launch(gang(gid, replica("main", sh(f"sleep 1000 & echo $! > {q(pidfile)}; exit 0"))))
    done = wait_terminal(backend, gid)
    assert done.replicas["main"].phase == SUCCEEDED
    grandchild = int(wait_file(pidfile))
    wait_until(lambda: not pid_alive(grandchild), timeout=5, message="background process gone")


# --- notify ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_notify_is_called_with_the_gang_id_when_a_replica_exits(
    backend_factory: BackendFactory, tmp_path: Path
) -> None:
    backend = backend_factory()
    notes = notes_of(backend)
    gid = backend_factory.gang_id()
    gate = tmp_path / "gate"
    backend.launch(gang(gid, replica("main", gated(gate))))
    notes.clear()

    gate.touch()
    wait_until(lambda: notes.count(gid) >= 1, message="notify for the gang")
    assert backend.status(gid, 1).replicas["main"].phase == SUCCEEDED


# --- re-attach -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_new_backend_over_the_same_home_reattaches(backend_factory: BackendFactory, tmp_path: Path) -> None:
    first = backend_factory()
    gid = backend_factory.gang_id()
    gate_early, gate_late = tmp_path / "early", tmp_path / "late"
    spec = gang(
        gid,
        replica("early", gated(gate_early, then="exit 5")),
        replica("late", gated(gate_late, then="exit 0")),
    )
    launched = first.launch(spec)
    early_pid = launched.replicas["early"].pid
    assert early_pid is not None
    first.close()  # the server goes away; the replicas keep running

    # "early" ends while no server exists.
    gate_early.touch()
    wait_until(lambda: not pid_alive(early_pid), message="early replica to end")

    second = backend_factory()  # a restarted server, same home
    notes = notes_of(second)
    seen = second.status(gid, 1)
    assert seen.replicas["late"].phase == RUNNING
    assert seen.replicas["late"].pid == launched.replicas["late"].pid
    early = wait_phase(second, gid, "early", FAILED).replicas["early"]
    assert early.exit_code == 5

    reattached = second.reattach(gid, 1)
    assert reattached.replicas["late"].phase == RUNNING
    notes.clear()
    gate_late.touch()
    wait_until(lambda: notes.count(gid) >= 1, message="notify on the new backend")
    final = wait_terminal(second, gid)
    assert final.replicas["late"].phase == SUCCEEDED
    assert final.replicas["late"].exit_code == 0
    assert final.replicas["early"].exit_code == 5


# --- release and capacity ------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stopped_before", [False, True], ids=["running", "stopping"])
def test_release_stops_what_runs_and_forgets_the_gang(
    backend_factory: BackendFactory, stopped_before: bool
) -> None:
    backend = backend_factory()
    gid = backend_factory.gang_id()
    spec = gang(
        gid,
        replica("plain", ("sleep", "1000")),
        replica("stubborn", sh("trap '' TERM; echo ready; exec sleep 1000")),
        grace=60,
    )
    launched = backend.launch(spec)
    wait_log(backend, gid, "stubborn", b"ready\n")
    pids = [r.pid for r in launched.replicas.values() if r.pid]
    assert len(pids) == 2
    if stopped_before:
        backend.stop(gid, 1)  # a stop with the gang's long grace is under way

    started = time.monotonic()
    backend.release(gid)
    assert time.monotonic() - started < 5

    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5, message="replicas gone")
    assert backend.status(gid, 1).replicas == {}
    with pytest.raises(NotFound):
        backend.read_log(gid, 1, "plain")
    backend.release(gid)  # idempotent
    backend.release("g-never-launched")


@pytest.mark.timeout(30)
def test_capacity_reflects_the_options(backend_factory: BackendFactory) -> None:
    capacity = backend_factory(capacity={"cpu": 4, "gpu": 2}).capacity()
    assert capacity.total.cpu == 4
    assert capacity.total.gpu == 2
    assert capacity.per_replica.cpu <= capacity.total.cpu
    assert capacity.per_replica.gpu <= capacity.total.gpu
    assert capacity.total.memory > 0
