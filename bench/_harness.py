"""Shared pieces of the benchmarks: a real ``lumi up`` server in a temporary home, percentiles,
process hygiene and the machine description printed with every result.

Not a benchmark itself (the leading underscore keeps it out of ``bench/*.py`` runs). Every
process started here is tracked by PID and ended by PID, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
console = Console(highlight=False)
if not console.is_terminal:
    console = Console(highlight=False, width=120)

#: A config that never lets quota or capacity be what a benchmark measures by accident.
ROOMY_CONFIG = """\
clusters:
- name: local
  type: local
  home: true
  options:
    capacity: {cpu: 64, memory: 256Gi}
profiles:
  default_quota: {cpu: "1000", memory: 4Ti, workloads: "5000"}
"""


# --- numbers -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in 0..100."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def rounded(value: Any, digits: int = 2) -> Any:
    """Rounds floats inside nested dicts/lists (for a readable JSON line)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def emit_json(result: dict[str, Any]) -> None:
    """The benchmark's last line: exactly one JSON object."""
    sys.stdout.flush()
    print(json.dumps(rounded(result), separators=(",", ":")), flush=True)


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row))
    return t


# --- the machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        # Other work on the machine when the benchmark ended (1-minute load average).
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "revision": revision(),
    }


def revision() -> str:
    """The commit benchmarked, ``+dirty`` when the working tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# --- waiting and processes -----------------------------------------------------------------


def wait_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.02, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment for child servers, without a stray LUMIFLOW_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LUMIFLOW_")}


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of ``pid`` (from /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_idle(pid: int, *, window: float = 0.5, busy_fraction: float = 0.05, timeout: float = 120.0) -> float:
    """Waits until ``pid`` uses under ``busy_fraction`` of a core over ``window`` seconds;
    returns how long that took (the server's backlog after a load phase)."""
    start = time.monotonic()
    deadline = start + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - before < busy_fraction * window:
            return time.monotonic() - start - window
        before = now
    return time.monotonic() - start


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace``: only this process, by its PID."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=5)


def _proc_mentions(pid: int, root: Path) -> bool:
    """True when ``pid``'s command line or working directory lies under ``root``."""
    text = str(root)
    with contextlib.suppress(OSError):
        if text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
            return True
    with contextlib.suppress(OSError):
        if os.readlink(f"/proc/{pid}/cwd").startswith(text):
            return True
    return False


def kill_leftover_replicas(home: Path) -> int:
    """Ends shims and replica commands that the server of ``home`` started and that still run.

    Their PIDs come from the local cluster's own records (``shim.json``, ``child.json``), and a
    PID is only signalled when /proc shows it belongs to this home (no reused PID is hit).
    """
    killed = 0
    clusters = home / "clusters"
    if not clusters.exists():
        return 0
    for record in list(clusters.glob("*/*/*/*/shim.json")) + list(clusters.glob("*/*/*/*/child.json")):
        try:
            pid = int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid > 1 and _proc_mentions(pid, home):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


# --- a real lumiflow server ------------------------------------------------------------------


class LumiServer:
    """``lumi up`` in the foreground, as a child process of this benchmark, in a fresh home.

    ``with LumiServer() as srv:`` gives ``srv.url``, ``srv.token``, ``srv.pid``,
    ``srv.client()``; leaving the block stops the server (by PID), ends any replica it left
    running, and removes the temporary folder.
    """

    def __init__(self, *, config: str = ROOMY_CONFIG, log_level: str = "warning", keep: bool = False) -> None:
        self.config = config
        self.log_level = log_level
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="lumibench-"))
        self.home = self.tmp / "home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=30.0, **kwargs)

    def start(self) -> LumiServer:
        config_path = self.tmp / "lumiflow.yaml"
        config_path.write_text(self.config)
        argv = [
            sys.executable,
            "-m",
            "lumiflow.cli.main",
            "up",
            "--home",
            str(self.home),
            "--port",
            str(self.port),
            "--config",
            str(config_path),
            "--log-level",
            self.log_level,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.tmp),
                env=clean_env(),
            )
        token_path = self.home / "admin.token"

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"lumi up exited with {self.proc.returncode}:\n{tail}")
            if not token_path.exists():
                return False
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=120, interval=0.1, what=f"lumi up at {self.url}")
        self.token = token_path.read_text().strip()
        # The first authenticated request creates the admin's personal profile ("admin").
        with self.client() as c:
            c.get("/api/v1/profiles/admin").raise_for_status()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        kill_leftover_replicas(self.home)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LumiServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def suspended_job(name: str) -> dict[str, Any]:
    """A 1-replica TrainingJob that is stored and reconciled but never runs a process."""
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "framework": "generic",
            "runPolicy": {"suspend": True},
            "replicaSpecs": {
                "Worker": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "command": ["true"],
                                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                }
                            ]
                        }
                    },
                }
            },
        },
    }
