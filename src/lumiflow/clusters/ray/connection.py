"""The process's connection to a Ray cluster.

Ray allows one connection (one driver) per process, so this is the single piece of
process-wide state of the backend: every ``RayCluster`` of a process shares it, a second
cluster with another address or namespace is refused, and closing a backend leaves it open
(reconnecting costs seconds; Ray disconnects at exit). ``ray`` is imported here, on first
use, so that lumiflow without the ``ray`` extra imports and runs.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import ModuleType

from lumiflow.common.errors import ClusterError, TemporaryError

log = logging.getLogger(__name__)

#: After a failed attempt, do not try again (and block a caller) for this long.
RETRY_SECONDS = 5.0

_lock = threading.Lock()
_connected: tuple[str, str] | None = None  # (address, namespace)
_last_failure: tuple[str, float, str] | None = None  # (address, when, message)


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(
            "the ray cluster type needs Ray: pip install 'lumiflow[ray]' "
            "(the same Ray and Python versions as the cluster)"
        ) from exc
    return ray


def _reachable(address: str, timeout: float) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def connect(address: str, namespace: str) -> ModuleType:
    """Connects this process to the cluster at ``address`` once; returns the ``ray`` module.

    Raises TemporaryError while the cluster cannot be reached (the controllers retry) and
    ClusterError when this process is connected to another cluster.
    """
    global _connected, _last_failure
    ray = import_ray()
    with _lock:
        if _connected is not None and ray.is_initialized():
            if _connected != (address, namespace):
                raise ClusterError(
                    f"this lumiflow process is connected to the Ray cluster {_connected[0]} "
                    f"(namespace {_connected[1]}); Ray allows one cluster per process, so "
                    f"{address} (namespace {namespace}) cannot be used at the same time"
                )
            return ray
        if _connected is None and ray.is_initialized():
            # Someone else in this process (a notebook, a test) connected already: share it
            # when it is the same cluster.
            context = ray.get_runtime_context()
            current = (context.gcs_address, context.namespace)
            if current != (address, namespace):
                raise ClusterError(
                    f"this process is already connected to the Ray cluster {current[0]} "
                    f"(namespace {current[1]}); Ray allows one cluster per process, so "
                    f"{address} (namespace {namespace}) cannot be used"
                )
            from lumiflow.clusters.ray import replica

            ray.cloudpickle.register_pickle_by_value(replica)
            _connected = (address, namespace)
            return ray
        if (
            _last_failure is not None
            and _last_failure[0] == address
            and time.monotonic() - _last_failure[1] < RETRY_SECONDS
        ):
            raise TemporaryError(_last_failure[2], delay=RETRY_SECONDS)
        try:
            # Fail fast when nothing listens there: ray.init would retry for a minute.
            _reachable(address, timeout=3.0)
            from lumiflow.clusters.ray import replica

            # Ship the replica supervisor by value: the nodes need Ray, not lumiflow.
            ray.cloudpickle.register_pickle_by_value(replica)
            ray.init(
                address=address,
                namespace=namespace,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except Exception as exc:
            message = f"cannot connect to the Ray cluster at {address}: {exc}"
            _last_failure = (address, time.monotonic(), message)
            log.warning("%s", message)
            raise TemporaryError(message, delay=RETRY_SECONDS) from exc
        _connected = (address, namespace)
        _last_failure = None
        return ray


def disconnect() -> None:
    """Disconnects this process from Ray (a server simply exits; tests stop their cluster)."""
    global _connected, _last_failure
    with _lock:
        if _connected is not None:
            import ray

            ray.shutdown()
        _connected = None
        _last_failure = None
