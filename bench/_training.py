"""What the two training benchmarks share (``train_overhead.py``, ``ray_overhead.py``): the 3DGAN
run they launch, its timing file, the figures of one trial and the tables.

The timing comes from the training script itself: ``examples/3dgan/train_torch.py
--timing-file PATH`` makes rank 0 append ``{"event": ..., "t": time.time()}`` lines: ``start``
(main began: interpreter up, torch imported), ``ready`` (data, model and DDP set up), then one
``step`` line per step once its losses are all-reduced. Every launcher runs on this machine, so
the times of the benchmark and of rank 0 are one clock.

Per trial, from ``t0`` (just before the launcher's submit call):

* ``start_s``, ``ready_s``: t0 to the ``start`` / ``ready`` line;
* ``first_step_s``: t0 to the end of step 1 (rank 0);
* ``steps_per_s``: ``--steps`` steps after ``--warmup-steps`` (the step after the warm-up to
  the last step, divided by the steps in between): the steady training rate;
* ``end_s``: t0 to the launcher saying the run ended (job Succeeded, process exited).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from _harness import ROOT, table

EXAMPLE = ROOT / "examples" / "3dgan"
SCRIPT = EXAMPLE / "train_torch.py"
#: Both sides run the venv's interpreter by its path (a symlink to the real binary, no shim).
PYTHON = sys.executable

FIGURES = ("start_s", "ready_s", "first_step_s", "steps_per_s", "end_s")


def add_run_arguments(ap: Any, *, repeats: int) -> None:
    """The options of the training run, the same for both benchmarks."""
    ap.add_argument("--repeats", type=int, default=repeats, help=f"measured runs per side [{repeats}]")
    ap.add_argument("--warmup-runs", type=int, default=1, help="runs per side first, excluded [1]")
    ap.add_argument("--grid", default="small", help="3DGAN grid [small: 21x21x13]")
    ap.add_argument("--batch-size", type=int, default=4, help="per rank [4]")
    ap.add_argument("--warmup-steps", type=int, default=3, help="steps before the timed ones [3]")
    ap.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up steps [20]")
    ap.add_argument("--events", type=int, default=0, help="synthetic showers [0: just enough for the steps]")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run [300]")


def events_for(args: Any, ranks: int = 2) -> int:
    """Showers for ``warmup + steps`` batches per rank, with room for dropped empty ones."""
    if args.events:
        return int(args.events)
    return math.ceil(ranks * args.batch_size * (args.warmup_steps + args.steps) * 1.1) + 8


def script_args(args: Any, *, timing_file: Path, checkpoint_dir: Path | None = None) -> list[str]:
    """``train_torch.py``'s arguments: one epoch of exactly warm-up + timed steps."""
    out = [
        "--grid",
        args.grid,
        "--epochs",
        "1",
        "--steps-per-epoch",
        str(args.warmup_steps + args.steps),
        "--batch-size",
        str(args.batch_size),
        "--events",
        str(events_for(args)),
        "--timing-file",
        str(timing_file),
    ]
    if checkpoint_dir is not None:
        out += ["--checkpoint-dir", str(checkpoint_dir)]
    return out


def pytorchjob(
    name: str,
    argv: Sequence[str],
    *,
    cluster: str | None = None,
    cpu: str = "1",
    memory: str = "1Gi",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ``kubeflow.org/v1`` PyTorchJob, Master + 1 Worker, as a physicist would write it
    (``spec.cluster`` is lumiflow's own field, accepted on Kubeflow's kinds)."""
    container: dict[str, Any] = {
        "name": "pytorch",
        "image": "python:3.11",  # kept for Kubernetes, unused by the local and ray clusters
        "command": list(argv[:1]),
        "args": list(argv[1:]),
        "resources": {"requests": {"cpu": cpu, "memory": memory}},
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]

    def replica() -> dict[str, Any]:
        return {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {"containers": [container]}}}

    spec: dict[str, Any] = {
        "pytorchReplicaSpecs": {"Master": replica(), "Worker": replica()},
        "runPolicy": {"backoffLimit": 0},
    }
    if cluster:
        spec["cluster"] = cluster
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"bench": "train"}},
        "spec": spec,
    }


# --- the timing file -----------------------------------------------------------------------


@dataclass
class Timing:
    start: float | None = None
    ready: float | None = None
    steps: dict[int, float] = field(default_factory=dict)


def read_timing(path: Path) -> Timing:
    timing = Timing()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return timing
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        event = record.get("event")
        if event == "start":
            timing.start = float(record["t"])
        elif event == "ready":
            timing.ready = float(record["t"])
        elif event == "step":
            timing.steps[int(record["step"])] = float(record["t"])
    return timing


def steps_done(path: Path) -> int:
    return len(read_timing(path).steps)


def wait_for_steps(
    path: Path, total: int, *, check: Callable[[], str | None], timeout: float, interval: float = 0.5
) -> None:
    """Until rank 0 has logged ``total`` steps. ``check`` returns why the run cannot get there
    (it ended, failed), or None; it is called every ``interval`` seconds, as is the file read."""
    deadline = time.monotonic() + timeout
    while steps_done(path) < total:
        problem = check()
        if problem is not None and steps_done(path) < total:
            raise RuntimeError(problem)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: {steps_done(path)} of {total} steps after {timeout:g} s")
        time.sleep(interval)


def trial_figures(path: Path, t0: float, end: float, args: Any) -> dict[str, float]:
    timing = read_timing(path)
    first, last = args.warmup_steps, args.warmup_steps + args.steps
    missing = [s for s in (1, first, last) if s not in timing.steps]
    if timing.start is None or timing.ready is None or missing:
        raise RuntimeError(f"{path}: incomplete timing (start, ready, steps {missing} missing)")
    return {
        "start_s": timing.start - t0,
        "ready_s": timing.ready - t0,
        "first_step_s": timing.steps[1] - t0,
        "steps_per_s": args.steps / (timing.steps[last] - timing.steps[first]),
        "end_s": end - t0,
    }


# --- summaries and tables ------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def side_summary(trials: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Medians of every figure, and the runs themselves (in order)."""
    out: dict[str, Any] = {k: median([t[k] for t in trials]) for k in FIGURES}
    out["runs"] = {k: [t[k] for t in trials] for k in FIGURES}
    return out


def pair_ratios(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per repeat (the interleaved pairs): a/b of steps/s and a-b of first-step time."""
    speed = [x["steps_per_s"] / y["steps_per_s"] for x, y in zip(a, b, strict=True)]
    first = [x["first_step_s"] - y["first_step_s"] for x, y in zip(a, b, strict=True)]
    return {
        "steps_per_s_ratio_p50": median(speed),
        "steps_per_s_ratio_min": min(speed) if speed else float("nan"),
        "first_step_diff_s_p50": median(first),
        "first_step_diff_s_max": max(first) if first else float("nan"),
    }


def figures_table(title: str, sides: Mapping[str, Sequence[Mapping[str, float]]]) -> Table:
    """One row per side: medians (min-max) of every figure."""
    cols = [
        "launcher",
        "submit → main (s)",
        "→ ready (s)",
        "→ first step (s)",
        "steps/s",
        "→ ended (s)",
    ]
    rows = []
    for name, trials in sides.items():
        cells: list[Any] = [name]
        for key in FIGURES:
            values = [t[key] for t in trials]
            digits = 3 if key == "steps_per_s" else 2
            cells.append(f"{median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})")
        rows.append(cells)
    return table(title, cols, rows)


def runs_table(title: str, sides: Mapping[str, Sequence[Mapping[str, float]]]) -> Table:
    """Every measured run, in the order they ran within each repeat."""
    cols = ["repeat", "launcher", "first step (s)", "steps/s", "main (s)", "ready (s)", "ended (s)"]
    rows = []
    names = list(sides)
    for i in range(max(len(v) for v in sides.values())):
        for name in names:
            if i < len(sides[name]):
                t = sides[name][i]
                rows.append(
                    [
                        str(i + 1),
                        name,
                        f"{t['first_step_s']:.2f}",
                        f"{t['steps_per_s']:.3f}",
                        f"{t['start_s']:.2f}",
                        f"{t['ready_s']:.2f}",
                        f"{t['end_s']:.2f}",
                    ]
                )
    return table(title, cols, rows)
