"""Synthetic electromagnetic showers in a 3DGAN-like calorimeter, written as HDF5.

CERN's 3DGAN learns Geant4 showers of electrons in a 51x51x25-cell electromagnetic
calorimeter (the ``ECAL`` dataset, with the particle's ``energy`` and incidence angle
``theta``). Those files are large and not redistributable here, so this module produces
stand-ins with the same keys, shapes and the features the physics checks look at:

* Longitudinal profile: the depth t (in radiation lengths X0) of every deposit follows a Gamma
  distribution, dE/dt ~ t^(a-1) exp(-b t), with b = 0.5 and a shower maximum
  t_max = (a - 1)/b = ln(E/Ec) - 0.5 (Longo's parametrisation for electrons), jittered per
  shower; one layer of the full grid is ``x0_per_layer`` X0 thick.
* Transverse profile: around the shower axis a deposit lies at a radius drawn from the
  2D exponential exp(-r/lambda), with lambda growing linearly with depth (showers widen).
* Angle: the particle enters at angle theta to the front face (90 degrees = perpendicular);
  the shower axis shifts in y by cot(theta) per unit of depth, so the y-centroid of each layer
  moves linearly with depth. Lengths are in full-grid cells; a layer and a cell are one unit
  each, which is how 3DGAN's angle measure (barycentres per layer) counts them.
* Energy as discrete quanta: the visible energy (``sampling_fraction`` x E on average) is
  Poisson-many quanta of ``quantum`` GeV, so the energy resolution is sqrt(quantum /
  sampling_fraction) / sqrt(E) (10%/sqrt(E) with the defaults); quanta leaving the volume
  are lost (leakage), and a cell holds a whole number of quanta.

Smaller grids (see common.py) bin the same volume into fewer, larger cells.

    python3 showers.py showers.h5 --events 1000 --grid small --seed 1
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from common import FULL_IMAGE, Grid, log


@dataclass(frozen=True)
class ShowerModel:
    sampling_fraction: float = 0.02  # visible / primary energy
    quantum: float = 2e-4  # GeV of visible energy per quantum
    critical_energy: float = 0.008  # GeV (tungsten)
    b: float = 0.5  # slope of the Gamma profile, per X0
    tmax_jitter: float = 0.08  # relative shower-to-shower spread of t_max
    x0_per_layer: float = 0.8  # X0 per full-grid layer: 25 layers = 20 X0
    width_front: float = 0.3  # lambda at the front face, full-grid cells
    width_per_x0: float = 0.08  # growth of lambda per X0 of depth

    def tmax(self, energy: np.ndarray) -> np.ndarray:
        """Depth of the shower maximum in X0 (Longo: ln(E/Ec) - 0.5 for electrons)."""
        return np.log(np.asarray(energy) / self.critical_energy) - 0.5


@dataclass
class Showers:
    ecal: np.ndarray  # (n, nx, ny, nz) float32, GeV per cell
    energy: np.ndarray  # (n,) float32, GeV
    theta: np.ndarray  # (n,) float32, radians
    quanta: np.ndarray  # (n,) quanta produced per shower
    contained: np.ndarray  # (n,) quanta inside the volume


def simulate(
    energy: np.ndarray,
    theta: np.ndarray,
    *,
    grid: Grid,
    model: ShowerModel | None = None,
    rng: np.random.Generator,
    chunk: int = 64,
) -> Showers:
    """Showers for the given energies (GeV) and angles (radians) on ``grid``."""
    model = model or ShowerModel()
    energy = np.asarray(energy, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    nx, ny, nz = grid.image
    px, py, pz = grid.pitch
    fx, fy, _ = FULL_IMAGE  # the depth limit is the grid's own: nz * pz == 25 full layers
    n = len(energy)
    ecal = np.zeros((n, nx, ny, nz), dtype=np.float32)
    produced = np.zeros(n, dtype=np.int64)
    inside = np.zeros(n, dtype=np.int64)
    for start in range(0, n, chunk):
        e = energy[start : start + chunk]
        th = theta[start : start + chunk]
        m = len(e)
        counts = rng.poisson(model.sampling_fraction * e / model.quantum)
        owner = np.repeat(np.arange(m), counts)
        # Longitudinal: Gamma-distributed depth with a jittered shower maximum.
        tmax = model.tmax(e) * (1.0 + model.tmax_jitter * rng.standard_normal(m))
        tmax = np.maximum(tmax, 0.5)
        shape = 1.0 + model.b * tmax
        t = rng.gamma(shape[owner], 1.0 / model.b)
        depth = t / model.x0_per_layer  # in full-grid layers
        # Transverse: 2D exponential, wider with depth (radius ~ Gamma(2, lambda)).
        lam = model.width_front + model.width_per_x0 * t
        r = rng.gamma(2.0, 1.0, size=len(t)) * lam
        phi = rng.uniform(0.0, 2.0 * math.pi, size=len(t))
        # Shower axis: enters near the centre; the angle shifts y linearly with depth, pivoting
        # at the shower maximum so the shower stays centred.
        x0 = fx / 2 + rng.uniform(-0.5, 0.5, m)
        y0 = fy / 2 + rng.uniform(-0.5, 0.5, m)
        zpivot = tmax / model.x0_per_layer
        slope = 1.0 / np.tan(th)  # cot(theta): y shift per unit of depth
        x = x0[owner] + r * np.cos(phi)
        y = y0[owner] + (depth - zpivot[owner]) * slope[owner] + r * np.sin(phi)
        ix = np.floor(x / px).astype(np.int64)
        iy = np.floor(y / py).astype(np.int64)
        iz = np.floor(depth / pz).astype(np.int64)
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
        flat = ((owner[ok] * nx + ix[ok]) * ny + iy[ok]) * nz + iz[ok]
        cells = np.bincount(flat, minlength=m * nx * ny * nz).reshape(m, nx, ny, nz)
        ecal[start : start + m] = cells * model.quantum
        produced[start : start + m] = counts
        inside[start : start + m] = np.bincount(owner[ok], minlength=m)
    return Showers(
        ecal=ecal,
        energy=energy.astype(np.float32),
        theta=theta.astype(np.float32),
        quanta=produced,
        contained=inside,
    )


def sample(
    n: int,
    *,
    grid: Grid,
    seed: int,
    energy_range: tuple[float, float] = (100.0, 200.0),
    theta_range_deg: tuple[float, float] = (60.0, 120.0),
    model: ShowerModel | None = None,
) -> Showers:
    """``n`` showers with energies and angles drawn uniformly from the ranges."""
    rng = np.random.default_rng(seed)
    energy = rng.uniform(*energy_range, size=n)
    theta = np.radians(rng.uniform(*theta_range_deg, size=n))
    return simulate(energy, theta, grid=grid, model=model, rng=rng)


def write(path: Path, showers: Showers, *, grid: Grid, model: ShowerModel, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("ECAL", data=showers.ecal, compression="gzip", compression_opts=1)
        f.create_dataset("energy", data=showers.energy)
        f.create_dataset("theta", data=showers.theta)
        f.attrs["seed_grid"] = grid.seed
        f.attrs["pitch"] = grid.pitch
        f.attrs["seed"] = seed
        for key, value in asdict(model).items():
            f.attrs[key] = value


def read(path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ECAL, energy, theta) of an HDF5 file in 3DGAN's layout."""
    with h5py.File(path, "r") as f:
        for key in ("ECAL", "energy", "theta"):
            if key not in f:
                raise KeyError(f"{path}: no dataset {key!r} (has {', '.join(f)})")
        sl = slice(None) if limit is None else slice(0, limit)
        ecal = np.asarray(f["ECAL"][sl], dtype=np.float32)
        energy = np.asarray(f["energy"][sl], dtype=np.float32).reshape(-1)
        theta = np.asarray(f["theta"][sl], dtype=np.float32).reshape(-1)
    return ecal, energy, theta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path, help="HDF5 file to write")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument(
        "--grid", default="small", help="small (21x21x13), medium (27x27x25), full (51x51x25)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--energy-min", type=float, default=100.0, help="GeV")
    parser.add_argument("--energy-max", type=float, default=200.0, help="GeV")
    parser.add_argument("--theta-min", type=float, default=60.0, help="degrees (90 = perpendicular)")
    parser.add_argument("--theta-max", type=float, default=120.0, help="degrees")
    parser.add_argument("--sampling-fraction", type=float, default=ShowerModel.sampling_fraction)
    parser.add_argument("--quantum", type=float, default=ShowerModel.quantum, help="GeV per quantum")
    parser.add_argument(
        "--like",
        type=Path,
        default=None,
        help="take the energies, angles and grid of this HDF5 file (other showers of the same particles)",
    )
    args = parser.parse_args(argv)
    model = ShowerModel(sampling_fraction=args.sampling_fraction, quantum=args.quantum)
    started = time.perf_counter()
    if args.like is not None:
        like, energy, theta = read(args.like)
        grid = Grid.for_image(like.shape[1:])
        made = simulate(energy, theta, grid=grid, model=model, rng=np.random.default_rng(args.seed))
    else:
        grid = Grid.parse(args.grid)
        made = sample(
            args.events,
            grid=grid,
            seed=args.seed,
            energy_range=(args.energy_min, args.energy_max),
            theta_range_deg=(args.theta_min, args.theta_max),
            model=model,
        )
    write(args.output, made, grid=grid, model=model, seed=args.seed)
    log(
        f"wrote {len(made.energy)} showers ({grid.describe()}) to {args.output} "
        f"in {time.perf_counter() - started:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
