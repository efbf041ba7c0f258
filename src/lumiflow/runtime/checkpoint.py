"""Checkpoints that survive a gang restart: where they go, saving atomically, the latest.

lumiflow gives every training job a directory in ``LUMIFLOW_CHECKPOINT_DIR`` that stays
the same across gang restarts and server restarts (it is removed when the job is
deleted). A replica killed mid-write must never leave a torn file that the next attempt
would load, so a checkpoint is written to a temporary file in the same directory, flushed
to disk, and renamed over its final name in one step::

    from lumiflow.runtime import checkpoint

    last = checkpoint.latest()                       # None on the first attempt
    start = 0 if last is None else last.step + 1
    state = torch.load(last.path) if last else None
    for epoch in range(start, epochs):
        ...
        if rank == 0:
            with checkpoint.save(epoch) as fh:        # checkpoint-00000003, atomically
                torch.save(model.state_dict(), fh)

Standard library only: this module runs inside the job, with whatever the job installed.
Outside lumiflow the directory is ``./checkpoints`` (or the ``default`` given).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ENV = "LUMIFLOW_CHECKPOINT_DIR"
PREFIX = "checkpoint-"
_NAME = re.compile(r"^checkpoint-(\d+)(\..*)?$")


@dataclass(frozen=True, order=True)
class Checkpoint:
    step: int
    path: Path


def directory(default: str | os.PathLike[str] | None = None) -> Path:
    """The job's checkpoint directory (created if missing)."""
    value = os.environ.get(ENV) or (os.fspath(default) if default is not None else "checkpoints")
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def path_for(step: int, *, suffix: str = "", where: str | os.PathLike[str] | None = None) -> Path:
    """Where the checkpoint of ``step`` goes (``checkpoint-00000042.pt`` for suffix ``.pt``)."""
    if step < 0:
        raise ValueError(f"step must be 0 or more, got {step}")
    if suffix and not suffix.startswith("."):
        raise ValueError(f"suffix must start with '.', got {suffix!r}")
    return directory(where) / f"{PREFIX}{step:08d}{suffix}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` whole, or not at all (if the block raises or
    the process dies, only a temporary file that :func:`latest` ignores is left)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def save(
    step: int, *, suffix: str = "", where: str | os.PathLike[str] | None = None, keep: int | None = None
) -> Iterator[IO[bytes]]:
    """Writes the checkpoint of ``step`` atomically; with ``keep``, older ones beyond the
    ``keep`` newest are removed afterwards."""
    with atomic_write(path_for(step, suffix=suffix, where=where)) as fh:
        yield fh
    if keep is not None:
        prune(keep, where=where)


def save_bytes(
    step: int, data: bytes, *, suffix: str = "", where: str | os.PathLike[str] | None = None
) -> Path:
    with save(step, suffix=suffix, where=where) as fh:
        fh.write(data)
    return path_for(step, suffix=suffix, where=where)


def all_checkpoints(where: str | os.PathLike[str] | None = None) -> list[Checkpoint]:
    """Every complete checkpoint, oldest first."""
    found: list[Checkpoint] = []
    for entry in directory(where).iterdir():
        match = _NAME.match(entry.name)
        if match is not None and entry.is_file():
            found.append(Checkpoint(int(match.group(1)), entry))
    return sorted(found)


def latest(where: str | os.PathLike[str] | None = None) -> Checkpoint | None:
    """The checkpoint with the highest step, or None when there is none yet."""
    found = all_checkpoints(where)
    return found[-1] if found else None


def prune(keep: int, *, where: str | os.PathLike[str] | None = None) -> None:
    if keep < 1:
        raise ValueError("keep must be at least 1")
    for old in all_checkpoints(where)[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            old.path.unlink()


__all__ = [
    "ENV",
    "Checkpoint",
    "all_checkpoints",
    "atomic_write",
    "directory",
    "latest",
    "path_for",
    "prune",
    "save",
    "save_bytes",
]
