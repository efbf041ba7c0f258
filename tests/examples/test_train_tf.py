"""train_tf.py as a TFJob's workers run it: TF_CONFIG on loopback, MultiWorkerMirroredStrategy
with a custom strategy.run loop, the chief reporting and checkpointing, and a gang resuming
from a checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.examples.conftest import SMALL_RUN, Finished, Gang, base_env
from tests.helpers import free_port

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(
        importlib.util.find_spec("tensorflow") is None,
        reason="tensorflow is not installed (pip install tensorflow-cpu to run the TFJob example)",
    ),
]


def tf_config(ports: list[int], index: int) -> str:
    """What the TFJob controller gives worker ``index`` of a job with only Workers."""
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
            "environment": "cloud",
        }
    )


def run(logs: Path, ckpt: Path, epochs: int, workers: int) -> list[Finished]:
    ports = [free_port() for _ in range(workers)]
    env = {"LUMIFLOW_CHECKPOINT_DIR": str(ckpt)}
    if workers > 1:  # the TFJob controller sets TF_CONFIG only for more than one replica
        envs = [base_env(TF_CONFIG=tf_config(ports, i), **env) for i in range(workers)]
    else:
        envs = [base_env(**env)]
    gang = Gang(logs)
    try:
        return gang.start("train_tf.py", [*SMALL_RUN, "--epochs", str(epochs)], envs).wait(200)
    finally:
        gang.kill()


@pytest.mark.timeout(300)
def test_two_workers_resume_from_a_checkpoint_and_train_in_step(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    # A first attempt (one worker: the checkpoint does not depend on the number of workers).
    (first,) = run(tmp_path / "first", ckpt, epochs=1, workers=1)
    assert first.returncode == 0, first.output
    assert "worker 0 of 1 (chief)" in first.output
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-00000001.npz"]

    # The gang of two workers starts with more epochs: both resume from the chief's epoch 1.
    chief, worker = run(tmp_path / "second", ckpt, epochs=2, workers=2)
    for r in (chief, worker):
        assert r.returncode == 0, r.output
        assert "resumed from checkpoint-00000001.npz: 1 epochs and 1 steps done" in r.output
    assert "worker 0 of 2 (chief)" in chief.output
    assert "worker 1 of 2:" in worker.output
    # MultiWorkerMirroredStrategy kept the workers' parameters identical.
    assert chief.checksum == worker.checksum
    # Only the chief reports metrics (summed over the workers) and writes checkpoints.
    steps = [m for m in chief.metric_lines() if "step" in m]
    assert [(m["epoch"], m["step"]) for m in steps] == [("2", "2")]
    assert {"d_loss", "g_loss", "d_gen", "d_energy", "d_angle", "d_ecal"} <= set(steps[0])
    assert not worker.metric_lines()
    assert "checkpoint " in chief.output and "checkpoint " not in worker.output
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-00000001.npz", "checkpoint-00000002.npz"]
