"""A replica's records on the local cluster's disk, and the lock that says its shim lives.

Every file is written atomically (rename) but not fsynced: the records must outlive the
lumiflow server, not the machine (a machine that goes down takes the replicas with it).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (FileNotFoundError, ValueError):
        return None


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic (rename), not fsynced: these files must outlive the server, not the machine.
    A temporary name of its own per writer: threads may write the same file at once."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    write_bytes(path, json.dumps(value).encode())


def ts(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


def lock_held(path: Path) -> bool:
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


def started_before(rdir: Path) -> bool:
    """A shim was started for this replica (it writes ``shim.json`` first), or it was stopped
    before it started."""
    return any((rdir / name).exists() for name in ("shim.json", "child.json", "exit.json"))


def start_settled(rdir: Path) -> bool:
    """The replica's command runs or ended, or nobody is starting it."""
    return (rdir / "child.json").exists() or (rdir / "exit.json").exists() or not lock_held(rdir / "lock")


def take_start_lock(lock_fd: int, rdir: Path) -> bool:
    """Takes a replica's lock to start its shim; False when a shim (or another launcher) has it.

    ``lock_held`` (``status``) takes the lock for an instant to probe it, so one failed try
    does not mean that a shim holds it: try again until a shim shows itself or a deadline.
    """
    deadline = time.monotonic() + 2
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if started_before(rdir) or time.monotonic() > deadline:
                return False
            time.sleep(0.002)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
