"""Building blocks for the cluster-backend tests: a thread-safe notify recorder, a factory
that makes backends of one type over a home, gang builders, and replica commands that wait
on a *gate* file so a test decides when a replica ends (no fixed sleeps in the tests).

Replica commands are plain ``/bin/sh`` or the server's Python, so every backend that runs
processes on this machine (local, and Ray on loopback) can run them; PIDs in statuses are
this machine's, so tests may signal replicas directly.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lumiflow.clusters import (
    ClusterBackend,
    GangSpec,
    GangStatus,
    LogChunk,
    ReplicaLaunch,
    ReplicaPhase,
    registry,
)
from lumiflow.common.quantity import Resources
from tests.helpers import pid_alive, wait_until

PYTHON = sys.executable


class Notes:
    """A ``notify`` callback that records gang ids; safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[str] = []

    def __call__(self, gang_id: str) -> None:
        with self._lock:
            self._ids.append(gang_id)

    def count(self, gang_id: str) -> int:
        with self._lock:
            return self._ids.count(gang_id)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._ids)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()


def notes_of(backend: ClusterBackend) -> Notes:
    """The recorder a factory-made backend calls."""
    assert isinstance(backend.notify, Notes)
    return backend.notify


def _ray_options(capacity: Mapping[str, Any]) -> dict[str, Any]:
    """A Ray cluster's capacity is its nodes', not an option: the running test cluster's
    address, once it is checked to offer what the test asks for."""
    from tests.clusters.ray_support import RayTestCluster

    cluster = RayTestCluster.current
    assert cluster is not None, "no Ray test cluster runs (use the ray_cluster fixture)"
    return cluster.options(capacity)


#: How each backend type is told the capacity a test wants (options are backend-specific).
CAPACITY_OPTIONS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "local": lambda capacity: {"capacity": dict(capacity)},
    "ray": _ray_options,
}

DEFAULT_CAPACITY: Mapping[str, Any] = {"cpu": 4, "gpu": 2}


class BackendFactory:
    """Makes backends of one type. A second call with the same home gives a fresh object over
    the same state, which is how a restarted server re-attaches.

    Gang ids come from :meth:`gang_id`, so that teardown can release every gang a test
    launched (with a fresh backend: the test may have closed its own) and close every backend.
    """

    def __init__(self, type_name: str, default_home: Path) -> None:
        self.type_name = type_name
        self.default_home = default_home
        self._made: list[ClusterBackend] = []
        self._gangs: list[tuple[Path, Mapping[str, Any], str]] = []
        self._last: tuple[Path, Mapping[str, Any]] | None = None

    def __call__(
        self,
        *,
        home: Path | None = None,
        options: Mapping[str, Any] | None = None,
        capacity: Mapping[str, Any] | None = None,
        notes: Notes | None = None,
        name: str = "test",
    ) -> ClusterBackend:
        home = home or self.default_home
        if options is None:
            options = CAPACITY_OPTIONS[self.type_name](capacity or DEFAULT_CAPACITY)
        cls = registry.get(self.type_name)
        backend = cls(name=name, options=options, home=home, notify=notes or Notes())
        self._made.append(backend)
        self._last = (home, options)
        return backend

    def gang_id(self) -> str:
        """A new gang id, released at teardown on the home of the last backend made."""
        assert self._last is not None, "make a backend first"
        gang = f"g-{uuid.uuid4().hex[:10]}"
        self._gangs.append((*self._last, gang))
        return gang

    def cleanup(self) -> None:
        """Releases every gang a test launched, then checks that release ended its processes;
        a survivor is killed by its PID and fails the test."""
        errors: list[BaseException] = []
        for home, options, gang in self._gangs:
            cls = registry.get(self.type_name)
            backend = cls(name="test", options=options, home=home, notify=Notes())
            try:
                pids = [
                    r.pid
                    for attempt in CLEANUP_ATTEMPTS
                    for r in backend.status(gang, attempt).replicas.values()
                    if r.pid and not r.phase.is_terminal()
                ]
                backend.release(gang)
                survivors = [p for p in pids if not _ended(p)]
                for pid in survivors:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if survivors:
                    errors.append(AssertionError(f"release({gang}) left processes {survivors} running"))
            except Exception as exc:  # keep releasing the others
                errors.append(exc)
            finally:
                backend.close()
        for backend in self._made:
            backend.close()
        if errors:
            raise errors[0]


#: The attempts a test may launch of one gang (cleanup looks for their processes).
CLEANUP_ATTEMPTS = (1, 2, 3)


def _ended(pid: int) -> bool:
    try:
        wait_until(lambda: not pid_alive(pid), timeout=5, message=f"process {pid} to end")
    except AssertionError:
        return False
    return True


# --- specs -------------------------------------------------------------------------------


def sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


def py(code: str) -> tuple[str, ...]:
    return (PYTHON, "-c", code)


def q(path: Path | str) -> str:
    return shlex.quote(str(path))


def gated(gate: Path, then: str = "exit 0", before: str = ":") -> tuple[str, ...]:
    """A shell replica that runs ``before``, waits until ``gate`` exists, then runs ``then``."""
    return sh(f"{before}; while [ ! -e {q(gate)} ]; do sleep 0.05; done; {then}")


def replica(
    name: str,
    argv: tuple[str, ...],
    *,
    env: Mapping[str, str] | None = None,
    gpu: int = 0,
    ports: tuple[str, ...] = (),
    working_dir: Path | None = None,
) -> ReplicaLaunch:
    return ReplicaLaunch(
        name=name,
        argv=argv,
        env=dict(env or {}),
        working_dir=str(working_dir) if working_dir else None,
        request=Resources(cpu=0.1, memory=2**20, gpu=gpu),
        ports=ports,
    )


def gang(gang_id: str, *replicas: ReplicaLaunch, attempt: int = 1, grace: float = 5.0) -> GangSpec:
    return GangSpec(
        gang_id=gang_id,
        attempt=attempt,
        display_name="suite",
        profile="tests",
        replicas=tuple(replicas),
        grace_seconds=grace,
    )


# --- waiting ------------------------------------------------------------------------------


def wait_terminal(backend: ClusterBackend, gang_id: str, attempt: int = 1, timeout: float = 10) -> GangStatus:
    def done() -> GangStatus | None:
        status = backend.status(gang_id, attempt)
        return status if status.replicas and status.all_terminal else None

    status = wait_until(done, timeout=timeout, message=f"gang {gang_id}/{attempt} to end")
    assert status is not None
    return status


def wait_phase(
    backend: ClusterBackend,
    gang_id: str,
    name: str,
    phase: ReplicaPhase,
    *,
    attempt: int = 1,
    timeout: float = 10,
) -> GangStatus:
    def reached() -> GangStatus | None:
        status = backend.status(gang_id, attempt)
        r = status.replicas.get(name)
        return status if r is not None and r.phase == phase else None

    status = wait_until(reached, timeout=timeout, message=f"{name} of {gang_id} to be {phase}")
    assert status is not None
    return status


def wait_log(
    backend: ClusterBackend, gang_id: str, name: str, expected: bytes, *, attempt: int = 1
) -> LogChunk:
    """The first chunk of a replica's log once it is exactly ``expected``."""

    def printed() -> LogChunk | None:
        chunk = backend.read_log(gang_id, attempt, name)
        return chunk if chunk.data == expected else None

    chunk = wait_until(printed, message=f"{name} to print {expected!r}")
    assert chunk is not None
    return chunk


def read_all(backend: ClusterBackend, gang_id: str, name: str, *, attempt: int = 1) -> bytes:
    """The whole log of a replica that has ended (reads until ``complete``)."""
    data, offset = b"", 0
    while True:
        chunk = backend.read_log(gang_id, attempt, name, offset=offset)
        data += chunk.data
        offset = chunk.next_offset
        if chunk.complete:
            return data
        assert chunk.data, "log of an ended replica is not complete but returned nothing"


def wait_file(path: Path, timeout: float = 10) -> str:
    """The text of ``path`` once a replica has written a whole line into it."""

    def written() -> str | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return text if text.endswith("\n") else None

    text = wait_until(written, timeout=timeout, message=f"{path.name} to be written")
    assert text is not None
    return text
