"""Trains 3DGAN with PyTorch DistributedDataParallel (gloo), as a PyTorchJob replica.

The environment is Kubeflow's: MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK (one process
when they are absent; torchrun sets the same). OMP_NUM_THREADS (lumiflow sets it from the
replica's cpu request) sets torch's threads. Each rank trains on its own shard of the data.

Each step is CERN's: the discriminator on a real batch, then on a generated one (labels with
5% flipped), then the generator twice through the discriminator. Rank 0 prints the losses,
averaged over the ranks, as Katib's `name=value` metrics. After every epoch rank 0 writes a
checkpoint (atomically) to $LUMIFLOW_CHECKPOINT_DIR (or --checkpoint-dir); on start every rank
resumes from the newest one, epoch counter included. At the end every rank prints a checksum
of its parameters: DDP keeps them identical, and a test checks that it did.

``--timing-file PATH`` (off by default; for bench/train_overhead.py and bench/ray_overhead.py):
rank 0 appends one JSON line per event to PATH, ``{"event": ..., "t": time.time(), ...}``:
``start`` (the script's main began, imports done), ``ready`` (data, model and DDP set up, just
before the first step) and ``step`` after each step (losses all-reduced), with its number.

    python3 train_torch.py --grid small --epochs 2 --steps-per-epoch 4
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import data
import model_torch as mt
from common import (
    Grid,
    TorchEnv,
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

EXT = "pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="per rank")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=0, help="at most this many (0: the whole shard)"
    )
    parser.add_argument("--lr", type=float, default=mt.LEARNING_RATE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    parser.add_argument("--dist-timeout", type=float, default=300.0, help="seconds a collective may wait")
    add_checkpoint_argument(parser)
    parser.add_argument(
        "--timing-file",
        type=Path,
        default=None,
        help="rank 0 appends a JSON line with time.time() per step here (benchmarks; default off)",
    )
    return parser.parse_args(argv)


def mark_time(path: Path | None, event: str, **fields: int) -> None:
    """Appends ``{"event": event, "t": time.time(), **fields}`` to ``path`` (nothing without one)."""
    if path is None:
        return
    line = json.dumps({"event": event, "t": time.time(), **fields})
    with open(path, "a") as fh:
        fh.write(line + "\n")


def bit_flip(labels: np.ndarray, rng: np.random.Generator, prob: float = 0.05) -> np.ndarray:
    """CERN's label noise: flips a fraction ``prob`` of the real/fake labels."""
    flip = rng.uniform(size=labels.shape) < prob
    return np.where(flip, 1.0 - labels, labels).astype(np.float32)


def parameter_checksum(*modules: nn.Module) -> str:
    digest = hashlib.sha256()
    for module in modules:
        for name, param in sorted(module.named_parameters()):
            digest.update(name.encode())
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    def __init__(self, args: argparse.Namespace, env: TorchEnv) -> None:
        self.args = args
        self.env = env
        self.grid, full = data.load(args)
        self.data = full.shard(env.rank, env.world_size)
        self.steps_per_epoch = len(self.data) // args.batch_size
        if args.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, args.steps_per_epoch)
        if self.steps_per_epoch < 1:
            fail(f"{len(self.data)} showers per rank is less than one batch of {args.batch_size}")
        torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
        self.generator = mt.Generator(self.grid)
        self.discriminator = mt.Discriminator(self.grid)
        # Keras' RMSprop: rho 0.9, epsilon 1e-7.
        self.opt_g = torch.optim.RMSprop(self.generator.parameters(), lr=args.lr, alpha=0.9, eps=1e-7)
        self.opt_d = torch.optim.RMSprop(self.discriminator.parameters(), lr=args.lr, alpha=0.9, eps=1e-7)
        self.epoch = 0  # epochs completed
        self.step = 0  # steps completed, over all epochs
        self.ckpt_dir = checkpoint_dir(args.checkpoint_dir)
        self.timing = getattr(args, "timing_file", None) if env.rank == 0 else None

    # --- checkpoints -------------------------------------------------------------------

    def resume(self) -> None:
        """Every rank loads the newest checkpoint that rank 0 sees (one decision, broadcast)."""
        found = latest_checkpoint(self.ckpt_dir, EXT)
        epoch = torch.tensor([found[0] if found else -1], dtype=torch.int64)
        if self.env.distributed:
            dist.broadcast(epoch, src=0)
        if int(epoch) < 0:
            return
        assert self.ckpt_dir is not None
        path = checkpoint_path(self.ckpt_dir, int(epoch), EXT)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if Grid.of(state["seed_grid"]) != self.grid:
            fail(f"{path} was trained on seed grid {tuple(state['seed_grid'])}, not {self.grid.seed}")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        log(f"resumed from {path.name}: {self.epoch} epochs and {self.step} steps done")

    def save(self) -> None:
        if self.ckpt_dir is None or self.env.rank != 0:
            return
        state = {
            "epoch": self.epoch,
            "step": self.step,
            "seed_grid": list(self.grid.seed),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }
        path = checkpoint_path(self.ckpt_dir, self.epoch, EXT)
        write_atomically(path, lambda tmp: torch.save(state, tmp))
        prune_checkpoints(self.ckpt_dir, EXT, self.args.keep)
        log(f"checkpoint {path}")

    # --- training ------------------------------------------------------------------------

    def run(self) -> None:
        args, env = self.args, self.env
        if self.ckpt_dir is None:
            log("no checkpoint directory (LUMIFLOW_CHECKPOINT_DIR or --checkpoint-dir): not checkpointing")
        self.resume()
        if env.distributed:
            gen: nn.Module = DDP(self.generator)
            disc: nn.Module = DDP(self.discriminator)
        else:
            gen, disc = self.generator, self.discriminator
        log(
            f"3DGAN torch rank {env.rank} of {env.world_size}: {self.grid.describe()}, "
            f"{len(self.data)} showers here, {self.steps_per_epoch} steps per epoch, "
            f"{torch.get_num_threads()} threads, epochs {self.epoch + 1} to {args.epochs}"
        )
        mark_time(self.timing, "ready")
        started = time.perf_counter()
        steps_run = 0
        while self.epoch < args.epochs:
            epoch = self.epoch + 1
            epoch_started = time.perf_counter()
            # Randomness from (seed, epoch, rank) alone: a resumed run repeats the epochs it
            # redoes exactly (noise, label flips, dropout, order of the showers).
            seed = [args.seed, epoch, env.rank]
            rng = np.random.default_rng(seed)
            noise_seed, dropout_seed = (int(v) for v in np.random.SeedSequence(seed).generate_state(2))
            noise = torch.Generator().manual_seed(noise_seed)
            torch.manual_seed(dropout_seed)
            order = rng.permutation(len(self.data))
            totals = torch.zeros(3)
            for i in range(self.steps_per_epoch):
                step_started = time.perf_counter()
                batch = self.data.take(order[i * args.batch_size : (i + 1) * args.batch_size])
                losses = self.train_step(gen, disc, batch, rng, noise)
                if env.distributed:
                    dist.all_reduce(losses)
                    losses /= env.world_size
                self.step += 1
                steps_run += 1
                mark_time(self.timing, "step", step=self.step)
                totals += losses[:3]
                if env.rank == 0:
                    d_loss, g_loss = float(losses[0]), float(losses[2])
                    emit(
                        epoch=epoch,
                        step=self.step,
                        d_loss=d_loss,
                        d_real_loss=float(losses[1]),
                        g_loss=g_loss,
                        d_gen=float(losses[3]),
                        d_energy=float(losses[4]),
                        d_angle=float(losses[5]),
                        d_ecal=float(losses[6]),
                        step_seconds=time.perf_counter() - step_started,
                    )
            self.epoch = epoch
            if env.distributed:
                # DDP gives every forward rank 0's buffers; make the BatchNorm statistics that the
                # last forward moved identical too, so every rank holds the checkpointed state.
                for module in (self.generator, self.discriminator):
                    for buffer in module.buffers():
                        dist.broadcast(buffer, src=0)
            self.save()
            if env.rank == 0:
                mean = totals / self.steps_per_epoch
                emit(
                    epoch=epoch,
                    epoch_d_loss=float(mean[0]),
                    epoch_g_loss=float(mean[2]),
                    epoch_seconds=time.perf_counter() - epoch_started,
                )
        elapsed = time.perf_counter() - started
        if steps_run:
            log(
                f"rank {env.rank}: {steps_run} steps in {elapsed:.2f} s, {elapsed / steps_run:.3f} s per step"
            )
        log(
            f"rank {env.rank} parameter checksum sha256 {parameter_checksum(self.generator, self.discriminator)}"
        )

    def train_step(
        self,
        gen: nn.Module,
        disc: nn.Module,
        batch: data.Dataset,
        rng: np.random.Generator,
        noise: torch.Generator,
    ) -> torch.Tensor:
        """One CERN step; returns [d_loss, d_real, g_loss, d_gen, d_energy, d_angle, d_ecal]."""
        n = len(batch)
        image = torch.from_numpy(batch.image).unsqueeze(1)
        energy = torch.from_numpy(batch.energy).view(-1, 1)
        angle = torch.from_numpy(batch.theta).view(-1, 1)
        ecal = torch.from_numpy(batch.ecal).view(-1, 1)
        labels = {"energy": energy, "angle": angle, "ecal": ecal}

        with torch.no_grad():  # the generator in inference mode, as in CERN's loop
            gen.eval()
            fake = gen(mt.latent(energy, angle, noise))
            gen.train()

        real_flags = torch.from_numpy(bit_flip(np.ones((n, 1), np.float32), rng))
        fake_flags = torch.from_numpy(bit_flip(np.zeros((n, 1), np.float32), rng))
        self.opt_d.zero_grad(set_to_none=True)
        d_real, real_terms = mt.losses(disc(image), real=real_flags, **labels)
        d_real.backward()
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        d_fake, fake_terms = mt.losses(disc(fake), real=fake_flags, **labels)
        d_fake.backward()
        self.opt_d.step()

        ones = torch.ones((n, 1))
        g_total = torch.zeros(())
        for _ in range(2):
            self.opt_g.zero_grad(set_to_none=True)
            # The discriminator's gradients from this pass are not used: skip their all-reduce.
            sync_off = disc.no_sync() if isinstance(disc, DDP) else contextlib.nullcontext()
            with sync_off:
                g_loss, _ = mt.losses(disc(gen(mt.latent(energy, angle, noise))), real=ones, **labels)
                g_loss.backward()
            self.opt_g.step()
            g_total = g_total + g_loss.detach()
        self.opt_d.zero_grad(set_to_none=True)
        terms = (real_terms + fake_terms) / 2
        return torch.cat(
            [torch.stack([(d_real.detach() + d_fake.detach()) / 2, d_real.detach(), g_total / 2]), terms]
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads_from_env(torch.set_num_threads)
    env = TorchEnv.from_environ()
    if env.rank == 0:
        mark_time(args.timing_file, "start")
    if env.distributed:
        dist.init_process_group(
            "gloo",
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
            timeout=timedelta(seconds=args.dist_timeout),
        )
    try:
        trainer = Trainer(args, env)
        if threads is None and env.distributed and "OMP_NUM_THREADS" not in os.environ:
            log("OMP_NUM_THREADS is not set: ranks on one machine may oversubscribe its cores")
        trainer.run()
        if env.distributed:
            # Leave together: a rank whose peer has already closed its connections can abort
            # in gloo's teardown ("terminate called without an active exception").
            dist.barrier()
    finally:
        if env.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
