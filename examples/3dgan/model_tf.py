"""3DGAN in TensorFlow/Keras 3, layer for layer CERN's Keras model (channels_last: images are
(batch, x, y, depth, 1)), with the seed grid configurable as in model_torch.py."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

from common import LATENT_SIZE, POWER, SEED_CHANNELS, UPSAMPLE, Grid

LOSS_WEIGHTS = (3.0, 0.1, 25.0, 0.1)  # real/fake (BCE), energy (MAPE), angle (MAE), ECAL sum (MAPE)
LEARNING_RATE = 1e-3
BN_EPS = 1e-6


def generator(grid: Grid, latent_size: int = LATENT_SIZE) -> keras.Model:
    def block(
        filters: int, kernel: tuple[int, int, int], pad: tuple[int, int, int] | None
    ) -> list[layers.Layer]:
        out: list[layers.Layer] = [layers.ZeroPadding3D(pad)] if pad else []
        return [
            *out,
            layers.Conv3D(filters, kernel, padding="valid", kernel_initializer="he_uniform"),
            layers.Activation("relu"),
            layers.BatchNormalization(epsilon=BN_EPS),
        ]

    return keras.Sequential(
        [
            keras.Input((latent_size,)),
            layers.Dense(grid.dense_units),
            layers.Reshape((*grid.seed, SEED_CHANNELS)),
            layers.UpSampling3D(size=(UPSAMPLE, UPSAMPLE, UPSAMPLE)),
            *block(8, (6, 6, 8), None),
            *block(6, (4, 4, 6), (2, 2, 1)),
            *block(6, (4, 4, 6), (2, 2, 1)),
            *block(6, (4, 4, 6), (2, 2, 1)),
            *block(6, (3, 3, 5), (1, 1, 0)),
            layers.ZeroPadding3D((1, 1, 0)),
            layers.Conv3D(6, (3, 3, 3), padding="valid", kernel_initializer="he_uniform"),
            layers.Activation("relu"),
            layers.Conv3D(1, (2, 2, 2), padding="valid", kernel_initializer="glorot_normal"),
            layers.Activation("relu"),
        ],
        name="generator",
    )


def ecal_sum(cells: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.reduce_sum(cells, axis=(1, 2, 3, 4)), (-1, 1))


def _safe(den: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.equal(den, 0.0), tf.ones_like(den), den)


def ecal_angle(cells: tf.Tensor, pitch: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tf.Tensor:
    """3DGAN's measured angle from per-layer barycentres; see model_torch.ecal_angle."""
    img = cells[..., 0]
    nx, ny, nz = img.shape[1], img.shape[2], img.shape[3]
    px, py, pz = pitch
    xs = (tf.range(nx, dtype=img.dtype) + 0.5) * px
    ys = (tf.range(ny, dtype=img.dtype) + 0.5) * py
    zs = (tf.range(nz, dtype=img.dtype) + 0.5) * pz
    total = tf.reduce_sum(img, axis=(1, 2, 3))
    empty = tf.equal(total, 0.0)
    x_ref = tf.reduce_sum(tf.reduce_sum(img, axis=(2, 3)) * xs, axis=1) / _safe(total)
    y_ref = tf.reduce_sum(tf.reduce_sum(img, axis=(1, 3)) * ys, axis=1) / _safe(total)
    z_ref = tf.reduce_sum(tf.reduce_sum(img, axis=(1, 2)) * zs, axis=1) / _safe(total)
    per_layer = tf.reduce_sum(img, axis=(1, 2))
    layer_on = tf.cast(tf.not_equal(per_layer, 0.0), img.dtype)
    x_mid = tf.reduce_sum(tf.reduce_sum(img, axis=2) * xs[None, :, None], axis=1) / _safe(per_layer)
    y_mid = tf.reduce_sum(tf.reduce_sum(img, axis=1) * ys[None, :, None], axis=1) / _safe(per_layer)
    z = zs[None, :] * tf.ones_like(per_layer)
    zproj = tf.sqrt(tf.maximum((x_mid - x_ref[:, None]) ** 2 + (z - z_ref[:, None]) ** 2, 1e-7))
    m = (y_mid - y_ref[:, None]) / zproj
    m = tf.where(z < z_ref[:, None], -m, m)
    ang = (math.pi / 2.0) - tf.atan(m)
    weight = z * layer_on
    ang = tf.reduce_sum(ang * weight, axis=1) / _safe(tf.reduce_sum(weight, axis=1))
    ang = tf.where(empty, 100.0 * tf.ones_like(ang), ang)
    return tf.reshape(ang, (-1, 1))


class Discriminator(keras.Model):
    """Returns (real/fake probability, energy/100, angle, ECAL sum) like CERN's model."""

    def __init__(self, grid: Grid, power: float = POWER) -> None:
        super().__init__(name="discriminator")
        self.grid = grid
        self.power = power
        kernel = (5, 6, 6)
        self.features = keras.Sequential(
            [
                keras.Input((*grid.image, 1)),
                layers.Conv3D(16, kernel, padding="same"),
                layers.LeakyReLU(),
                layers.Dropout(0.2),
                layers.ZeroPadding3D((0, 0, 1)),
                layers.Conv3D(8, kernel, padding="valid"),
                layers.LeakyReLU(),
                layers.BatchNormalization(epsilon=BN_EPS),
                layers.Dropout(0.2),
                layers.ZeroPadding3D((0, 0, 1)),
                layers.Conv3D(8, kernel, padding="valid"),
                layers.LeakyReLU(),
                layers.BatchNormalization(epsilon=BN_EPS),
                layers.Dropout(0.2),
                layers.Conv3D(8, kernel, padding="valid"),
                layers.LeakyReLU(),
                layers.BatchNormalization(epsilon=BN_EPS),
                layers.Dropout(0.2),
                layers.AveragePooling3D((2, 2, 2)),
                layers.Flatten(),
            ],
            name="features",
        )
        self.real_fake = layers.Dense(1, activation="sigmoid", name="generation")
        self.energy = layers.Dense(1, activation="linear", name="auxiliary")

    def call(self, image: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, ...]:
        h = self.features(image, training=training)
        cells = tf.pow(tf.maximum(image, 0.0), 1.0 / self.power)
        return self.real_fake(h), self.energy(h), ecal_angle(cells, self.grid.pitch), ecal_sum(cells)


def discriminator(grid: Grid) -> Discriminator:
    model = Discriminator(grid)
    model(tf.zeros((1, *grid.image, 1)))  # build
    return model


def per_example_losses(outputs: tuple[tf.Tensor, ...], labels: tuple[tf.Tensor, ...]) -> list[tf.Tensor]:
    """The four terms per shower, unweighted: BCE, MAPE (energy), MAE (angle), MAPE (ECAL)."""
    prob, energy_pred, angle_pred, ecal_pred = outputs
    real, energy, angle, ecal = labels
    eps = 1e-7
    p = tf.clip_by_value(prob, eps, 1.0 - eps)
    bce = -(real * tf.math.log(p) + (1.0 - real) * tf.math.log(1.0 - p))
    mape_e = 100.0 * tf.abs(energy - energy_pred) / tf.maximum(tf.abs(energy), eps)
    mae_a = tf.abs(angle - angle_pred)
    mape_s = 100.0 * tf.abs(ecal - ecal_pred) / tf.maximum(tf.abs(ecal), eps)
    return [tf.reshape(t, (-1,)) for t in (bce, mape_e, mae_a, mape_s)]
