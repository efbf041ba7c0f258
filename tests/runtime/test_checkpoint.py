"""The in-job checkpoint helper: the job's directory, atomic saves, the latest checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumiflow.runtime import checkpoint

pytestmark = pytest.mark.timeout(10)


def test_the_directory_comes_from_lumiflow_and_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = tmp_path / "jobs" / "p" / "j-uid" / "checkpoints"
    monkeypatch.setenv("LUMIFLOW_CHECKPOINT_DIR", str(where))
    assert checkpoint.directory() == where
    assert where.is_dir()
    monkeypatch.delenv("LUMIFLOW_CHECKPOINT_DIR")
    assert checkpoint.directory(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_latest_is_the_highest_step_and_ignores_unfinished_writes(tmp_path: Path) -> None:
    assert checkpoint.latest(tmp_path) is None
    checkpoint.save_bytes(2, b"two", where=tmp_path)
    checkpoint.save_bytes(10, b"ten", suffix=".pt", where=tmp_path)
    (tmp_path / ".checkpoint-00000011.pt.abc.tmp").write_bytes(b"torn")  # a writer that died
    latest = checkpoint.latest(tmp_path)
    assert latest is not None
    assert (latest.step, latest.path.name, latest.path.read_bytes()) == (10, "checkpoint-00000010.pt", b"ten")


def test_a_failed_save_leaves_the_previous_checkpoint_alone(tmp_path: Path) -> None:
    checkpoint.save_bytes(1, b"good", where=tmp_path)

    def crash_mid_write() -> None:
        with checkpoint.save(1, where=tmp_path) as fh:
            fh.write(b"half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert checkpoint.path_for(1, where=tmp_path).read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-00000001"]


def test_keep_prunes_the_oldest(tmp_path: Path) -> None:
    for step in range(5):
        with checkpoint.save(step, where=tmp_path, keep=2) as fh:
            fh.write(str(step).encode())
    assert [c.step for c in checkpoint.all_checkpoints(tmp_path)] == [3, 4]
