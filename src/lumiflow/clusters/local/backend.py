"""The ``local`` cluster: each replica is a child process under its own shim.

Everything the backend knows lives in files under
``$LUMIFLOW_HOME/clusters/<cluster>/<gang_id>/<attempt>/``: ``gang.json`` (addresses and GPU
assignments, decided once per attempt, before any replica starts) and one directory per
replica (``launch.json``, ``shim.json``, ``child.json``, ``log``, ``exit.json``, ``lock``;
see ``shim.py``). A new backend object over the same folder sees exactly what an old one
launched, which is how the server re-attaches after being killed.

Exits are noticed at once: a watcher thread polls a pidfd per live shim (pidfds work for
processes that are not our children, so re-attached shims are watched the same way).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import marshal
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lumiflow.clusters.base import (
    Address,
    Capacity,
    ClusterBackend,
    GangSpec,
    GangStatus,
    LogChunk,
    Notify,
    ReplicaPhase,
    ReplicaStatus,
    resolve_placeholders,
)
from lumiflow.clusters.local.files import (
    lock_held,
    read_json,
    start_settled,
    started_before,
    take_start_lock,
    ts,
    write_bytes,
    write_json,
)
from lumiflow.clusters.local.supervise import SHIM, ForkServer, Watcher
from lumiflow.clusters.local.warm import DEFAULT_PRELOAD, python_launch
from lumiflow.common.errors import ClusterError, NotFound, ValidationFailed
from lumiflow.common.quantity import QuantityError, Resources, parse_count, parse_cpu, parse_memory

log = logging.getLogger(__name__)


#: Variables of the server's environment a replica inherits (a container would get none).
DEFAULT_INHERITED_ENV = (
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SHELL",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "CUDA_PATH",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CONSTRAINT",
    "HF_HOME",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
)


def _detect_gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def _total_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


class LocalCluster(ClusterBackend):
    type_name = "local"

    def __init__(self, *, name: str, options: Mapping[str, Any], home: Path, notify: Notify) -> None:
        super().__init__(name=name, options=options, home=home, notify=notify)
        self.root = home / "clusters" / name
        self.root.mkdir(parents=True, exist_ok=True)
        allowed = {
            "capacity",
            "gpus",
            "inherit_env",
            "host",
            "python",
            "fork_server",
            "warm_python",
            "preload",
        }
        unknown = set(self.options) - allowed
        if unknown:
            raise ValidationFailed(
                f"cluster {name}: unknown local options {sorted(unknown)} (allowed: {sorted(allowed)})",
                field=f"clusters.{name}.options",
            )
        self.host = str(self.options.get("host", "127.0.0.1"))
        self.python = str(self.options.get("python", sys.executable))
        self._capacity = self._parse_capacity()
        self._inherit = tuple(self.options.get("inherit_env", ())) + DEFAULT_INHERITED_ENV
        self._lock = threading.RLock()
        self._gpu_owner: dict[str, str] = {}  # device id -> "gang/attempt/replica"
        self._ports_taken: set[int] = set()
        self._watcher = Watcher(self.notify)
        self._watcher.start()
        use_fork_server = bool(self.options.get("fork_server", True))
        self._forkserver: ForkServer | None = ForkServer(self.python) if use_fork_server else None
        # Python replicas fork off a warm interpreter (see warm.py) unless warm_python: false.
        self._warm_env = self._base_env()
        self._warm: ForkServer | None = None
        if use_fork_server and bool(self.options.get("warm_python", True)):
            preload = self.options.get("preload", DEFAULT_PRELOAD)
            if not isinstance(preload, list | tuple) or not all(isinstance(m, str) for m in preload):
                raise ValidationFailed(
                    f"cluster {name}: preload must be a list of module names",
                    field=f"clusters.{name}.options.preload",
                )
            self._warm = ForkServer(self.python, preload=tuple(preload), env=self._warm_env)

    # --- capacity --------------------------------------------------------------------

    def _parse_capacity(self) -> Capacity:
        raw = dict(self.options.get("capacity", {}) or {})
        gpus = self.options.get("gpus")
        try:
            cpu = parse_cpu(raw.get("cpu", os.cpu_count() or 1))
            memory = parse_memory(raw.get("memory", _total_memory()))
            if gpus is not None:
                self._gpu_ids = [str(g) for g in gpus]
            elif "gpu" in raw:
                self._gpu_ids = [str(i) for i in range(parse_count(raw["gpu"]))]
            else:
                self._gpu_ids = _detect_gpus()
        except QuantityError as exc:
            raise ValidationFailed(f"cluster {self.name}: capacity: {exc}", field="capacity") from exc
        total = Resources(cpu=cpu, memory=memory, gpu=len(self._gpu_ids))
        return Capacity(total=total, per_replica=total)

    def capacity(self) -> Capacity:
        return self._capacity

    # --- paths -----------------------------------------------------------------------

    def _attempt_dir(self, gang_id: str, attempt: int) -> Path:
        if not gang_id or "/" in gang_id or gang_id.startswith("."):
            raise ClusterError(f"invalid gang id {gang_id!r}")
        return self.root / gang_id / str(int(attempt))

    # --- allocation ------------------------------------------------------------------

    def _free_port(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                port = int(sock.getsockname()[1])
            if port not in self._ports_taken:
                self._ports_taken.add(port)
                return port
        raise ClusterError("no free port found")

    def _allocate_gpus(self, owner: str, count: int) -> list[str]:
        free = [g for g in self._gpu_ids if g not in self._gpu_owner]
        if len(free) < count:
            raise ClusterError(f"{count} GPU(s) asked, {len(free)} free on cluster {self.name}")
        chosen = free[:count]
        for g in chosen:
            self._gpu_owner[g] = owner
        return chosen

    def _plan(self, spec: GangSpec, attempt_dir: Path) -> dict[str, Any]:
        """Addresses and GPUs for every replica, decided once and written before any start."""
        plan_path = attempt_dir / "gang.json"
        # One lock around read-decide-write: two launches of one gang (a retry while the first
        # call still runs) must agree on one plan.
        with self._lock:
            existing = read_json(plan_path)
            if existing is not None:
                return existing
            replicas: dict[str, Any] = {}
            try:
                for r in spec.replicas:
                    owner = f"{spec.gang_id}/{spec.attempt}/{r.name}"
                    replicas[r.name] = {
                        "host": self.host,
                        "ports": {p: self._free_port() for p in r.ports},
                        "gpus": self._allocate_gpus(owner, r.request.gpu) if r.request.gpu else [],
                    }
            except ClusterError:
                # The gang does not fit: give back what its first replicas were given.
                for info in replicas.values():
                    self._ports_taken.difference_update(info["ports"].values())
                    for g in info["gpus"]:
                        self._gpu_owner.pop(g, None)
                raise
            plan = {
                "gang": spec.gang_id,
                "attempt": spec.attempt,
                "name": spec.display_name,
                "replicas": replicas,
            }
            attempt_dir.mkdir(parents=True, exist_ok=True)
            write_json(plan_path, plan)
            return plan

    def _base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in self._inherit if k in os.environ}
        bin_dir = str(Path(self.python).parent)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        rest = [p for p in path.split(":") if p != bin_dir]
        env["PATH"] = ":".join([bin_dir, *rest])
        return env

    # --- launch ----------------------------------------------------------------------

    @staticmethod
    def _check_placeholders(spec: GangSpec) -> None:
        """Raises ClusterError for a placeholder naming an unknown replica or port, before
        anything is allocated or started (a gang starts all or nothing)."""
        names = {r.name: Address(host="", ports=dict.fromkeys(r.ports, 0)) for r in spec.replicas}
        for r in spec.replicas:
            for value in (*r.env.values(), *r.argv):
                resolve_placeholders(value, names)

    def _start_shim(
        self, rdir: Path, lock_fd: int, start_w: int, *, warm: bool = False
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Starts the replica's shim: forked by the (warm) fork server, else as its own process
        (which execs the command, Python or not)."""
        for server in (self._warm if warm else None, self._forkserver):
            if server is not None:
                try:
                    return server.spawn(rdir, lock_fd, start_w), None
                except OSError as exc:
                    log.warning("shim fork server unavailable (%s); starting shims another way", exc)
        with open(rdir / "shim.log", "ab") as shim_log:  # the shim keeps its own copy
            popen = subprocess.Popen(
                [self.python, "-S", "-I", str(SHIM), str(rdir), str(start_w)],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=subprocess.STDOUT,
                pass_fds=(lock_fd, start_w),
                start_new_session=True,
                close_fds=True,
                cwd=str(rdir),
            )
        return popen.pid, popen

    def launch(self, spec: GangSpec) -> GangStatus:
        attempt_dir = self._attempt_dir(spec.gang_id, spec.attempt)
        self._check_placeholders(spec)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        plan = self._plan(spec, attempt_dir)
        addresses = {
            name: Address(host=info["host"], ports=info["ports"]) for name, info in plan["replicas"].items()
        }
        base_env = self._base_env()
        started: list[tuple[str, int]] = []  # (replica, read end of its start pipe)
        errors: list[str] = []
        for replica in spec.replicas:
            rdir = attempt_dir / replica.name
            rdir.mkdir(exist_ok=True)
            if started_before(rdir):
                continue  # this call is a retry after a crash or a timeout
            info = plan["replicas"][replica.name]
            env = dict(base_env)
            for key, value in replica.env.items():
                env[key] = resolve_placeholders(value, addresses)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(info["gpus"])
            if replica.working_dir:
                cwd = replica.working_dir
            elif replica.source_dir and os.path.isdir(replica.source_dir):
                cwd = replica.source_dir
            else:
                cwd = str(rdir / "workdir")
                os.makedirs(cwd, exist_ok=True)
            argv = [resolve_placeholders(a, addresses) for a in replica.argv]
            lock_fd = os.open(rdir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not take_start_lock(lock_fd, rdir) or started_before(rdir):
                    continue  # another launcher got here first
                launch = {
                    "argv": argv,
                    "env": env,
                    "cwd": cwd,
                    "grace": spec.grace_seconds,
                    "gpus": info["gpus"],
                    "ports": info["ports"],
                    "host": info["host"],
                }
                warm = None
                if self._warm is not None:
                    warm = python_launch(argv, env, python=self.python, server_env=self._warm_env)
                    if warm is not None:
                        launch["python"] = warm
                write_json(rdir / "launch.json", launch)  # for people and for stop()
                write_bytes(rdir / "launch.bin", marshal.dumps(launch))  # for the shim: no json import
                start_r, start_w = os.pipe()
                try:
                    pid, popen = self._start_shim(rdir, lock_fd, start_w, warm=warm is not None)
                except OSError as exc:
                    os.close(start_r)
                    errors.append(f"{replica.name}: cannot start supervisor: {exc}")
                    continue
                finally:
                    os.close(start_w)
                started.append((replica.name, start_r))
                self._watcher.watch(pid, spec.gang_id, popen)
            finally:
                os.close(lock_fd)  # the shim keeps the lock through its inherited copy
        deadline = time.monotonic() + 30
        for name, start_r in started:
            try:
                line = b""
                while not line.endswith(b"\n"):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        errors.append(f"{name}: supervisor did not start within 30 s")
                        break
                    ready, _, _ = select.select([start_r], [], [], remaining)
                    if not ready:
                        continue
                    part = os.read(start_r, 256)
                    if not part:
                        errors.append(f"{name}: supervisor ended before the replica started")
                        break
                    line += part
            finally:
                os.close(start_r)
        # Replicas that another call (a retry while this one runs) is starting: wait for
        # them too, so that every call returns once every replica started or failed to.
        mine = {name for name, _ in started}
        for replica in spec.replicas:
            rdir = attempt_dir / replica.name
            while replica.name not in mine and not start_settled(rdir) and time.monotonic() < deadline:
                time.sleep(0.005)
        if errors:
            log.warning("launch of %s/%s: %s", spec.gang_id, spec.attempt, "; ".join(errors))
        return self.status(spec.gang_id, spec.attempt)

    # --- status ----------------------------------------------------------------------

    def _replica_status(self, rdir: Path, plan_info: dict[str, Any]) -> ReplicaStatus:
        name = rdir.name
        host = plan_info.get("host")
        ports = dict(plan_info.get("ports", {}))
        gpus = list(plan_info.get("gpus", []))
        exit_info = read_json(rdir / "exit.json")
        child = read_json(rdir / "child.json")
        if exit_info is not None:
            code = int(exit_info.get("exitCode", 1))
            return ReplicaStatus(
                name=name,
                phase=ReplicaPhase.SUCCEEDED if code == 0 else ReplicaPhase.FAILED,
                exit_code=code,
                reason=exit_info.get("reason"),
                message=exit_info.get("message"),
                host=host,
                ports=ports,
                started_at=ts(exit_info.get("startedAt")),
                finished_at=ts(exit_info.get("finishedAt")),
                pid=(child or {}).get("pid"),
                gpus=gpus,
            )
        alive = lock_held(rdir / "lock")
        if alive:
            return ReplicaStatus(
                name=name,
                phase=ReplicaPhase.RUNNING if child else ReplicaPhase.PENDING,
                host=host,
                ports=ports,
                started_at=ts((child or {}).get("startedAt")),
                pid=(child or {}).get("pid"),
                gpus=gpus,
            )
        if child is not None or (rdir / "shim.json").exists():
            if (rdir / "exit.json").exists():  # the shim wrote its outcome and ended since
                return self._replica_status(rdir, plan_info)
            # The shim died without writing an outcome (killed with SIGKILL): end the
            # replica's processes and record the loss, once.
            pid = (child or {}).get("pid")
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)
            stopped = (rdir / "stop").exists()
            outcome = {
                "exitCode": 137,
                "reason": "Stopped" if stopped else "SupervisorLost",
                "message": "the replica's supervisor ended without recording an exit status",
                "startedAt": (child or {}).get("startedAt"),
                "finishedAt": time.time(),
            }
            with contextlib.suppress(OSError):
                write_json(rdir / "exit.json", outcome)
            return self._replica_status(rdir, plan_info)
        if (rdir / "stop").exists():
            outcome = {
                "exitCode": 143,
                "reason": "Stopped",
                "message": "stopped before it started",
                "finishedAt": time.time(),
            }
            with contextlib.suppress(OSError):
                write_json(rdir / "exit.json", outcome)
            return self._replica_status(rdir, plan_info)
        return ReplicaStatus(name=name, phase=ReplicaPhase.PENDING, host=host, ports=ports, gpus=gpus)

    def status(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            return GangStatus(replicas={})
        replicas: dict[str, ReplicaStatus] = {}
        for name, info in plan["replicas"].items():
            rdir = attempt_dir / name
            if not rdir.exists():
                replicas[name] = ReplicaStatus(name=name, phase=ReplicaPhase.PENDING, host=info.get("host"))
                continue
            replicas[name] = self._replica_status(rdir, info)
        self._release_finished(gang_id, attempt, replicas)
        return GangStatus(replicas=replicas)

    def _release_finished(self, gang_id: str, attempt: int, replicas: dict[str, ReplicaStatus]) -> None:
        with self._lock:
            for r in replicas.values():
                if r.phase.is_terminal():
                    owner = f"{gang_id}/{attempt}/{r.name}"
                    for g in r.gpus:
                        if self._gpu_owner.get(g) == owner:
                            del self._gpu_owner[g]
                    for port in r.ports.values():
                        self._ports_taken.discard(port)

    # --- stop ------------------------------------------------------------------------

    def stop(self, gang_id: str, attempt: int, *, grace_seconds: float | None = None) -> None:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        if not attempt_dir.exists():
            return
        for rdir in sorted(p for p in attempt_dir.iterdir() if p.is_dir()):
            if (rdir / "exit.json").exists():
                continue
            marker = rdir / "stop"
            launch = read_json(rdir / "launch.json") or {}
            grace = float(grace_seconds if grace_seconds is not None else launch.get("grace", 30.0))
            # The marker tells the shim when to SIGKILL (see shim.py); a later stop may only
            # bring that time forward, and then signals the shim again.
            now = time.time()
            asked = read_json(marker) or {}
            earlier = float(asked.get("killAt", float("inf")))
            kill_at = min(now + grace, earlier)
            signal_shim = kill_at < earlier
            if signal_shim:
                write_json(marker, {"requestedAt": asked.get("requestedAt", now), "killAt": kill_at})
            shim = read_json(rdir / "shim.json")
            child = read_json(rdir / "child.json")
            alive = lock_held(rdir / "lock")
            if alive and shim:
                if signal_shim:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(shim["pid"]), signal.SIGTERM)
                elif now > kill_at + 5:
                    # The shim enforces the grace period; if it is stuck past it, do it here.
                    if child:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(int(child["pid"]), signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(shim["pid"]), signal.SIGKILL)
            else:
                # No live shim: _replica_status records the outcome and kills leftovers.
                self._replica_status(rdir, {})
        self.notify(gang_id)

    # --- logs ------------------------------------------------------------------------

    def read_log(
        self, gang_id: str, attempt: int, replica: str, *, offset: int = 0, max_bytes: int = 1 << 20
    ) -> LogChunk:
        rdir = self._attempt_dir(gang_id, attempt) / replica
        path = rdir / "log"
        terminal = (rdir / "exit.json").exists()
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(max_bytes)
                size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            plan = read_json(self._attempt_dir(gang_id, attempt) / "gang.json") or {}
            if replica in plan.get("replicas", {}):  # planned, not started yet
                return LogChunk(b"", offset, terminal)
            raise NotFound(f"no log for replica {replica} (attempt {attempt})") from None
        next_offset = max(0, offset) + len(data)
        return LogChunk(data, next_offset, terminal and next_offset >= size)

    # --- re-attach and release ---------------------------------------------------------

    def reattach(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = read_json(attempt_dir / "gang.json")
        if plan is None:
            return GangStatus(replicas={})
        with self._lock:
            for name, info in plan["replicas"].items():
                rdir = attempt_dir / name
                if (rdir / "exit.json").exists():
                    continue
                owner = f"{gang_id}/{attempt}/{name}"
                for g in info.get("gpus", []):
                    self._gpu_owner[g] = owner
                self._ports_taken.update(info.get("ports", {}).values())
                shim = read_json(rdir / "shim.json")
                if shim and self._watcher.watch(int(shim["pid"]), gang_id) and not lock_held(rdir / "lock"):
                    self.notify(gang_id)  # it ended between the checks
        return self.status(gang_id, attempt)

    def release(self, gang_id: str) -> None:
        gang_dir = self.root / gang_id
        if not gang_dir.exists():
            return
        for attempt_dir in gang_dir.iterdir():
            if not attempt_dir.is_dir() or not attempt_dir.name.isdigit():
                continue
            attempt = int(attempt_dir.name)
            status = self.status(gang_id, attempt)
            if not status.all_terminal:
                self.stop(gang_id, attempt, grace_seconds=0)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not self.status(gang_id, attempt).all_terminal:
                    time.sleep(0.05)
            self._release_finished(gang_id, attempt, self.status(gang_id, attempt).replicas)
        try:
            shutil.rmtree(gang_dir)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise ClusterError(f"cannot remove {gang_dir}: {exc}") from exc

    def close(self) -> None:
        self._watcher.close()
        for server in (self._forkserver, self._warm):
            if server is not None:
                server.close()
