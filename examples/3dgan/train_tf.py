"""Trains 3DGAN with TensorFlow's MultiWorkerMirroredStrategy, as a TFJob replica.

TF_CONFIG (set by the TFJob controller when the job has more than one replica) describes the
cluster; without it the script trains as a single worker. Keras 3's ``model.fit`` does not
run under a two-worker MultiWorkerMirroredStrategy here, so the step is a custom loop with
``strategy.run``, as in CERN's own TPU/MWMS version: per-replica losses scaled by the global
batch, Keras' RMSprop summing the gradients over the workers.

Metrics, checkpoints and the final checksum as in train_torch.py: the chief prints the
losses (summed over the workers) as Katib's `name=value` and writes a checkpoint after every
epoch to $LUMIFLOW_CHECKPOINT_DIR (or --checkpoint-dir); every worker resumes from the newest
checkpoint the chief sees.

    python3 train_tf.py --grid small --epochs 2 --steps-per-epoch 4
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

import data
from common import (
    LATENT_SIZE,
    Grid,
    TFEnv,
    add_checkpoint_argument,
    checkpoint_dir,
    checkpoint_path,
    emit,
    fail,
    latest_checkpoint,
    log,
    prune_checkpoints,
    set_threads_from_env,
    write_atomically,
)

EXT = "npz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="per worker")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=0, help="at most this many (0: the whole shard)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    add_checkpoint_argument(parser)
    return parser.parse_args(argv)


def _threads(n: int) -> None:
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads_from_env(_threads)  # before TensorFlow runs anything
    # Grappler's remapper cannot fuse this graph's padded convolutions and logs an error for
    # each attempt; it changes nothing else here.
    tf.config.optimizer.set_experimental_options({"remapping": False})
    env = TFEnv.from_environ()
    # The strategy comes first: MultiWorkerMirroredStrategy must exist before any other op.
    if env.num_workers > 1:
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    import keras

    import model_tf as mtf

    grid, full = data.load(args)
    shard = full.shard(env.worker_rank, env.num_workers)
    steps_per_epoch = len(shard) // args.batch_size
    if args.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.steps_per_epoch)
    if steps_per_epoch < 1:
        fail(f"{len(shard)} showers per worker is less than one batch of {args.batch_size}")
    global_batch = args.batch_size * env.num_workers

    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        gen = mtf.generator(grid)
        disc = mtf.discriminator(grid)
        # Keras' RMSprop defaults (rho 0.9, epsilon 1e-7), as CERN's.
        opt_g = keras.optimizers.RMSprop(args.lr)
        opt_d = keras.optimizers.RMSprop(args.lr)
        opt_g.build(gen.trainable_variables)
        opt_d.build(disc.trainable_variables)
    weights = np.array(mtf.LOSS_WEIGHTS, dtype=np.float32)

    def weighted(
        outputs: tuple[tf.Tensor, ...], labels: tuple[tf.Tensor, ...]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        terms = mtf.per_example_losses(outputs, labels)
        per_term = tf.stack([tf.nn.compute_average_loss(t, global_batch_size=global_batch) for t in terms])
        return tf.reduce_sum(per_term * weights), per_term

    def step_fn(
        image: tf.Tensor,
        energy: tf.Tensor,
        angle: tf.Tensor,
        ecal: tf.Tensor,
        flags: tf.Tensor,
        noise: tf.Tensor,
    ) -> tf.Tensor:
        n = tf.shape(image)[0]
        ones = tf.ones((n, 1))

        def latent(k: int) -> tf.Tensor:
            return tf.concat([energy, angle, noise[k]], axis=1)

        fake = gen(latent(0), training=False)
        with tf.GradientTape() as tape:
            d_real, real_terms = weighted(disc(image, training=True), (flags[0], energy, angle, ecal))
        opt_d.apply_gradients(
            zip(tape.gradient(d_real, disc.trainable_variables), disc.trainable_variables, strict=True)
        )
        with tf.GradientTape() as tape:
            d_fake, fake_terms = weighted(disc(fake, training=True), (flags[1], energy, angle, ecal))
        opt_d.apply_gradients(
            zip(tape.gradient(d_fake, disc.trainable_variables), disc.trainable_variables, strict=True)
        )
        g_total = tf.zeros(())
        for k in (1, 2):
            with tf.GradientTape() as tape:
                g_loss, _ = weighted(
                    disc(gen(latent(k), training=True), training=True), (ones, energy, angle, ecal)
                )
            grads = tape.gradient(g_loss, gen.trainable_variables)
            opt_g.apply_gradients(zip(grads, gen.trainable_variables, strict=True))
            g_total += g_loss
        # Per replica: its share of the global means; summed over replicas by the caller.
        return tf.concat(
            [tf.stack([(d_real + d_fake) / 2, d_real, g_total / 2]), (real_terms + fake_terms) / 2], axis=0
        )

    @tf.function
    def train_step(*batch: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(step_fn, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function
    def from_chief(value: tf.Tensor) -> tf.Tensor:
        """The chief's value on every worker (a sum in which only the chief counts)."""
        return strategy.reduce(
            tf.distribute.ReduceOp.SUM, strategy.run(lambda v: v, args=(value,)), axis=None
        )

    ckpt_dir = checkpoint_dir(args.checkpoint_dir)
    variables = [*gen.variables, *disc.variables, *opt_g.variables, *opt_d.variables]
    epoch_done, step = 0, 0
    found = latest_checkpoint(ckpt_dir, EXT)
    mine = (found[0] if found else -1) if env.is_chief else 0
    chosen = int(from_chief(tf.constant(mine, tf.int64))) if env.num_workers > 1 else mine
    if chosen >= 0 and ckpt_dir is not None:
        path = checkpoint_path(ckpt_dir, chosen, EXT)
        with np.load(path) as saved:
            if Grid.of(saved["seed_grid"]) != grid:
                fail(f"{path} was trained on seed grid {tuple(saved['seed_grid'])}, not {grid.seed}")
            if int(saved["count"]) != len(variables):
                fail(f"{path} holds {int(saved['count'])} variables, the model {len(variables)}")
            for i, var in enumerate(variables):
                var.assign(saved[f"v{i}"])
            epoch_done, step = int(saved["epoch"]), int(saved["step"])
        log(f"resumed from {path.name}: {epoch_done} epochs and {step} steps done")
    elif ckpt_dir is None:
        log("no checkpoint directory (LUMIFLOW_CHECKPOINT_DIR or --checkpoint-dir): not checkpointing")

    def save(epoch: int, step: int) -> None:
        if ckpt_dir is None or not env.is_chief:
            return
        path = checkpoint_path(ckpt_dir, epoch, EXT)
        payload: dict[str, Any] = {f"v{i}": np.asarray(var.numpy()) for i, var in enumerate(variables)}
        payload.update(epoch=epoch, step=step, seed_grid=grid.seed, count=len(variables))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would add .npz to a name
                np.savez(fh, **payload)

        write_atomically(path, write)
        prune_checkpoints(ckpt_dir, EXT, args.keep)
        log(f"checkpoint {path}")

    log(
        f"3DGAN tensorflow worker {env.worker_rank} of {env.num_workers}"
        f"{' (chief)' if env.is_chief else ''}: {grid.describe()}, {len(shard)} showers here, "
        f"{steps_per_epoch} steps per epoch, epochs {epoch_done + 1} to {args.epochs}"
    )
    started = time.perf_counter()
    steps_run = 0
    n = args.batch_size
    while epoch_done < args.epochs:
        epoch = epoch_done + 1
        epoch_started = time.perf_counter()
        rng = np.random.default_rng([args.seed, epoch, env.worker_rank])
        order = rng.permutation(len(shard))
        totals = np.zeros(3)
        for i in range(steps_per_epoch):
            step_started = time.perf_counter()
            b = shard.take(order[i * n : (i + 1) * n])
            flags = np.stack([np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32)])
            flags = np.where(rng.uniform(size=flags.shape) < 0.05, 1.0 - flags, flags).astype(np.float32)
            noise = rng.standard_normal((3, n, LATENT_SIZE - 2)).astype(np.float32)
            losses = train_step(
                b.image[..., None],
                b.energy[:, None],
                b.theta[:, None],
                b.ecal[:, None],
                flags,
                noise,
            ).numpy()
            step += 1
            steps_run += 1
            totals += losses[:3]
            if env.is_chief:
                emit(
                    epoch=epoch,
                    step=step,
                    d_loss=float(losses[0]),
                    d_real_loss=float(losses[1]),
                    g_loss=float(losses[2]),
                    d_gen=float(losses[3]),
                    d_energy=float(losses[4]),
                    d_angle=float(losses[5]),
                    d_ecal=float(losses[6]),
                    step_seconds=time.perf_counter() - step_started,
                )
        epoch_done = epoch
        save(epoch, step)
        if env.is_chief:
            mean = totals / steps_per_epoch
            emit(
                epoch=epoch,
                epoch_d_loss=float(mean[0]),
                epoch_g_loss=float(mean[2]),
                epoch_seconds=time.perf_counter() - epoch_started,
            )
    elapsed = time.perf_counter() - started
    if steps_run:
        log(
            f"worker {env.worker_rank}: {steps_run} steps in {elapsed:.2f} s, {elapsed / steps_run:.3f} s per step"
        )
    digest = hashlib.sha256()
    for var in [*gen.trainable_variables, *disc.trainable_variables]:
        digest.update(np.asarray(var.numpy()).tobytes())
    log(f"worker {env.worker_rank} parameter checksum sha256 {digest.hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
