"""train_torch.py as a PyTorchJob's replicas run it: two ranks with Kubeflow's environment on
loopback, gloo DDP, checkpoints every epoch, resumption after the gang is killed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumiflow.runtime import checkpoint as lf_checkpoint
from tests.examples.conftest import SMALL_RUN, Gang, TorchRun, base_env, torch_env
from tests.helpers import free_port, wait_until

pytest.importorskip("torch")


@pytest.mark.timeout(180)
def test_two_ranks_train_and_hold_identical_parameters(ddp_run: TorchRun) -> None:
    rank0, rank1 = ddp_run.ranks
    assert rank0.returncode == 0, rank0.output
    assert rank1.returncode == 0, rank1.output
    assert rank0.checksum == rank1.checksum
    assert "rank 1 of 2" in rank1.output
    # Rank 0 reports every step in Katib's form, with the losses averaged over the ranks.
    steps = [m for m in rank0.metric_lines() if "step" in m]
    assert [(int(m["epoch"]), int(m["step"])) for m in steps] == [(1, 1), (2, 2), (3, 3)]
    for m in steps:
        assert {"d_loss", "g_loss", "d_gen", "d_energy", "d_angle", "d_ecal", "step_seconds"} <= set(m)
        assert all(value not in ("", "-", "+") for value in m.values())
    assert [int(m["epoch"]) for m in rank0.metric_lines() if "epoch_g_loss" in m] == [1, 2, 3]
    assert not rank1.metric_lines()
    # One checkpoint per epoch, the newest two kept, nothing half-written left behind.
    names = sorted(p.name for p in ddp_run.checkpoints.iterdir())
    assert names == ["checkpoint-00000002.pt", "checkpoint-00000003.pt"]
    # Named as lumiflow's own helper names them, so that it finds them too.
    latest = lf_checkpoint.latest(ddp_run.checkpoints)
    assert latest is not None and latest.step == 3


@pytest.mark.timeout(180)
def test_killed_ranks_resume_from_the_last_checkpoint(tmp_path: Path, gang: Gang, ddp_run: TorchRun) -> None:
    ckpt = tmp_path / "ckpt"
    args = [*SMALL_RUN, "--epochs", "3"]
    env = {"LUMIFLOW_CHECKPOINT_DIR": str(ckpt)}  # as lumiflow gives it, not as an argument
    port = free_port()
    gang.start("train_torch.py", args, [torch_env(r, 2, port, **env) for r in (0, 1)])
    wait_until(
        lambda: any(ckpt.glob("*.pt")) or not gang.alive(), timeout=120, message="the first checkpoint"
    )
    assert gang.alive(), f"a rank ended before the first checkpoint:\n{gang.dump()}"
    gang.kill()  # SIGKILL, both ranks: what a node failure does to a gang
    saved = sorted(int(p.stem.rsplit("-", 1)[1]) for p in ckpt.glob("*.pt"))
    assert saved and saved[-1] < 3, f"killed too late to test resumption: {saved}"
    done = saved[-1]

    again = Gang(tmp_path / "again")
    try:
        port = free_port()
        ranks = again.start("train_torch.py", args, [torch_env(r, 2, port, **env) for r in (0, 1)]).wait(150)
    finally:
        again.kill()
    for r in ranks:
        assert r.returncode == 0, r.output
        assert f"{done} epochs and {done} steps done" in r.output
    steps = [(int(m["epoch"]), int(m["step"])) for m in ranks[0].metric_lines() if "step" in m]
    assert steps == [(e, e) for e in range(done + 1, 4)]
    assert ranks[0].checksum == ranks[1].checksum
    # Randomness is a function of (seed, epoch, rank), so the resumed run ends exactly where
    # the uninterrupted one did.
    assert ranks[0].checksum == ddp_run.ranks[0].checksum


@pytest.mark.timeout(90)
def test_runs_as_one_process_without_the_distributed_environment(gang: Gang) -> None:
    (single,) = gang.start("train_torch.py", [*SMALL_RUN, "--epochs", "1"], [base_env()]).wait(80)
    assert single.returncode == 0, single.output
    assert "rank 0 of 1" in single.output
    assert "not checkpointing" in single.output
    assert [m["step"] for m in single.metric_lines() if "step" in m] == ["1"]
