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
import fcntl
import json
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
from datetime import UTC, datetime
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
from lumiflow.common.errors import ClusterError, NotFound, ValidationFailed
from lumiflow.common.quantity import QuantityError, Resources, parse_count, parse_cpu, parse_memory

log = logging.getLogger(__name__)

SHIM = Path(__file__).with_name("shim.py")

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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (FileNotFoundError, ValueError):
        return None


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic (rename), not fsynced: these files must outlive the server, not the machine.
    A temporary name of its own per writer: threads may write the same file at once."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_json(path: Path, value: Any) -> None:
    _write_bytes(path, json.dumps(value).encode())


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


def _lock_held(path: Path) -> bool:
    """True while a shim holds ``path`` locked (it is alive)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _started_before(rdir: Path) -> bool:
    """A shim was started for this replica (it writes ``shim.json`` first), or it was stopped
    before it started."""
    return any((rdir / name).exists() for name in ("shim.json", "child.json", "exit.json"))


def _start_settled(rdir: Path) -> bool:
    """The replica's command runs or ended, or nobody is starting it."""
    return (rdir / "child.json").exists() or (rdir / "exit.json").exists() or not _lock_held(rdir / "lock")


def _take_start_lock(lock_fd: int, rdir: Path) -> bool:
    """Takes a replica's lock to start its shim; False when a shim (or another launcher) has it.

    ``_lock_held`` (``status``) takes the lock for an instant to probe it, so one failed try
    does not mean that a shim holds it: try again until a shim shows itself or a deadline.
    """
    deadline = time.monotonic() + 2
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if _started_before(rdir) or time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


class _Watcher(threading.Thread):
    """Polls pidfds of live shims; calls back with the gang id when one exits."""

    def __init__(self, on_exit: Notify) -> None:
        super().__init__(name="lumiflow-local-watcher", daemon=True)
        self._on_exit = on_exit
        self._poll = select.poll()
        self._fds: dict[int, tuple[str, subprocess.Popen[bytes] | None]] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll.register(self._wake_r, select.POLLIN)
        self._closed = False

    def watch(self, pid: int, gang_id: str, popen: subprocess.Popen[bytes] | None = None) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        with self._lock:
            self._fds[fd] = (gang_id, popen)
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")
        return True

    def run(self) -> None:
        while not self._closed:
            try:
                events = self._poll.poll(1000)
            except InterruptedError:
                continue
            for fd, _mask in events:
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    entry = self._fds.pop(fd, None)
                    with contextlib.suppress(KeyError, ValueError):
                        self._poll.unregister(fd)
                os.close(fd)
                if entry is None:
                    continue
                gang_id, popen = entry
                if popen is not None:
                    with contextlib.suppress(Exception):
                        popen.wait(timeout=1)
                try:
                    self._on_exit(gang_id)
                except Exception:  # pragma: no cover - callbacks must not raise
                    log.exception("notify failed")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")


class _ForkServer:
    """Starts shims by asking a small fork server (``shim.py --serve``) to fork one.

    Forking that single-threaded, already-initialised process costs about a millisecond;
    starting an interpreter for each shim costs 15-20 ms on this kind of machine, on the
    critical path of every job. If the fork server cannot be started or dies, ``spawn``
    raises OSError and the caller starts the shim as a process of its own instead.
    """

    def __init__(self, python: str) -> None:
        self.python = python
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [self.python, "-S", "-I", str(SHIM), "--serve", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        return ours

    def spawn(self, replica_dir: Path, lock_fd: int, start_fd: int) -> int:
        """Forks a shim for ``replica_dir``; returns its pid. Raises OSError."""
        with self._lock:
            sock = self._sock or self._start()
            try:
                socket.send_fds(sock, [str(replica_dir).encode()], [lock_fd, start_fd])
                answer = b""
                while not answer.endswith(b"\n"):
                    part = sock.recv(64)
                    if not part:
                        raise OSError("the fork server closed its socket")
                    answer += part
                pid = int(answer)
            except (OSError, ValueError):
                self.close()
                raise OSError("the shim fork server failed") from None
            if pid <= 0:
                raise OSError("the shim fork server refused the request")
            return pid

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._proc.wait(timeout=5)
            self._proc = None


class LocalCluster(ClusterBackend):
    type_name = "local"

    def __init__(self, *, name: str, options: Mapping[str, Any], home: Path, notify: Notify) -> None:
        super().__init__(name=name, options=options, home=home, notify=notify)
        self.root = home / "clusters" / name
        self.root.mkdir(parents=True, exist_ok=True)
        allowed = {"capacity", "gpus", "inherit_env", "host", "python", "fork_server"}
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
        self._watcher = _Watcher(self.notify)
        self._watcher.start()
        use_fork_server = bool(self.options.get("fork_server", True))
        self._forkserver: _ForkServer | None = _ForkServer(self.python) if use_fork_server else None

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
            existing = _read_json(plan_path)
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
            _write_json(plan_path, plan)
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
        self, rdir: Path, lock_fd: int, start_w: int
    ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Starts the replica's shim: forked by the fork server, else as its own process."""
        if self._forkserver is not None:
            try:
                return self._forkserver.spawn(rdir, lock_fd, start_w), None
            except OSError as exc:
                log.warning("shim fork server unavailable (%s); starting shims directly", exc)
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
            if _started_before(rdir):
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
                if not _take_start_lock(lock_fd, rdir) or _started_before(rdir):
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
                _write_json(rdir / "launch.json", launch)  # for people and for stop()
                _write_bytes(rdir / "launch.bin", marshal.dumps(launch))  # for the shim: no json import
                start_r, start_w = os.pipe()
                try:
                    pid, popen = self._start_shim(rdir, lock_fd, start_w)
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
            while replica.name not in mine and not _start_settled(rdir) and time.monotonic() < deadline:
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
        exit_info = _read_json(rdir / "exit.json")
        child = _read_json(rdir / "child.json")
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
                started_at=_ts(exit_info.get("startedAt")),
                finished_at=_ts(exit_info.get("finishedAt")),
                pid=(child or {}).get("pid"),
                gpus=gpus,
            )
        alive = _lock_held(rdir / "lock")
        if alive:
            return ReplicaStatus(
                name=name,
                phase=ReplicaPhase.RUNNING if child else ReplicaPhase.PENDING,
                host=host,
                ports=ports,
                started_at=_ts((child or {}).get("startedAt")),
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
                _write_json(rdir / "exit.json", outcome)
            return self._replica_status(rdir, plan_info)
        if (rdir / "stop").exists():
            outcome = {
                "exitCode": 143,
                "reason": "Stopped",
                "message": "stopped before it started",
                "finishedAt": time.time(),
            }
            with contextlib.suppress(OSError):
                _write_json(rdir / "exit.json", outcome)
            return self._replica_status(rdir, plan_info)
        return ReplicaStatus(name=name, phase=ReplicaPhase.PENDING, host=host, ports=ports, gpus=gpus)

    def status(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = _read_json(attempt_dir / "gang.json")
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
            launch = _read_json(rdir / "launch.json") or {}
            grace = float(grace_seconds if grace_seconds is not None else launch.get("grace", 30.0))
            # The marker tells the shim when to SIGKILL (see shim.py); a later stop may only
            # bring that time forward, and then signals the shim again.
            now = time.time()
            asked = _read_json(marker) or {}
            earlier = float(asked.get("killAt", float("inf")))
            kill_at = min(now + grace, earlier)
            signal_shim = kill_at < earlier
            if signal_shim:
                _write_json(marker, {"requestedAt": asked.get("requestedAt", now), "killAt": kill_at})
            shim = _read_json(rdir / "shim.json")
            child = _read_json(rdir / "child.json")
            alive = _lock_held(rdir / "lock")
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
            plan = _read_json(self._attempt_dir(gang_id, attempt) / "gang.json") or {}
            if replica in plan.get("replicas", {}):  # planned, not started yet
                return LogChunk(b"", offset, terminal)
            raise NotFound(f"no log for replica {replica} (attempt {attempt})") from None
        next_offset = max(0, offset) + len(data)
        return LogChunk(data, next_offset, terminal and next_offset >= size)

    # --- re-attach and release ---------------------------------------------------------

    def reattach(self, gang_id: str, attempt: int) -> GangStatus:
        attempt_dir = self._attempt_dir(gang_id, attempt)
        plan = _read_json(attempt_dir / "gang.json")
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
                shim = _read_json(rdir / "shim.json")
                if shim and self._watcher.watch(int(shim["pid"]), gang_id) and not _lock_held(rdir / "lock"):
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
        if self._forkserver is not None:
            self._forkserver.close()
