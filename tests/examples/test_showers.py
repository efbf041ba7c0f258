"""The synthetic shower generator: the HDF5 layout 3DGAN reads and the physics it promises."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

import showers
import validate
from common import Grid

pytestmark = pytest.mark.timeout(60)

FULL = Grid.parse("full")
SMALL = Grid.parse("small")


def run(
    energy: float, theta_deg: float, n: int, *, grid: Grid = FULL, seed: int = 1, **model: float
) -> showers.Showers:
    return showers.simulate(
        np.full(n, energy),
        np.full(n, math.radians(theta_deg)),
        grid=grid,
        model=showers.ShowerModel(**model),
        rng=np.random.default_rng(seed),
    )


def test_cli_writes_3dgan_hdf5(tmp_path: Path) -> None:
    out = tmp_path / "showers.h5"
    assert showers.main([str(out), "--events", "40", "--grid", "small", "--seed", "3"]) == 0
    with h5py.File(out) as f:
        assert set(f) == {"ECAL", "energy", "theta"}
        assert f["ECAL"].shape == (40, 21, 21, 13)
        assert f["ECAL"].dtype == np.float32
        assert f["energy"].shape == f["theta"].shape == (40,)
        energy, theta = f["energy"][:], f["theta"][:]
        assert list(f.attrs["seed_grid"]) == [4, 4, 6]
    assert energy.min() >= 100 and energy.max() <= 200
    assert np.radians(60) <= theta.min() and theta.max() <= np.radians(120)
    # The same seed gives the same showers; another one does not.
    again = tmp_path / "again.h5"
    showers.main([str(again), "--events", "40", "--grid", "small", "--seed", "3"])
    other = tmp_path / "other.h5"
    showers.main([str(other), "--events", "40", "--grid", "small", "--seed", "4"])
    assert np.array_equal(showers.read(out)[0], showers.read(again)[0])
    assert not np.array_equal(showers.read(out)[0], showers.read(other)[0])


def test_energy_is_conserved_within_the_quanta_noise() -> None:
    model = showers.ShowerModel()
    s = run(150.0, 90.0, 300)
    # Every cell holds whole quanta, and the cells hold every quantum that stayed inside.
    quanta = s.ecal / model.quantum
    assert np.allclose(quanta, np.round(quanta), atol=1e-3)
    assert np.allclose(s.ecal.sum(axis=(1, 2, 3)), s.contained * model.quantum, rtol=1e-5)
    # The number of quanta is Poisson around sampling_fraction * E / quantum.
    mean = model.sampling_fraction * 150.0 / model.quantum
    pulls = (s.quanta - mean) / math.sqrt(mean)
    assert abs(pulls.mean()) < 4 / math.sqrt(len(pulls))
    assert 0.8 < pulls.std() < 1.2
    # Little leaks out of 20 X0 and 51x51 cells.
    assert 0.9 < (s.contained / s.quanta).mean() < 1.0


def _gamma_layer_fractions(model: showers.ShowerModel, energy: float, layers: int) -> np.ndarray:
    """Expected share of each layer: the Gamma density integrated over the layer's depth."""
    tmax = float(model.tmax(np.array(energy)))
    a, b = 1.0 + model.b * tmax, model.b
    t = np.linspace(0, layers * model.x0_per_layer, 20001)[1:]
    pdf = np.exp((a - 1) * np.log(t) - b * t + a * math.log(b) - math.lgamma(a))
    layer = np.minimum((t / model.x0_per_layer).astype(int), layers - 1)
    fractions = np.bincount(layer, weights=pdf, minlength=layers)
    return fractions / fractions.sum()


@pytest.mark.parametrize("energy", [100.0, 200.0])
def test_longitudinal_profile_is_gamma_shaped(energy: float) -> None:
    model = showers.ShowerModel(tmax_jitter=0.0)
    s = run(energy, 90.0, 100, tmax_jitter=0.0)
    measured = validate.normalised_profile(s.ecal, 3)
    expected = _gamma_layer_fractions(model, energy, FULL.image[2])
    assert np.abs(measured - expected).sum() < 0.02
    peak = int(np.argmax(measured))
    assert abs(peak - float(model.tmax(np.array(energy))) / model.x0_per_layer) <= 1.5


def test_showers_go_deeper_with_energy() -> None:
    model = showers.ShowerModel(tmax_jitter=0.0)
    layers = FULL.image[2]
    depth, expected = {}, {}
    for e in (50.0, 200.0):
        depth[e] = validate.barycentres(run(e, 90.0, 100, tmax_jitter=0.0).ecal, FULL.pitch)[:, 2].mean()
        expected[e] = (_gamma_layer_fractions(model, e, layers) * (np.arange(layers) + 0.5)).sum()
    # The maximum moves by ln(200/50) X0 (less in the mean, as the calorimeter ends at 20 X0).
    assert depth[200.0] - depth[50.0] > 0.5 * math.log(4) / model.x0_per_layer
    assert abs((depth[200.0] - depth[50.0]) - (expected[200.0] - expected[50.0])) < 0.1


def test_transverse_profile_widens_with_depth() -> None:
    model = showers.ShowerModel()
    s = run(150.0, 90.0, 100)
    cells = s.ecal.sum(axis=0)  # (x, y, depth)
    centres = np.arange(51) + 0.5
    x, y = np.meshgrid(centres, centres, indexing="ij")
    r = np.hypot(x - 25.5, y - 25.5)
    layers = range(2, 20)  # where the shower has energy enough to measure its width
    mean_r = np.array([(cells[:, :, k] * r).sum() / cells[:, :, k].sum() for k in layers])
    assert np.all(np.diff(mean_r) > 0)
    # A 2D exponential has <r> = 2 lambda, and lambda grows by width_per_x0 per X0.
    slope = np.polyfit(np.array(layers, dtype=float), mean_r, 1)[0]
    expected = 2 * model.width_per_x0 * model.x0_per_layer
    assert 0.7 * expected < slope < 1.3 * expected
    # Exponential, not Gaussian: the energy at radius > 3 <r> is far above a Gaussian's tail.
    k = 12
    share = cells[:, :, k][r > 3 * mean_r[k - 2]].sum() / cells[:, :, k].sum()
    assert share > 0.01


@pytest.mark.parametrize("theta_deg", [60.0, 90.0, 120.0])
@pytest.mark.parametrize("grid", [FULL, SMALL], ids=["full", "small"])
def test_angle_shifts_the_y_centroid_per_layer(theta_deg: float, grid: Grid) -> None:
    s = run(150.0, theta_deg, 40, grid=grid)
    per_layer = s.ecal.sum(axis=0)  # (x, y, depth)
    px, py, pz = grid.pitch
    depth = (np.arange(grid.image[2]) + 0.5) * pz
    core = slice(grid.image[2] // 5, 4 * grid.image[2] // 5)
    y_c = (per_layer.sum(axis=0) * ((np.arange(grid.image[1]) + 0.5) * py)[:, None]).sum(0) / per_layer.sum(
        (0, 1)
    )
    x_c = (per_layer.sum(axis=1) * ((np.arange(grid.image[0]) + 0.5) * px)[:, None]).sum(0) / per_layer.sum(
        (0, 1)
    )
    slope_y = np.polyfit(depth[core], y_c[core], 1)[0]
    slope_x = np.polyfit(depth[core], x_c[core], 1)[0]
    cot = 1 / math.tan(math.radians(theta_deg))
    assert abs(slope_y - cot) < 0.1
    assert abs(slope_x) < 0.05
    # 3DGAN's own measure (per-layer barycentres) recovers the angle.
    assert abs(validate.measured_angle(s.ecal, grid.pitch).mean() - math.radians(theta_deg)) < 0.04


def test_small_grid_rebins_the_same_showers() -> None:
    full = run(150.0, 75.0, 20, grid=FULL, seed=7)
    small = run(150.0, 75.0, 20, grid=SMALL, seed=7)
    assert small.ecal.shape == (20, 21, 21, 13)
    # The same quanta land in the same volume: the same energy per shower, in coarser cells.
    assert np.allclose(full.ecal.sum(axis=(1, 2, 3)), small.ecal.sum(axis=(1, 2, 3)), rtol=1e-3)
    assert np.allclose(
        validate.barycentres(full.ecal, FULL.pitch), validate.barycentres(small.ecal, SMALL.pitch), atol=0.7
    )
