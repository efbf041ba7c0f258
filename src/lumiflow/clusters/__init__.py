"""Cluster backends (infra layer): where a Workload's replicas actually run.

Backends are found through the ``lumiflow.clusters`` entry-point group; import a backend's
module only through :data:`registry`, never from another backend.
"""

from lumiflow.clusters.base import (
    Address,
    Capacity,
    ClusterBackend,
    GangSpec,
    GangStatus,
    LogChunk,
    ReplicaLaunch,
    ReplicaPhase,
    ReplicaStatus,
    host_placeholder,
    port_placeholder,
    registry,
    resolve_placeholders,
)

__all__ = [
    "Address",
    "Capacity",
    "ClusterBackend",
    "GangSpec",
    "GangStatus",
    "LogChunk",
    "ReplicaLaunch",
    "ReplicaPhase",
    "ReplicaStatus",
    "host_placeholder",
    "port_placeholder",
    "registry",
    "resolve_placeholders",
]
