"""What the 3DGAN scripts share, with the standard library only: the calorimeter grids, the
distributed environment as Kubeflow sets it, Katib-style metric lines and checkpoint files.

Grids. CERN's 3DGAN generates a 51x51x25 calorimeter image (x, y, depth) from a seed grid of
9x9x8 cells with 8 channels, upsampled six times (54x54x48) and trimmed by its Conv3D stack,
which removes 3 cells in x and y and 23 layers in depth. The same stack works from any seed
grid (sx, sy, sz): the image is (6*sx - 3, 6*sy - 3, 6*sz - 23). Smaller seeds give the
smaller grids used on CPUs; they describe the *same calorimeter* read out with coarser cells
(the same 51x51x25-cell volume binned into fewer, larger cells), so a small shower is a
re-binning of a full one and the physics checks mean the same thing on every grid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

#: Image of the full grid, in cells: the volume every grid covers.
FULL_IMAGE = (51, 51, 25)
#: Upsampling factor of the generator (UpSampling3D(size=6) in every direction).
UPSAMPLE = 6
#: Cells removed by the generator's Conv3D stack after upsampling (x, y, depth).
GENERATOR_TRIM = (3, 3, 23)
#: Channels of the seed grid (the Dense layer has prod(seed) * 8 units: 5184 for the full grid).
SEED_CHANNELS = 8
#: Length of the generator's input: [energy / 100, angle, 254 Gaussian values].
LATENT_SIZE = 256
#: Cells are raised to this power for the losses (the generator's output space).
POWER = 0.85
#: The generator sees energy / 100 and the discriminator's energy head regresses it.
ENERGY_SCALE = 100.0
#: Smallest image the discriminator takes: its convolutions remove 12, 15 and 11 cells and an
#: average pooling of 2 follows.
MIN_IMAGE = (14, 17, 13)

GRIDS: dict[str, tuple[int, int, int]] = {
    "full": (9, 9, 8),  # 51x51x25, as CERN trained it
    "medium": (5, 5, 8),  # 27x27x25: full depth, cells about twice as wide
    "small": (4, 4, 6),  # 21x21x13: about 2.4x wider cells, layers about 1.9x thicker
}


@dataclass(frozen=True)
class Grid:
    """A seed grid and the calorimeter image it produces."""

    seed: tuple[int, int, int]

    @property
    def image(self) -> tuple[int, int, int]:
        (sx, sy, sz), (tx, ty, tz) = self.seed, GENERATOR_TRIM
        return (UPSAMPLE * sx - tx, UPSAMPLE * sy - ty, UPSAMPLE * sz - tz)

    @property
    def pitch(self) -> tuple[float, float, float]:
        """Size of one cell in units of a full-grid cell (1, 1, 1 on the full grid)."""
        (nx, ny, nz), (fx, fy, fz) = self.image, FULL_IMAGE
        return (fx / nx, fy / ny, fz / nz)

    @property
    def dense_units(self) -> int:
        return math.prod(self.seed) * SEED_CHANNELS

    def describe(self) -> str:
        x, y, z = self.image
        sx, sy, sz = self.seed
        return f"image {x}x{y}x{z} from seed {sx}x{sy}x{sz}x{SEED_CHANNELS}"

    @staticmethod
    def parse(text: str) -> Grid:
        """``small``, ``medium``, ``full`` or a seed ``SX,SY,SZ``."""
        if text in GRIDS:
            seed = GRIDS[text]
        else:
            try:
                sx, sy, sz = (int(v) for v in text.split(","))
            except ValueError:
                raise ValueError(
                    f"grid {text!r}: expected one of {', '.join(GRIDS)} or a seed grid SX,SY,SZ"
                ) from None
            seed = (sx, sy, sz)
        grid = Grid(seed)
        if any(i < m for i, m in zip(grid.image, MIN_IMAGE, strict=True)):
            raise ValueError(
                f"grid {text!r} gives an image of {grid.image}; the discriminator needs at least "
                f"{MIN_IMAGE} (seed at least 3,4,6)"
            )
        return grid

    @staticmethod
    def of(seed: Sequence[int]) -> Grid:
        """The grid of a seed as stored in a checkpoint (a list or an array)."""
        sx, sy, sz = (int(v) for v in seed)
        return Grid((sx, sy, sz))

    @staticmethod
    def for_image(image: tuple[int, ...]) -> Grid:
        """The grid whose generator produces ``image`` (as read from an HDF5 file)."""
        if len(image) != 3:
            raise ValueError(f"a calorimeter image has 3 axes, not {len(image)}: {tuple(image)}")
        (nx, ny, nz), (tx, ty, tz) = image, GENERATOR_TRIM
        grid = Grid(((nx + tx) // UPSAMPLE, (ny + ty) // UPSAMPLE, (nz + tz) // UPSAMPLE))
        if grid.image != tuple(image):
            raise ValueError(f"no seed grid produces an image of {tuple(image)}")
        return grid


# --- the distributed environment, as Kubeflow's operators set it ------------------------


@dataclass(frozen=True)
class TorchEnv:
    """PyTorchJob's environment: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK (one process if absent)."""

    rank: int = 0
    world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 23456

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_environ(environ: dict[str, str] | None = None) -> TorchEnv:
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1"))
        return TorchEnv(
            rank=int(env.get("RANK", "0")),
            world_size=world,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", "23456")),
        )


@dataclass(frozen=True)
class TFEnv:
    """TFJob's TF_CONFIG, reduced to what the script needs (one worker if absent)."""

    task_type: str = "worker"
    task_index: int = 0
    num_workers: int = 1
    worker_rank: int = 0  # position among the training workers, chief first: for sharding data
    is_chief: bool = True

    @staticmethod
    def from_environ(environ: dict[str, str] | None = None) -> TFEnv:
        env = os.environ if environ is None else environ
        raw = env.get("TF_CONFIG")
        if not raw:
            return TFEnv()
        config = json.loads(raw)
        cluster = config.get("cluster", {})
        task = config.get("task", {})
        task_type = str(task.get("type", "worker"))
        index = int(task.get("index", 0))
        # MultiWorkerMirroredStrategy trains on chief + workers; ps and evaluator take no part.
        chiefs = len(cluster.get("chief", []))
        num_workers = chiefs + len(cluster.get("worker", []))
        rank = 0 if task_type == "chief" else index + chiefs
        return TFEnv(
            task_type=task_type,
            task_index=index,
            num_workers=max(num_workers, 1),
            worker_rank=rank,
            is_chief=rank == 0,
        )


def set_threads_from_env(setter: Callable[[int], None]) -> int | None:
    """Applies OMP_NUM_THREADS (set by lumiflow from the replica's cpu request) to a framework."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not value.isdigit() or int(value) < 1:
        return None
    setter(int(value))
    return int(value)


# --- metrics: Katib's StdOut collector reads `name=value` -------------------------------


def metric_line(**values: float | int) -> str:
    """``epoch=1 step=3 d_loss=0.6931``: what Katib's default StdOut collector parses."""
    parts = []
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"metric {name}: {value!r} is not a number")
        parts.append(f"{name}={value}" if isinstance(value, int) else f"{name}={value:.6g}")
    return " ".join(parts)


def emit(**values: float | int) -> None:
    print(metric_line(**values), flush=True)


def log(message: str) -> None:
    """Human-readable lines, written so that Katib's `name=value` pattern finds no numbers in them."""
    print(message, flush=True)


# --- checkpoints ----------------------------------------------------------------------
#
# Named as lumiflow.runtime.checkpoint names them (checkpoint-00000003.pt: the number is the
# epochs done), written the same way (a temporary file in the directory, then a rename), so
# that lumiflow's helper and these scripts see the same checkpoints; these functions repeat
# it with the standard library so that the scripts also run where lumiflow is not installed
# (a Kubeflow cluster's image).

_CKPT = re.compile(r"^checkpoint-(?P<epoch>\d+)\.(?P<ext>[a-z]+)$")


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="where to keep checkpoints; default: $LUMIFLOW_CHECKPOINT_DIR (set by lumiflow per job)",
    )


def checkpoint_dir(explicit: str | None) -> Path | None:
    """LUMIFLOW_CHECKPOINT_DIR (kept by lumiflow across gang and server restarts), else the
    ``--checkpoint-dir`` argument, else None (no checkpoints)."""
    value = os.environ.get("LUMIFLOW_CHECKPOINT_DIR") or explicit
    return Path(value) if value else None


def checkpoint_path(directory: Path, epoch: int, ext: str) -> Path:
    return directory / f"checkpoint-{epoch:08d}.{ext}"


def list_checkpoints(directory: Path | None, ext: str) -> list[tuple[int, Path]]:
    """Complete checkpoints with this extension, oldest first (files being written have other
    names)."""
    if directory is None or not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        m = _CKPT.match(path.name)
        if m and m["ext"] == ext:
            found.append((int(m["epoch"]), path))
    return sorted(found)


def latest_checkpoint(directory: Path | None, ext: str) -> tuple[int, Path] | None:
    found = list_checkpoints(directory, ext)
    return found[-1] if found else None


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Calls ``write(temporary_name)`` and renames the result to ``path``: a reader (or a
    restart after SIGKILL) sees the old file or the new one, never a part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def prune_checkpoints(directory: Path, ext: str, keep: int) -> None:
    """Keeps the newest ``keep`` checkpoints and removes leftovers of interrupted writes
    (only the writer calls this, so no other write is in progress)."""
    for _, path in list_checkpoints(directory, ext)[:-keep]:
        path.unlink(missing_ok=True)
    for path in directory.glob(f".checkpoint-*.{ext}.*.tmp"):
        path.unlink(missing_ok=True)


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
