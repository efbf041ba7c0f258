"""3DGAN in PyTorch: CERN's generator and four-headed discriminator (Khattak et al., the
angle version trained with Kubeflow at CERN), with a configurable seed grid.

Layout: images are (batch, 1, x, y, depth), Keras' channels_last (x, y, depth, 1) moved to
PyTorch's channels-first. Cell values are in the loss space, raised to the power 0.85
(``POWER``); the discriminator undoes the power for its physics heads.

Generator: 256 inputs [energy/100, angle, 254 Gaussian values] -> Dense(prod(seed) * 8) ->
reshape to the seed grid with 8 channels -> UpSampling3D(6) -> Conv3D stack (he_uniform,
ReLU, BatchNorm eps 1e-6) -> ReLU image. Discriminator: four Conv3D (5,6,6) blocks with
LeakyReLU, BatchNorm and Dropout 0.2 -> AveragePooling3D(2) -> heads: real/fake (sigmoid),
energy regression (linear), the angle measured from per-layer barycentres and the ECAL sum
(both computed from the image, no weights).
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from common import LATENT_SIZE, POWER, SEED_CHANNELS, UPSAMPLE, Grid

LOSS_WEIGHTS = (3.0, 0.1, 25.0, 0.1)  # real/fake (BCE), energy (MAPE), angle (MAE), ECAL sum (MAPE)
LEARNING_RATE = 1e-3  # RMSprop, both networks
BN_EPS = 1e-6
BN_MOMENTUM = 0.01  # Keras' momentum 0.99
LEAKY_SLOPE = 0.3  # Keras' LeakyReLU default


Layer = TypeVar("Layer", nn.Conv3d, nn.Linear)


def _init(layer: Layer, how: str = "glorot_uniform") -> Layer:
    """Keras' initialisers (zero biases): he_uniform is Kaiming's with limit sqrt(6 / fan_in)."""
    if how == "he_uniform":
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    elif how == "glorot_normal":
        nn.init.xavier_normal_(layer.weight)
    else:
        nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class Generator(nn.Module):
    def __init__(self, grid: Grid, latent_size: int = LATENT_SIZE) -> None:
        super().__init__()
        self.grid = grid
        self.latent_size = latent_size
        self.dense = _init(nn.Linear(latent_size, grid.dense_units))

        def block(
            cin: int, cout: int, kernel: tuple[int, int, int], pad: tuple[int, int, int]
        ) -> list[nn.Module]:
            # Keras: ZeroPadding3D(pad), Conv3D(valid), ReLU, BatchNormalization.
            return [
                _init(nn.Conv3d(cin, cout, kernel, padding=pad), "he_uniform"),
                nn.ReLU(),
                nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
            ]

        self.convs = nn.Sequential(
            *block(SEED_CHANNELS, 8, (6, 6, 8), (0, 0, 0)),
            *block(8, 6, (4, 4, 6), (2, 2, 1)),
            *block(6, 6, (4, 4, 6), (2, 2, 1)),
            *block(6, 6, (4, 4, 6), (2, 2, 1)),
            *block(6, 6, (3, 3, 5), (1, 1, 0)),
            _init(nn.Conv3d(6, 6, (3, 3, 3), padding=(1, 1, 0)), "he_uniform"),
            nn.ReLU(),
            _init(nn.Conv3d(6, 1, (2, 2, 2)), "glorot_normal"),
            nn.ReLU(),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        sx, sy, sz = self.grid.seed
        h = self.dense(latent)
        # Keras reshapes to channels_last (x, y, z, c); keep its ordering of the Dense units.
        h = h.view(-1, sx, sy, sz, SEED_CHANNELS).permute(0, 4, 1, 2, 3)
        h = F.interpolate(h, scale_factor=UPSAMPLE, mode="nearest")
        return self.convs(h)


def ecal_sum(image: torch.Tensor) -> torch.Tensor:
    """Total deposited energy per shower, (batch, 1)."""
    return image.sum(dim=(2, 3, 4)).view(-1, 1)


def ecal_angle(image: torch.Tensor, pitch: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """3DGAN's measured angle (radians, (batch, 1)) from the barycentres of the layers.

    The y-barycentre of each layer, relative to the shower's barycentre, over the distance
    along depth (with the x offset): m = dy / dz and angle = pi/2 - atan(m), averaged over the
    layers with depth as the weight. ``pitch`` is the cell size in full-grid cells, so that
    every grid measures the same angle; 100 marks an empty shower. Denominators are made safe
    before dividing, so that masked-out entries cannot put NaN into gradients.
    """
    img = image[:, 0]
    _, nx, ny, nz = img.shape
    px, py, pz = pitch
    dev, dt = img.device, img.dtype
    xs = (torch.arange(nx, device=dev, dtype=dt) + 0.5) * px
    ys = (torch.arange(ny, device=dev, dtype=dt) + 0.5) * py
    zs = (torch.arange(nz, device=dev, dtype=dt) + 0.5) * pz
    total = img.sum(dim=(1, 2, 3))
    empty = total == 0
    safe_total = torch.where(empty, torch.ones_like(total), total)
    x_ref = (img.sum(dim=(2, 3)) * xs).sum(1) / safe_total
    y_ref = (img.sum(dim=(1, 3)) * ys).sum(1) / safe_total
    z_ref = (img.sum(dim=(1, 2)) * zs).sum(1) / safe_total
    per_layer = img.sum(dim=(1, 2))  # (batch, nz)
    layer_on = per_layer != 0
    safe_layer = torch.where(layer_on, per_layer, torch.ones_like(per_layer))
    x_mid = (img.sum(dim=2) * xs[None, :, None]).sum(1) / safe_layer
    y_mid = (img.sum(dim=1) * ys[None, :, None]).sum(1) / safe_layer
    z = zs[None, :].expand_as(per_layer)
    zproj = torch.sqrt(torch.clamp((x_mid - x_ref[:, None]) ** 2 + (z - z_ref[:, None]) ** 2, min=1e-7))
    m = (y_mid - y_ref[:, None]) / zproj
    m = torch.where(z < z_ref[:, None], -m, m)
    ang = (math.pi / 2.0) - torch.atan(m)
    weight = z * layer_on.to(dt)
    weight_sum = weight.sum(1)
    safe_weight_sum = torch.where(weight_sum == 0, torch.ones_like(weight_sum), weight_sum)
    ang = (ang * weight).sum(1) / safe_weight_sum
    ang = torch.where(empty, torch.full_like(ang, 100.0), ang)
    return ang.view(-1, 1)


class Discriminator(nn.Module):
    def __init__(self, grid: Grid, power: float = POWER) -> None:
        super().__init__()
        self.grid = grid
        self.power = power
        kernel = (5, 6, 6)

        def block(cin: int, cout: int, pad: tuple[int, int, int], norm: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                _init(nn.Conv3d(cin, cout, kernel, padding=pad)),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
            if norm:
                layers.append(nn.BatchNorm3d(cout, eps=BN_EPS, momentum=BN_MOMENTUM))
            layers.append(nn.Dropout(0.2))
            return layers

        self.features = nn.Sequential(
            # Keras' padding="same": k - 1 zeros per axis, the odd one after (x 2+2, y and z 2+3).
            nn.ConstantPad3d((2, 3, 2, 3, 2, 2), 0.0),
            _init(nn.Conv3d(1, 16, kernel)),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Dropout(0.2),
            *block(16, 8, (0, 0, 1), True),
            *block(8, 8, (0, 0, 1), True),
            *block(8, 8, (0, 0, 0), True),
            nn.AvgPool3d(2),
            nn.Flatten(),
        )
        nx, ny, nz = grid.image
        self.num_features = 8 * ((nx - 12) // 2) * ((ny - 15) // 2) * ((nz - 11) // 2)
        self.real_fake = _init(nn.Linear(self.num_features, 1))
        self.energy = _init(nn.Linear(self.num_features, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real/fake logit, energy/100, angle, ECAL sum); the sigmoid of the first head is
        taken inside the loss, where it is numerically stable."""
        h = self.features(image)
        cells = torch.clamp(image, min=0) ** (1.0 / self.power)  # back to energies
        return self.real_fake(h), self.energy(h), ecal_angle(cells, self.grid.pitch), ecal_sum(cells)


def mape(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Keras' mean absolute percentage error."""
    return 100.0 * torch.mean(torch.abs(target - pred) / torch.clamp(torch.abs(target), min=1e-7))


def losses(
    outputs: tuple[torch.Tensor, ...],
    *,
    real: torch.Tensor,
    energy: torch.Tensor,
    angle: torch.Tensor,
    ecal: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted total and the four unweighted terms (BCE, MAPE, MAE, MAPE)."""
    logit, energy_pred, angle_pred, ecal_pred = outputs
    terms = torch.stack(
        [
            F.binary_cross_entropy_with_logits(logit, real),
            mape(energy, energy_pred),
            torch.mean(torch.abs(angle - angle_pred)),
            mape(ecal, ecal_pred),
        ]
    )
    weights = torch.tensor(LOSS_WEIGHTS, dtype=terms.dtype)
    return (terms * weights).sum(), terms.detach()


def latent(energy: torch.Tensor, angle: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[energy/100, angle, 254 Gaussian values] per shower."""
    noise = torch.randn(len(energy), LATENT_SIZE - 2, generator=generator)
    return torch.cat([energy.view(-1, 1), angle.view(-1, 1), noise], dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
