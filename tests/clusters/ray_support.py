"""A real two-node Ray cluster for the tests, on loopback, inside a private network namespace.

Ray binds every interface and may advertise the machine's own address, so the cluster and the
code that talks to it run in a network namespace of their own whose only interface is
loopback: ``test_ray.py::test_ray_backend_in_a_private_network`` re-runs pytest on the tests
marked ``ray`` under ``unshare --net`` with :data:`INSIDE` set. Inside, the session fixture
``ray_cluster`` (``conftest.py``) brings ``lo`` up and starts

* a head node on 127.0.0.2 and a worker node on 127.0.0.3 (Ray rewrites 127.0.0.1), each with
  2 logical CPUs, 2 GiB of logical memory, a small object store (lumiflow puts nothing big in
  it) and one GPU: the GPUs are declared, not real (device ``0`` on the head, ``1`` on the
  worker), so that GPU bookkeeping is tested without one;
* each with ``ray start --block``, whose SIGTERM handler stops that node's processes; the test
  stops the two PIDs it started, never ``ray stop`` (which stops every Ray on the host), then
  kills by PID whatever is left in the namespace (all of it was started by this run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from lumiflow.clusters.ray.connection import disconnect
from tests.helpers import wait_until

#: Set (to "1") for the pytest that runs inside the private network namespace.
INSIDE = "LUMIFLOW_TEST_RAY_NETNS"
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
GCS_PORT = 6379
CPUS_PER_NODE, GPUS_PER_NODE = 2, 1
MEMORY_PER_NODE = 2 << 30
OBJECT_STORE_PER_NODE = 256 << 20
VENV_BIN = Path(sys.executable).parent


def missing_tools() -> str | None:
    """Why the Ray tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the Ray tests need root, for a private network namespace (unshare --net)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the Ray tests need {tool!r} (util-linux / iproute2)"
    if importlib.util.find_spec("ray") is None or not (VENV_BIN / "ray").exists():
        return "the Ray tests need Ray: pip install 'lumiflow[ray]'"
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return (
            f"the Ray tests need a private network namespace: unshare --net failed ({probe.stderr.strip()})"
        )
    return None


def inside_private_network() -> bool:
    """True in a network namespace whose only interface is loopback (where the Ray tests may
    run: Ray can bind and advertise nothing else there)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def skip_reason() -> str | None:
    """Why the tests marked ``ray`` are skipped in this process, or None."""
    reason = missing_tools()
    if reason:
        return reason
    if os.environ.get(INSIDE) != "1" or not inside_private_network():
        return (
            "runs inside a private network namespace, through "
            "tests/clusters/test_ray.py::test_ray_backend_in_a_private_network"
        )
    return None


def _processes_in_this_network() -> list[int]:
    ours = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/net") == ours:
                pids.append(int(entry))
    return pids


class RayTestCluster:
    """The two nodes; :attr:`current` is the running one (for the factory's options)."""

    current: ClassVar[RayTestCluster | None] = None

    def __init__(self) -> None:
        # Short: Ray's Unix socket paths live under it and must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="lfray-", dir="/tmp"))
        self.node_dir = self.root / "nodes"
        self.address = f"{HEAD_IP}:{GCS_PORT}"
        self._nodes: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def total(self) -> dict[str, int]:
        return {"cpu": 2 * CPUS_PER_NODE, "gpu": 2 * GPUS_PER_NODE}

    def options(self, capacity: Mapping[str, Any]) -> dict[str, Any]:
        """Backend options for a test. Capacity on Ray is the cluster's, not an option: a test
        must ask for what the test cluster has."""
        asked = {k: int(v) for k, v in capacity.items()}
        if asked != self.total:
            raise AssertionError(f"the Ray test cluster offers {self.total}; the test asked for {asked}")
        return {"address": self.address, "node_dir": str(self.node_dir), "placement_timeout": 20}

    def _start_node(self, role: str, ip: str, gpus: str, args: list[str]) -> None:
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            "CUDA_VISIBLE_DEVICES": gpus,
        }
        command = [
            str(VENV_BIN / "ray"),
            "start",
            "--block",
            *args,
            f"--node-ip-address={ip}",
            f"--num-cpus={CPUS_PER_NODE}",
            f"--num-gpus={GPUS_PER_NODE}",
            f"--memory={MEMORY_PER_NODE}",
            f"--object-store-memory={OBJECT_STORE_PER_NODE}",
            f"--temp-dir={self.root / 'ray'}",
        ]
        log = open(self.root / f"{role}.log", "wb")  # noqa: SIM115 - the node writes it while it runs
        with log:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._nodes.append((role, proc))

    def _logs(self) -> str:
        parts = []
        for role, _ in self._nodes:
            with contextlib.suppress(OSError):
                parts.append(f"--- {role} ---\n{(self.root / f'{role}.log').read_text()[-3000:]}")
        return "\n".join(parts)

    def _gcs_listens(self) -> bool:
        for role, proc in self._nodes:
            if proc.poll() is not None:
                raise AssertionError(f"the Ray {role} node exited:\n{self._logs()}")
        try:
            with socket.create_connection((HEAD_IP, GCS_PORT), timeout=1):
                return True
        except OSError:
            return False

    def start(self) -> None:
        assert inside_private_network(), "refusing to start Ray outside a private network namespace"
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        for ip in (HEAD_IP, WORKER_IP):
            # 127.0.0.0/8 is local on lo already; the aliases make the node IPs interface addresses.
            subprocess.run(["ip", "addr", "add", f"{ip}/8", "dev", "lo"], check=False, capture_output=True)
        self.node_dir.mkdir()
        self._start_node("head", HEAD_IP, "0", ["--head", f"--port={GCS_PORT}", "--include-dashboard=false"])
        wait_until(self._gcs_listens, timeout=90, interval=0.2, message="the Ray head's GCS port")
        from lumiflow.clusters.ray import RayCluster

        probe = RayCluster(
            name="probe", options={"address": self.address}, home=self.root / "probe", notify=lambda _: None
        )
        try:

            def cpus() -> float:
                for role, proc in self._nodes:
                    if proc.poll() is not None:
                        raise AssertionError(f"the Ray {role} node exited:\n{self._logs()}")
                return probe.capacity().total.cpu

            self._start_node("worker", WORKER_IP, "1", [f"--address={self.address}"])
            wait_until(lambda: cpus() >= 2 * CPUS_PER_NODE, timeout=120, interval=0.5, message="both nodes")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self._logs()}") from None
        finally:
            probe.close()
        RayTestCluster.current = self

    def stop(self) -> list[int]:
        """Stops the nodes this cluster started, by PID; returns the PIDs of processes that
        were left in the namespace and had to be killed."""
        RayTestCluster.current = None
        disconnect()
        for _, proc in reversed(self._nodes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        leftovers = _processes_in_this_network()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if os.environ.get("LUMIFLOW_TEST_KEEP_RAY_LOGS") != "1":  # set it to debug a failure
            shutil.rmtree(self.root, ignore_errors=True)
        return leftovers
