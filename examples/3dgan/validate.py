"""Physics checks of generated showers against reference showers (3DGAN's validation).

Compares, on showers with the same energies and angles:

* the sampling fraction (ECAL sum / primary energy) in bins of energy,
* the longitudinal profile (energy per layer) and the transverse profiles along x and y,
  each as the mean normalised profile, compared by their L1 distance (0: identical, 2: disjoint),
* the first moments: the mean barycentre of the showers along x, y and depth (full-grid cells),
* the angle measured from the per-layer barycentres (3DGAN's angle head), against the true one.

The generated showers come from an HDF5 file (``--generated``) or from a checkpoint of
train_torch.py or train_tf.py (``--checkpoint``: a file or a checkpoint directory, then the
newest), run on the reference's energies and angles. Prints every metric as `name=value` (for
Katib and pipelines), then one line per check, and exits 1 if a check fails its threshold.

    python3 validate.py --reference ref.h5 --generated gen.h5
    python3 validate.py --reference ref.h5 --checkpoint $LUMIFLOW_CHECKPOINT_DIR
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import showers
from common import LATENT_SIZE, POWER, Grid, emit, fail, latest_checkpoint, log


@dataclass(frozen=True)
class Thresholds:
    sampling_fraction: float  # max relative deviation of the mean per energy bin
    profile: float  # max L1 distance of the normalised profiles
    moment: float  # max shift of the mean barycentre, full-grid cells
    angle: float  # max excess of the mean absolute angle error over the reference's, radians


def barycentres(ecal: np.ndarray, pitch: tuple[float, float, float]) -> np.ndarray:
    """(n, 3) energy-weighted mean position along x, y, depth, in full-grid cells."""
    total = ecal.sum(axis=(1, 2, 3))
    safe = np.where(total == 0, 1.0, total)
    out = []
    for axis, size in zip(((2, 3), (1, 3), (1, 2)), pitch, strict=True):
        profile = ecal.sum(axis=axis)
        centres = (np.arange(profile.shape[1]) + 0.5) * size
        out.append((profile * centres).sum(axis=1) / safe)
    return np.stack(out, axis=1)


def measured_angle(ecal: np.ndarray, pitch: tuple[float, float, float]) -> np.ndarray:
    """3DGAN's angle from per-layer barycentres (numpy version of model_torch.ecal_angle)."""
    _, nx, ny, nz = ecal.shape
    px, py, pz = pitch
    xs, ys, zs = ((np.arange(k) + 0.5) * p for k, p in ((nx, px), (ny, py), (nz, pz)))
    ref = barycentres(ecal, pitch)
    per_layer = ecal.sum(axis=(1, 2))
    on = per_layer != 0
    safe = np.where(on, per_layer, 1.0)
    x_mid = (ecal.sum(axis=2) * xs[None, :, None]).sum(axis=1) / safe
    y_mid = (ecal.sum(axis=1) * ys[None, :, None]).sum(axis=1) / safe
    z = np.broadcast_to(zs, per_layer.shape)
    zproj = np.sqrt(np.maximum((x_mid - ref[:, :1]) ** 2 + (z - ref[:, 2:]) ** 2, 1e-7))
    m = (y_mid - ref[:, 1:2]) / zproj
    m = np.where(z < ref[:, 2:], -m, m)
    ang = math.pi / 2 - np.arctan(m)
    weight = z * on
    wsum = weight.sum(axis=1)
    ang = (ang * weight).sum(axis=1) / np.where(wsum == 0, 1.0, wsum)
    return np.where(ecal.sum(axis=(1, 2, 3)) == 0, 100.0, ang)


def normalised_profile(ecal: np.ndarray, keep_axis: int) -> np.ndarray:
    axes = tuple(a for a in (1, 2, 3) if a != keep_axis)
    profile = ecal.sum(axis=axes).mean(axis=0)
    total = profile.sum()
    return profile / total if total > 0 else profile


def compare(
    ref: tuple[np.ndarray, np.ndarray, np.ndarray],
    gen: np.ndarray,
    *,
    grid: Grid,
    bins: int,
) -> dict[str, float]:
    ecal_ref, energy, theta = ref
    metrics: dict[str, float] = {}
    # Sampling fraction versus energy, in bins of equal population.
    edges = np.quantile(energy, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, energy, side="right") - 1, 0, bins - 1)
    sf_ref = ecal_ref.sum(axis=(1, 2, 3)) / energy
    sf_gen = gen.sum(axis=(1, 2, 3)) / energy
    deviations = []
    for k in range(bins):
        sel = which == k
        if not sel.any():
            continue
        r, g = float(sf_ref[sel].mean()), float(sf_gen[sel].mean())
        metrics[f"sf_energy_{k + 1}"] = float(energy[sel].mean())
        metrics[f"sf_ref_{k + 1}"] = r
        metrics[f"sf_gen_{k + 1}"] = g
        deviations.append(abs(g / r - 1.0) if r > 0 else math.inf)
    metrics["sf_max_rel_dev"] = max(deviations)
    # Shower shapes.
    for name, axis in (("long", 3), ("x", 1), ("y", 2)):
        metrics[f"{name}_profile_l1"] = float(
            np.abs(normalised_profile(gen, axis) - normalised_profile(ecal_ref, axis)).sum()
        )
    # First moments, in full-grid cells.
    shift = np.abs(barycentres(gen, grid.pitch).mean(axis=0) - barycentres(ecal_ref, grid.pitch).mean(axis=0))
    for name, value in zip(("x", "y", "z"), shift, strict=True):
        metrics[f"{name}_moment_shift"] = float(value)
    # The angle 3DGAN measures, against the true angle.
    metrics["angle_mae_ref"] = float(np.abs(measured_angle(ecal_ref, grid.pitch) - theta).mean())
    metrics["angle_mae_gen"] = float(np.abs(measured_angle(gen, grid.pitch) - theta).mean())
    return metrics


def checks(metrics: dict[str, float], limits: Thresholds) -> list[tuple[str, float, float]]:
    return [
        ("sampling fraction versus energy", metrics["sf_max_rel_dev"], limits.sampling_fraction),
        ("longitudinal profile", metrics["long_profile_l1"], limits.profile),
        ("transverse profile x", metrics["x_profile_l1"], limits.profile),
        ("transverse profile y", metrics["y_profile_l1"], limits.profile),
        (
            "first moments",
            max(metrics["x_moment_shift"], metrics["y_moment_shift"], metrics["z_moment_shift"]),
            limits.moment,
        ),
        ("measured angle", metrics["angle_mae_gen"] - metrics["angle_mae_ref"], limits.angle),
    ]


# --- generating from a checkpoint ----------------------------------------------------------


def _find_checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    found = [c for c in (latest_checkpoint(path, "pt"), latest_checkpoint(path, "npz")) if c]
    if not found:
        fail(f"no 3DGAN checkpoint in {path}")
    return max(found, key=lambda c: c[1].stat().st_mtime)[1]


def generate(
    checkpoint: Path, energy: np.ndarray, theta: np.ndarray, *, seed: int, batch: int = 64
) -> np.ndarray:
    """Cells (GeV) generated by the checkpoint's generator for the given energies and angles."""
    rng = np.random.default_rng(seed)
    latent = np.concatenate(
        [
            (energy / 100.0)[:, None],
            theta[:, None],
            rng.standard_normal((len(energy), LATENT_SIZE - 2)),
        ],
        axis=1,
    ).astype(np.float32)
    if checkpoint.suffix == ".pt":
        import torch

        import model_torch as mt

        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model = mt.Generator(Grid.of(state["seed_grid"]))
        model.load_state_dict(state["generator"])
        model.eval()
        with torch.no_grad():
            parts = [
                model(torch.from_numpy(latent[i : i + batch]))[:, 0].numpy()
                for i in range(0, len(latent), batch)
            ]
    else:
        import model_tf as mtf

        with np.load(checkpoint) as saved:
            model = mtf.generator(Grid.of(saved["seed_grid"]))
            for i, var in enumerate(model.variables):
                var.assign(saved[f"v{i}"])
        parts = [
            np.asarray(model(latent[i : i + batch], training=False))[..., 0]
            for i in range(0, len(latent), batch)
        ]
    image = np.concatenate(parts)
    return np.power(np.maximum(image, 0.0), 1.0 / POWER).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", type=Path, required=True, help="HDF5 showers (ECAL, energy, theta)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--generated", type=Path, help="HDF5 showers for the same energies and angles")
    source.add_argument(
        "--checkpoint", type=Path, help="a train_torch/train_tf checkpoint, or their directory"
    )
    parser.add_argument("--events", type=int, default=None, help="use the first N reference showers")
    parser.add_argument("--bins", type=int, default=4, help="energy bins for the sampling fraction")
    parser.add_argument("--seed", type=int, default=0, help="noise of the generator (--checkpoint)")
    parser.add_argument("--max-sf-dev", type=float, default=0.05, help="relative, per energy bin")
    parser.add_argument("--max-profile-l1", type=float, default=0.1)
    parser.add_argument("--max-moment-shift", type=float, default=0.5, help="full-grid cells")
    parser.add_argument("--max-angle-excess", type=float, default=0.05, help="radians")
    args = parser.parse_args(argv)

    ecal_ref, energy, theta = showers.read(args.reference, args.events)
    grid = Grid.for_image(ecal_ref.shape[1:])
    if args.generated is not None:
        gen, gen_energy, gen_theta = showers.read(args.generated, args.events)
        if gen.shape != ecal_ref.shape:
            fail(f"generated showers have shape {gen.shape}, the reference {ecal_ref.shape}")
        if not (np.allclose(gen_energy, energy, rtol=1e-4) and np.allclose(gen_theta, theta, atol=1e-4)):
            fail("generated and reference showers must have the same energies and angles, in order")
        what = str(args.generated)
    else:
        path = _find_checkpoint(args.checkpoint)
        gen = generate(path, energy, theta, seed=args.seed)
        if gen.shape != ecal_ref.shape:
            fail(f"{path.name} generates {gen.shape[1:]}, the reference is {ecal_ref.shape[1:]}")
        what = str(path)
    log(f"validating {what} against {args.reference}: {len(energy)} showers, {grid.describe()}")
    metrics = compare((ecal_ref, energy, theta), gen, grid=grid, bins=args.bins)
    for name, value in metrics.items():
        emit(**{name: value})
    limits = Thresholds(args.max_sf_dev, args.max_profile_l1, args.max_moment_shift, args.max_angle_excess)
    failed = 0
    for name, value, limit in checks(metrics, limits):
        ok = bool(value <= limit)  # NaN fails
        failed += not ok
        log(f"{'PASS' if ok else 'FAIL'} {name}: {value:.4g} (at most {limit:g})")
    emit(checks_failed=failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
