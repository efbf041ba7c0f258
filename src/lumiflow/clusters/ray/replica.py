"""What runs on a Ray node for one replica: an actor that supervises the replica's process.

It plays the part of the local backend's shim. One actor per replica, placed in the replica's
bundle of the gang's placement group (so it holds the replica's cpu, memory and GPUs), named
after the gang, attempt and replica and detached from the lumiflow server's Ray job, so that a
restarted server finds it again by name. It

* reports its node's IP, its GPUs and free ports (``prepare``) before the command starts, so
  that the server can resolve the address placeholders of every replica;
* runs the command (``start``) in a session and process group of its own, with the replica's
  environment, stdout and stderr appended to one log file on its node (``read_log`` serves
  byte ranges of it), and records the outcome when the process ends: its exit code
  (128+N for signal N) and a reason;
* stops it (``stop``): SIGTERM to the process group, SIGKILL when the grace period ends. The
  timer runs here, on the node, so a stop completes even if the server goes away meanwhile;
* kills what is left of the process group when the command ends, as a container's processes
  end with it.

The command is started through a tiny exec helper (``python -S -I -c``) that resets the signal
dispositions a Ray worker leaves behind (its workers ignore SIGINT and SIGQUIT, which a child
would inherit across exec) and reports an exec failure (a command that does not exist) through
a close-on-exec pipe, as ``subprocess`` does.

Standard library only: the backend ships this module to the cluster by value (cloudpickle),
so Ray nodes need Ray but not lumiflow. ``ray`` itself is imported inside the methods that
run on the node.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

#: Variables of the node's environment a replica inherits (a container would get none).
INHERITED_ENV = (
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

#: Run as ``python -S -I -c EXEC_HELPER ERROR_FD ARGV...``; becomes the command (same pid).
EXEC_HELPER = """
import errno, os, signal, sys
fd = int(sys.argv[1])
argv = sys.argv[2:]
for signum in range(1, signal.NSIG):
    try:
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    except (OSError, ValueError, RuntimeError):
        pass
signal.pthread_sigmask(signal.SIG_SETMASK, ())
os.set_inheritable(fd, False)
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    code = exc.errno or 1
    message = f"{exc.strerror}: {argv[0]}"
    os.write(2, f"lumiflow: cannot start {argv[0]!r}: {message}\\n".encode())
    os.write(fd, f"{code} {message}".encode())
    os._exit(127 if code == errno.ENOENT else 126)
"""

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


class ReplicaSupervisor:
    """The actor's class (made remote by the backend with ``ray.remote(...).options(...)``).

    Every method is safe to call concurrently (the actor runs calls in a thread pool) and
    idempotent; ``wait`` is bounded so that callers that went away cannot use up the pool.
    """

    def __init__(self, *, node_dir: str | None, relative: str, inherit_env: list[str]) -> None:
        root = node_dir or os.path.join(tempfile.gettempdir(), "lumiflow-ray")
        self._dir = os.path.join(root, relative)
        self._log = os.path.join(self._dir, "log")
        self._inherit = tuple(inherit_env) + INHERITED_ENV
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._address: dict[str, Any] | None = None
        self._reserved: list[socket.socket] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at: float | None = None
        self._outcome: dict[str, Any] | None = None
        self._stop_requested = False
        self._kill_at: float | None = None
        self._timer: threading.Timer | None = None

    # --- placement ------------------------------------------------------------------------

    def prepare(self, port_names: list[str]) -> dict[str, Any]:
        """This replica's node IP, node id, GPU ids and one free port per name; the same
        answer on every call. The ports stay bound (reserved) until the command starts."""
        import ray

        with self._lock:
            if self._address is None:
                context = ray.get_runtime_context()
                gpus = [str(g) for g in context.get_accelerator_ids().get("GPU", [])]
                ports: dict[str, int] = {}
                for name in port_names:
                    # Bound on every interface: the port is then free whichever address the
                    # replica listens on, and replicas of one host never get the same one.
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.bind(("", 0))
                    self._reserved.append(sock)
                    ports[name] = int(sock.getsockname()[1])
                self._address = {
                    "host": ray.util.get_node_ip_address(),
                    "nodeId": context.get_node_id(),
                    "ports": ports,
                    "gpus": gpus,
                    "supervisorPid": os.getpid(),
                }
            return dict(self._address)

    # --- start ------------------------------------------------------------------------------

    def _env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in self._inherit if k in os.environ}
        bin_dir = os.path.dirname(sys.executable)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["PATH"] = ":".join([bin_dir, *(p for p in path.split(":") if p != bin_dir)])
        env.update(overrides)
        gpus = (self._address or {}).get("gpus", [])
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        return env

    def start(
        self, argv: list[str], env: dict[str, str], cwd: str | None, source_dir: str | None = None
    ) -> dict[str, Any]:
        """Starts the command once; later calls (a retried launch) change nothing. Without a
        working directory it runs in ``source_dir`` (the job's folder) when that exists on
        this node, else in a fresh folder of its own."""
        with self._lock:
            if self._proc is not None or self._outcome is not None:
                return self._status()
            os.makedirs(self._dir, exist_ok=True)
            if not cwd and source_dir and os.path.isdir(source_dir):
                cwd = source_dir
            if not cwd:
                cwd = os.path.join(self._dir, "workdir")
                os.makedirs(cwd, exist_ok=True)
            for sock in self._reserved:
                sock.close()
            self._reserved.clear()
            started = time.time()
            err_r, err_w = os.pipe()
            log_fd = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-S", "-I", "-c", EXEC_HELPER, str(err_w), *argv],
                    env=self._env(env),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    start_new_session=True,
                    pass_fds=(err_w,),
                    close_fds=True,
                )
            except OSError as exc:  # the working directory or the node's Python is missing
                os.close(err_r)
                message = f"{exc.strerror}: {exc.filename or argv[0]}"
                os.write(log_fd, f"lumiflow: cannot start {argv[0]!r}: {message}\n".encode())
                code = 127 if exc.errno == errno.ENOENT else 126
                self._finish(code, "StartError", message, started)
                return self._status()
            finally:
                os.close(err_w)
                os.close(log_fd)
            report = b""
            while True:
                part = os.read(err_r, 4096)
                if not part:
                    break
                report += part
            os.close(err_r)
            if report:
                proc.wait()
                code_text, _, message = report.decode(errors="replace").partition(" ")
                code = 127 if int(code_text or 1) == errno.ENOENT else 126
                self._finish(code, "StartError", message, started)
                return self._status()
            self._proc = proc
            self._started_at = started
            threading.Thread(target=self._reap, name="lumiflow-reaper", daemon=True).start()
            return self._status()

    def _reap(self) -> None:
        proc = self._proc
        assert proc is not None
        returncode = proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of the replica's process group
        with self._lock:
            if returncode < 0:
                sig = -returncode
                code = 128 + sig
                message = f"killed by signal {sig} ({signal.strsignal(sig) or 'unknown'})"
            else:
                code = returncode
                message = f"exited with code {code}"
            if self._stop_requested:
                reason = "Stopped"
            elif code == 0:
                reason = "Completed"
            elif returncode == -signal.SIGKILL:
                reason = "Killed"
            else:
                reason = "Error"
            self._finish(code, reason, message, self._started_at)

    def _finish(self, code: int, reason: str, message: str, started: float | None) -> None:
        """Records the outcome; the caller holds the lock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()
        self._outcome = {
            "exitCode": code,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": time.time(),
        }
        self._done.set()

    # --- state ------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        pid = self._proc.pid if self._proc is not None else None
        if self._outcome is not None:
            phase = SUCCEEDED if self._outcome["exitCode"] == 0 else FAILED
            return {"phase": phase, "pid": pid, **self._outcome}
        if self._proc is not None:
            return {"phase": RUNNING, "pid": pid, "startedAt": self._started_at}
        return {"phase": PENDING}

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The final status once the replica has ended; None if it still runs after
        ``timeout`` seconds (the caller asks again)."""
        if not self._done.wait(timeout):
            return None
        return self.status()

    def read_log(self, offset: int, max_bytes: int) -> tuple[bytes, int, bool]:
        """``(data, size, ended)``: up to ``max_bytes`` from ``offset``, the log's size, and
        whether the replica had ended before the read (so that ``data`` up to ``size`` is all
        there will ever be)."""
        ended = self._done.is_set()
        try:
            with open(self._log, "rb") as fh:
                fh.seek(max(0, offset))
                data = fh.read(max(0, max_bytes))
                size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            return b"", 0, ended
        return data, size, ended

    # --- stop -------------------------------------------------------------------------------

    def stop(self, grace: float) -> dict[str, Any]:
        """SIGTERM now, SIGKILL after ``grace`` seconds; a later stop may only bring the SIGKILL
        forward. A replica stopped before it started never starts."""
        with self._lock:
            if self._outcome is not None:
                return self._status()
            if self._proc is None:
                self._stop_requested = True
                self._finish(128 + signal.SIGTERM, "Stopped", "stopped before it started", None)
                return self._status()
            kill_at = time.time() + max(0.0, grace)
            if not self._stop_requested:
                self._stop_requested = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGTERM)
            if self._kill_at is None or kill_at < self._kill_at:
                self._kill_at = kill_at
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = threading.Timer(max(0.0, kill_at - time.time()), self._kill)
                self._timer.daemon = True
                self._timer.start()
            return self._status()

    def _kill(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or self._outcome is not None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """Deletes the replica's files on the node (once its log was collected)."""
        with self._lock:
            if self._proc is not None and self._outcome is None:
                return
        shutil.rmtree(self._dir, ignore_errors=True)
