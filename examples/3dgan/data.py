"""Training data for 3DGAN: an HDF5 file in 3DGAN's layout (ECAL, energy, theta) or synthetic
showers made on the spot, prepared as CERN's training did it, and split between ranks.

Preparation (GetDataAngleParallel in CERN's code): the label of the ECAL head is the sum of
the cells; cells are then raised to the power 0.85 (the loss space); the energy is divided by
100; showers without deposits are dropped.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import showers
from common import ENERGY_SCALE, POWER, Grid, fail, log


@dataclass
class Dataset:
    image: np.ndarray  # (n, nx, ny, nz) float32, cells ** POWER
    energy: np.ndarray  # (n,) float32, energy / 100
    theta: np.ndarray  # (n,) float32, radians
    ecal: np.ndarray  # (n,) float32, sum of the cells (GeV)

    def __len__(self) -> int:
        return len(self.energy)

    def shard(self, rank: int, world: int) -> Dataset:
        """This rank's contiguous share; every rank gets the same number of showers (the
        remainder is dropped) so that all ranks run the same number of steps."""
        per_rank = len(self) // world
        sl = slice(rank * per_rank, (rank + 1) * per_rank)
        return Dataset(self.image[sl], self.energy[sl], self.theta[sl], self.ecal[sl])

    def take(self, index: np.ndarray) -> Dataset:
        return Dataset(self.image[index], self.energy[index], self.theta[index], self.ecal[index])


def prepare(ecal: np.ndarray, energy: np.ndarray, theta: np.ndarray) -> Dataset:
    sums = ecal.sum(axis=(1, 2, 3))
    keep = sums > 0
    return Dataset(
        image=np.power(ecal[keep], POWER, dtype=np.float32),
        energy=(energy[keep] / ENERGY_SCALE).astype(np.float32),
        theta=theta[keep].astype(np.float32),
        ecal=sums[keep].astype(np.float32),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid",
        default=None,
        help="small (21x21x13), medium (27x27x25), full (51x51x25) or a seed SX,SY,SZ; "
        "default: the grid of --data, else small",
    )
    parser.add_argument("--data", type=Path, default=None, help="HDF5 file (ECAL, energy, theta)")
    parser.add_argument("--events", type=int, default=256, help="synthetic showers when --data is not given")
    parser.add_argument("--data-seed", type=int, default=1, help="seed of the synthetic showers")


def load(args: argparse.Namespace) -> tuple[Grid, Dataset]:
    """The grid and the prepared data. Every rank builds the same data (a file, or synthetic
    showers from one seed) and then takes its own shard. A bad grid or file ends the process
    with a message (exit status 2), not a traceback."""
    try:
        return _load(args)
    except (ValueError, KeyError, OSError) as exc:
        fail(str(exc).strip('"'))


def _load(args: argparse.Namespace) -> tuple[Grid, Dataset]:
    grid = Grid.parse(args.grid or "small")
    if args.data is not None:
        ecal, energy, theta = showers.read(args.data)
        file_grid = Grid.for_image(ecal.shape[1:])
        if args.grid is None:
            grid = file_grid
        elif file_grid != grid:
            raise ValueError(
                f"{args.data} holds {file_grid.describe()} but --grid {args.grid} is {grid.describe()}"
            )
        source = str(args.data)
    else:
        made = showers.sample(args.events, grid=grid, seed=args.data_seed)
        ecal, energy, theta = made.ecal, made.energy, made.theta
        source = f"{args.events} synthetic showers (seed {args.data_seed})"
    dataset = prepare(ecal, energy, theta)
    log(f"data: {source}, {grid.describe()}, {len(dataset)} usable")
    return grid, dataset
