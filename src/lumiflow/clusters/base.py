"""The cluster backend interface: what a cluster must do to run lumiflow's Workloads.

A backend runs *gangs*: all replicas of one Workload attempt, started together. It knows
nothing of kinds, profiles' quotas or Kubeflow; the Workload controller translates a Workload
into a :class:`GangSpec` and the scheduler decides where and when it runs.

Contract, for every implementation (the conformance suite in ``tests/clusters`` checks it):

* ``launch`` is idempotent for one ``(gang_id, attempt)``: calling it again after a crash or
  a timeout never starts a replica twice; it starts only replicas that never started.
  It returns once every replica has started or failed to start.
* ``status`` reads the truth from the cluster (files, Ray, the Kubernetes API), not from
  memory, so that a fresh backend object (a restarted server) sees what an earlier one
  launched. It never blocks on a replica.
* ``stop`` is asynchronous and idempotent: it asks every live replica to terminate
  (SIGTERM or the equivalent) and makes sure it is killed after the grace period;
  ``status`` then shows the replicas terminal with reason ``Stopped``.
* ``reattach`` resumes watching a gang launched by an earlier server process, so that
  ``notify`` fires again when its replicas end.
* ``release`` stops the gang if needed and deletes everything kept for it (logs included).
* ``notify(gang_id)`` is called, from any thread, whenever a replica of the gang may have
  changed state. It must be cheap; the backend may call it spuriously.
* Exit codes follow Kubernetes: a replica killed by signal N exits 128+N (137 = SIGKILL).

Backends register under a type name (``local``, ``ray``, ``kubernetes``) through the
``lumiflow.clusters`` entry-point group; adding one means no edit to the scheduler or to a
controller.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from lumiflow.common.errors import ClusterError
from lumiflow.common.quantity import Resources

Notify = Callable[[str], None]


class ReplicaPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"

    def is_terminal(self) -> bool:
        return self in (ReplicaPhase.SUCCEEDED, ReplicaPhase.FAILED)


@dataclass(frozen=True, slots=True)
class ReplicaLaunch:
    """One replica to start: a process with its command, environment and needs."""

    name: str  # e.g. worker-1, unique in the gang
    argv: tuple[str, ...]
    env: Mapping[str, str]
    working_dir: str | None = None
    #: The folder the job's manifest came from: the working directory when ``working_dir``
    #: is unset and the folder exists where the replica runs; else a fresh scratch folder.
    source_dir: str | None = None
    request: Resources = Resources()
    ports: tuple[str, ...] = ()  # names of the ports the replica listens on


@dataclass(frozen=True, slots=True)
class GangSpec:
    gang_id: str  # the Workload's uid
    attempt: int
    display_name: str  # the owning object's name; processes are named {display_name}-{replica}
    profile: str
    replicas: tuple[ReplicaLaunch, ...]
    grace_seconds: float = 30.0


@dataclass(slots=True)
class ReplicaStatus:
    name: str
    phase: ReplicaPhase
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    host: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None
    gpus: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GangStatus:
    replicas: dict[str, ReplicaStatus]

    @property
    def all_terminal(self) -> bool:
        return all(r.phase.is_terminal() for r in self.replicas.values())

    @property
    def all_running_or_done(self) -> bool:
        return all(r.phase == ReplicaPhase.RUNNING or r.phase.is_terminal() for r in self.replicas.values())


@dataclass(frozen=True, slots=True)
class LogChunk:
    data: bytes
    next_offset: int
    #: True once the replica has ended and every byte up to ``next_offset`` was returned.
    complete: bool


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the cluster offers in all, and the most one replica can get (one node)."""

    total: Resources
    per_replica: Resources

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total.as_dict(), "perReplica": self.per_replica.as_dict()}


class ClusterBackend(ABC):
    type_name: ClassVar[str]

    def __init__(self, *, name: str, options: Mapping[str, Any], home: Path, notify: Notify) -> None:
        self.name = name
        self.options = dict(options)
        self.home = home
        self.notify = notify

    @abstractmethod
    def capacity(self) -> Capacity: ...

    @abstractmethod
    def launch(self, spec: GangSpec) -> GangStatus: ...

    @abstractmethod
    def status(self, gang_id: str, attempt: int) -> GangStatus: ...

    @abstractmethod
    def stop(self, gang_id: str, attempt: int, *, grace_seconds: float | None = None) -> None: ...

    @abstractmethod
    def read_log(
        self, gang_id: str, attempt: int, replica: str, *, offset: int = 0, max_bytes: int = 1 << 20
    ) -> LogChunk:
        """Raises NotFound when the replica has no log."""

    @abstractmethod
    def reattach(self, gang_id: str, attempt: int) -> GangStatus: ...

    @abstractmethod
    def release(self, gang_id: str) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stops background threads; running gangs keep running."""


# --- addresses ------------------------------------------------------------------------

#: A replica's environment may refer to any replica's address before placement:
#: ``${lumiflow:host:worker-0}`` and ``${lumiflow:port:worker-0:tfjob-port}``.
PLACEHOLDER = re.compile(r"\$\{lumiflow:(host|port):([a-z0-9][-a-z0-9]*)(?::([a-z0-9][-a-z0-9]*))?\}")


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    ports: Mapping[str, int]


def resolve_placeholders(value: str, addresses: Mapping[str, Address]) -> str:
    """Replaces address placeholders; raises ClusterError for an unknown replica or port."""

    def substitute(match: re.Match[str]) -> str:
        what, replica, port_name = match.group(1), match.group(2), match.group(3)
        address = addresses.get(replica)
        if address is None:
            raise ClusterError(f"placeholder {match.group(0)} names an unknown replica {replica!r}")
        if what == "host":
            return address.host
        if port_name is None or port_name not in address.ports:
            raise ClusterError(f"placeholder {match.group(0)} names an unknown port")
        return str(address.ports[port_name])

    if "${lumiflow:" not in value:
        return value
    return PLACEHOLDER.sub(substitute, value)


def host_placeholder(replica: str) -> str:
    return f"${{lumiflow:host:{replica}}}"


def port_placeholder(replica: str, port: str) -> str:
    return f"${{lumiflow:port:{replica}:{port}}}"


# --- registry ---------------------------------------------------------------------------


class BackendRegistry:
    """Backend classes by type name, from the ``lumiflow.clusters`` entry points."""

    def __init__(self) -> None:
        self._types: dict[str, type[ClusterBackend]] = {}
        self._broken: dict[str, str] = {}
        self._loaded = False

    def register(self, type_name: str, cls: type[ClusterBackend]) -> None:
        self._types[type_name] = cls

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="lumiflow.clusters"):
            if ep.name in self._types:
                continue
            try:
                cls = ep.load()
            except Exception as exc:  # a backend whose dependencies are missing
                self._broken[ep.name] = str(exc)
                continue
            if isinstance(cls, type) and issubclass(cls, ClusterBackend):
                self._types[ep.name] = cls

    def get(self, type_name: str) -> type[ClusterBackend]:
        self._load_entry_points()
        if type_name not in self._types:
            if type_name in self._broken:
                reason = self._broken[type_name]
                raise ClusterError(f"cluster type {type_name!r} cannot be loaded: {reason}")
            known = ", ".join(sorted(self._types)) or "none"
            raise ClusterError(f"unknown cluster type {type_name!r} (known: {known})")
        return self._types[type_name]

    def types(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._types)


registry = BackendRegistry()
