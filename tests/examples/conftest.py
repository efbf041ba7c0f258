"""Fixtures of the example tests: the 3DGAN scripts run as real processes, with the environment
Kubeflow's operators give a replica, without the lumiflow server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port

EXAMPLE = ROOT / "examples" / "3dgan"
# The example's modules import each other by their bare names, as the scripts do when they run.
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

#: The small grid, a few steps: what a 2-core machine trains in seconds.
SMALL_RUN = ["--grid", "small", "--events", "64", "--batch-size", "4", "--steps-per-epoch", "1"]
CHECKSUM = re.compile(r"parameter checksum sha256 ([0-9a-f]{64})")
#: Katib's default StdOut metric pattern.
KATIB = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")

_FOREIGN = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "TF_CONFIG",
    "LUMIFLOW_CHECKPOINT_DIR",
)


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any distributed settings, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN and not k.startswith("PET_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(extra)
    return env


def torch_env(rank: int, world: int, port: int, **extra: str) -> dict[str, str]:
    """What a PyTorchJob replica sees (KUBEFLOW_COMPAT.md), on loopback."""
    return base_env(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), **extra
    )


@dataclass
class Finished:
    returncode: int
    output: str

    @property
    def checksum(self) -> str:
        found = CHECKSUM.findall(self.output)
        assert len(found) == 1, f"expected one checksum line:\n{self.output}"
        return found[0]

    def metric_lines(self) -> list[dict[str, str]]:
        """The lines Katib would read as metrics, parsed with its own pattern."""
        return [
            {m.group(1): m.group(2) for m in KATIB.finditer(line)}
            for line in self.output.splitlines()
            if line.startswith("epoch=")
        ]


class Gang:
    """Processes started together (the ranks of one run), logging to files; killed at the end
    of the test whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.paths: list[Path] = []

    def start(self, script: str, args: Sequence[str], envs: Sequence[Mapping[str, str]]) -> Gang:
        self.logs.mkdir(parents=True, exist_ok=True)
        for i, env in enumerate(envs):
            path = self.logs / f"{script}-{len(self.paths)}-{i}.log"
            with open(path, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, str(EXAMPLE / script), *args],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=dict(env),
                        cwd=str(self.logs),  # the scripts do not depend on the working directory
                    )
                )
            self.paths.append(path)
        return self

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(timeout=30)

    def wait(self, timeout: float) -> list[Finished]:
        try:
            for p in self.procs:
                p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"timed out after {timeout:g}s:\n{self.dump()}") from None
        return [
            Finished(p.returncode, path.read_text()) for p, path in zip(self.procs, self.paths, strict=True)
        ]

    def dump(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()}" for path in self.paths if path.exists())


@pytest.fixture
def gang(tmp_path: Path) -> Iterator[Gang]:
    g = Gang(tmp_path / "logs")
    yield g
    g.kill()


@dataclass
class TorchRun:
    ranks: list[Finished]
    checkpoints: Path
    args: list[str]


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> TorchRun:
    """One uninterrupted 2-rank DDP run of the small grid, 3 epochs of one step, shared by the
    tests that compare with it."""
    base = tmp_path_factory.mktemp("ddp")
    args = [*SMALL_RUN, "--epochs", "3", "--checkpoint-dir", str(base / "ckpt")]
    g = Gang(base / "logs")
    port = free_port()
    try:
        g.start("train_torch.py", args, [torch_env(r, 2, port) for r in (0, 1)])
        ranks = g.wait(timeout=150)
    finally:
        g.kill()
    return TorchRun(ranks=ranks, checkpoints=base / "ckpt", args=args)
