"""Helpers shared by the tests: polling with a deadline (never fixed sleeps), free ports,
and starting real servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
LUMI = [sys.executable, "-m", "lumiflow.cli.main"]


class Timeout(AssertionError):
    pass


def wait_until(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> T:
    """Polls ``predicate`` until it returns something truthy; returns it. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:g}s waiting for {message} (last value: {last!r})")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Gone between the signal and the read: opening /proc/PID/stat can succeed and the
        # read then fail with ESRCH once the process is reaped.
        return False


def lumi(
    *args: str,
    home: Path,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs the real CLI in a subprocess against ``home``."""
    full_env = {**os.environ, "LUMIFLOW_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    result = subprocess.run(
        [*LUMI, *args],
        check=False,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=str(ROOT),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lumi {' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}"
        )
    return result
