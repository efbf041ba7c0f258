"""validate.py: the physics checks pass on showers of the same physics, fail on each kind of
corruption, and run on a training checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import showers
import validate
from common import Grid
from tests.examples.conftest import EXAMPLE, KATIB, TorchRun, base_env

pytestmark = pytest.mark.timeout(60)
GRID = Grid.parse("small")
MODEL = showers.ShowerModel()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference and other showers of the same particles (same energies and angles)."""
    base = tmp_path_factory.mktemp("validate")
    ref = showers.sample(160, grid=GRID, seed=1)
    same = showers.simulate(ref.energy, ref.theta, grid=GRID, rng=np.random.default_rng(2))
    paths = {"ref": base / "ref.h5", "same": base / "same.h5"}
    showers.write(paths["ref"], ref, grid=GRID, model=MODEL, seed=1)
    showers.write(paths["same"], same, grid=GRID, model=MODEL, seed=2)
    return paths


def test_showers_of_the_same_physics_pass(files: dict[str, Path]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "validate.py"),
            "--reference",
            str(files["ref"]),
            "--generated",
            str(files["same"]),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        env=base_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = {m.group(1): m.group(2) for m in KATIB.finditer(result.stdout)}
    for name in (
        "sf_max_rel_dev",
        "long_profile_l1",
        "x_profile_l1",
        "y_profile_l1",
        "z_moment_shift",
        "angle_mae_gen",
    ):
        assert float(metrics[name]) >= 0
    assert metrics["checks_failed"] == "0"
    assert result.stdout.count("PASS ") == 6


def write(path: Path, ecal: np.ndarray, energy: np.ndarray, theta: np.ndarray) -> Path:
    """Showers made by hand, in the generator's HDF5 layout."""
    unknown = np.zeros(len(energy), dtype=np.int64)
    made = showers.Showers(ecal=ecal, energy=energy, theta=theta, quanta=unknown, contained=unknown)
    showers.write(path, made, grid=GRID, model=MODEL, seed=0)
    return path


def _shift(ecal: np.ndarray, axis: int, by: int) -> np.ndarray:
    out = np.zeros_like(ecal)
    src = [slice(None)] * 4
    dst = [slice(None)] * 4
    src[axis], dst[axis] = slice(0, ecal.shape[axis] - by), slice(by, None)
    out[tuple(dst)] = ecal[tuple(src)]
    return out


CORRUPTIONS = {
    # name: (corruption of (ecal, energy), the checks that must fail)
    "too much energy": (lambda e, E: e * 1.2, {"sampling fraction versus energy"}),
    "wrong energy dependence": (
        lambda e, E: e * (E[:, None, None, None] / 150.0) ** 0.5,
        {"sampling fraction versus energy"},
    ),
    "showers start two layers deep": (
        lambda e, E: _shift(e, 3, 2),
        # ... and leak out of the back: less energy in the calorimeter.
        {"longitudinal profile", "first moments", "sampling fraction versus energy"},
    ),
    "showers off by a cell in x": (
        lambda e, E: _shift(e, 1, 1),
        {"transverse profile x", "first moments"},
    ),
    "angle mirrored": (lambda e, E: e[:, :, ::-1, :], {"measured angle"}),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_showers_fail(
    name: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt, expected = CORRUPTIONS[name]
    ecal, energy, theta = showers.read(files["same"])
    path = write(tmp_path / "bad.h5", corrupt(ecal, energy).astype(np.float32), energy, theta)
    rc = validate.main(["--reference", str(files["ref"]), "--generated", str(path)])
    out = capsys.readouterr().out
    failed = {line[len("FAIL ") :].split(":")[0] for line in out.splitlines() if line.startswith("FAIL ")}
    assert rc == 1, out
    assert failed == expected, out


def test_mismatched_files_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    ecal, energy, theta = showers.read(files["same"])
    path = write(tmp_path / "other.h5", ecal, energy[::-1].copy(), theta)
    with pytest.raises(SystemExit) as exc:
        validate.main(["--reference", str(files["ref"]), "--generated", str(path)])
    assert exc.value.code == 2


@pytest.mark.timeout(180)
def test_runs_on_a_training_checkpoint(
    files: dict[str, Path], ddp_run: TorchRun, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    args = ["--reference", str(files["ref"]), "--events", "48", "--checkpoint", str(ddp_run.checkpoints)]
    # Six steps do not make a calorimeter: the checks run and fail.
    assert validate.main(args) == 1
    out = capsys.readouterr().out
    assert "checkpoint-00000003.pt" in out
    assert "checks_failed=" in out
    # With thresholds nothing can miss, the same run passes: the exit code follows the thresholds.
    loose = [
        "--max-sf-dev",
        "1e9",
        "--max-profile-l1",
        "2",
        "--max-moment-shift",
        "1e9",
        "--max-angle-excess",
        "1e9",
    ]
    assert validate.main([*args, *loose]) == 0
