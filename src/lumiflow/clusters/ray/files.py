"""What the ``ray`` backend keeps in lumiflow's home, per gang attempt, under
``$LUMIFLOW_HOME/clusters/<cluster>/<gang>/<attempt>/``:

* ``gang.json``: replica names, grace period, placement group name (written first);
* ``addresses.json``: each replica's node IP, node id, ports and GPUs (before any start);
* ``stop``: the time of the SIGKILL once a stop was asked for;
* ``launch.lock``: held by a launch, so that retries and concurrent calls take turns;
* ``released``: the placement group was removed;
* per replica: ``started`` (written before its actor is asked to start it; then its pid),
  and once it has ended and was collected, ``log`` and ``exit.json``.

These files are written atomically (rename) and read by any backend object over the same
home, which is how a restarted server knows what it launched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Atomic (rename); a temporary name of its own per writer (threads, processes)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, path)


def timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None


@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (between threads as between processes: every call
    opens the file anew). Yields False when ``blocking`` is False and someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
