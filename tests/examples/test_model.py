"""3DGAN's networks: the shapes CERN's model has on the full grid, the same stack on the small
ones, and the physics heads (angle from barycentres, ECAL sum) against the numpy checks."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

import showers
import validate
from common import Grid

torch = pytest.importorskip("torch")
import model_torch as mt  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("name", "seed", "image", "dense"),
    [
        ("small", (4, 4, 6), (21, 21, 13), 768),
        ("medium", (5, 5, 8), (27, 27, 25), 1600),
        ("full", (9, 9, 8), (51, 51, 25), 5184),
    ],
)
def test_grids(name: str, seed: tuple[int, int, int], image: tuple[int, int, int], dense: int) -> None:
    grid = Grid.parse(name)
    assert grid.seed == seed
    assert grid.image == image
    assert grid.dense_units == dense
    assert Grid.for_image(image) == grid
    assert Grid.parse(",".join(map(str, seed))) == grid
    # Every grid covers the full grid's volume.
    assert [round(n * p, 9) for n, p in zip(grid.image, grid.pitch, strict=True)] == [51, 51, 25]


def test_bad_grids_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="expected one of full, medium, small"):
        Grid.parse("tiny")
    with pytest.raises(ValueError, match="discriminator needs at least"):
        Grid.parse("4,4,5")  # depth 7 layers
    with pytest.raises(ValueError, match="no seed grid"):
        Grid.for_image((50, 51, 25))


@pytest.mark.parametrize("name", ["small", "full"])
def test_torch_shapes(name: str) -> None:
    torch.manual_seed(0)
    grid = Grid.parse(name)
    gen, disc = mt.Generator(grid), mt.Discriminator(grid)
    z = mt.latent(torch.tensor([1.5, 1.2]), torch.tensor([1.4, 1.7]), torch.Generator().manual_seed(0))
    assert z.shape == (2, 256)
    with torch.no_grad():
        image = gen(z)
        outputs = disc(image)
    assert image.shape == (2, 1, *grid.image)
    assert (image >= 0).all()  # ReLU output
    assert [tuple(o.shape) for o in outputs] == [(2, 1)] * 4
    # The full grid is CERN's model: Dense(5184) on the 256 inputs, 19152 features in D.
    if name == "full":
        assert sum(p.numel() for p in gen.dense.parameters()) == 256 * 5184 + 5184
        assert disc.num_features == 8 * 19 * 18 * 7


def test_physics_heads_match_the_numpy_measures() -> None:
    grid = Grid.parse("small")
    s = showers.sample(16, grid=grid, seed=5)
    cells = torch.from_numpy(s.ecal).unsqueeze(1)
    angle = mt.ecal_angle(cells, grid.pitch).numpy()[:, 0]
    assert np.allclose(angle, validate.measured_angle(s.ecal, grid.pitch), atol=1e-4)
    assert np.abs(angle - s.theta).mean() < 0.05
    # The discriminator undoes the 0.85 power before measuring.
    disc = mt.Discriminator(grid).eval()
    with torch.no_grad():
        _, _, ang, ecal = disc(cells**mt.POWER)
    assert np.allclose(ecal.numpy()[:, 0], s.ecal.sum(axis=(1, 2, 3)), rtol=1e-4)
    assert np.allclose(ang.numpy()[:, 0], angle, atol=1e-3)
    assert float(mt.ecal_angle(torch.zeros(1, 1, *grid.image))) == 100.0  # an empty shower


def test_losses_are_cerns_weighted_sum_and_finite_on_empty_showers() -> None:
    grid = Grid.parse("small")
    torch.manual_seed(1)
    gen, disc = mt.Generator(grid), mt.Discriminator(grid)
    labels = {
        "real": torch.ones(2, 1),
        "energy": torch.tensor([[1.0], [2.0]]),
        "angle": torch.tensor([[1.5], [1.6]]),
        "ecal": torch.tensor([[2.0], [4.0]]),
    }
    outputs = (
        torch.zeros(2, 1),
        torch.tensor([[1.1], [1.8]]),
        torch.tensor([[1.5], [1.7]]),
        torch.tensor([[3.0], [4.0]]),
    )
    total, terms = mt.losses(outputs, **labels)
    assert terms.tolist() == pytest.approx([math.log(2), 10.0, 0.05, 25.0], rel=1e-5)
    assert float(total) == pytest.approx(3 * math.log(2) + 0.1 * 10 + 25 * 0.05 + 0.1 * 25, rel=1e-5)
    # A generator whose output is all zeros (dead ReLUs) still gives finite gradients.
    with torch.no_grad():
        gen.convs[-2].bias.fill_(-1e3)
    z = mt.latent(labels["energy"][:, 0], labels["angle"][:, 0], torch.Generator().manual_seed(0))
    image = gen(z)
    assert float(image.detach().sum()) == 0.0
    loss, _ = mt.losses(disc(image), **labels)
    loss.backward()
    grads = [p.grad for p in [*gen.parameters(), *disc.parameters()] if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
def test_tensorflow_model_has_the_same_shapes_and_weights() -> None:
    import model_tf as mtf

    for name in ("small", "full"):
        grid = Grid.parse(name)
        gen, disc = mtf.generator(grid), mtf.discriminator(grid)
        image = gen(np.zeros((2, 256), np.float32))
        assert tuple(image.shape) == (2, *grid.image, 1)
        assert [tuple(o.shape) for o in disc(image)] == [(2, 1)] * 4
        # The same trainable parameters as the PyTorch model, layer for layer.
        trainable = sum(int(np.prod(v.shape)) for v in [*gen.trainable_variables, *disc.trainable_variables])
        assert trainable == mt.count_parameters(mt.Generator(grid)) + mt.count_parameters(
            mt.Discriminator(grid)
        )
    s = showers.sample(8, grid=Grid.parse("small"), seed=5)
    measured = np.asarray(mtf.ecal_angle(s.ecal[..., None], Grid.parse("small").pitch))[:, 0]
    assert np.allclose(measured, validate.measured_angle(s.ecal, Grid.parse("small").pitch), atol=1e-4)
