"""Distributed training overhead: a 2-rank DDP 3DGAN run launched by lumiflow versus torchrun.

The same run (``examples/3dgan/train_torch.py``, small grid, one epoch of ``--warmup-steps`` +
``--steps`` steps, batch 4 per rank, the same synthetic showers, gloo, one thread per rank),
launched

* by lumiflow: a ``kubeflow.org/v1`` PyTorchJob (Master + 1 Worker, each ``cpu: "1"``, so
  lumiflow sets ``OMP_NUM_THREADS=1``) POSTed to ``/api/v1/apply`` of a real ``lumi up``
  (the harness's server, local cluster), which sets MASTER_ADDR/PORT, WORLD_SIZE and RANK;
* by ``torchrun --nnodes 1 --nproc-per-node 2 --master-port FREE`` with ``OMP_NUM_THREADS=1``.

Runs are interleaved (lumiflow first in odd repeats, torchrun first in even ones), one at a
time, after ``--warmup-runs`` runs per side that are not counted. Rank 0 writes the times
(``--timing-file``, see ``_training.py``); the clock starts just before the HTTP POST / the
``Popen``. While a run trains, the benchmark only reads the timing file every 0.5 s (and, for
lumiflow, the job's phase every 5 s), on both sides alike.

Goals (issue 4): steady steps/s lumiflow / torchrun >= 0.98; submit → first step at most
torchrun's + 0.5 s (medians over the repeats).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    LumiServer,
    clean_env,
    console,
    cpu_seconds,
    emit_json,
    free_port,
    machine,
    stop_process,
)
from _training import (
    PYTHON,
    SCRIPT,
    add_run_arguments,
    events_for,
    figures_table,
    median,
    pair_ratios,
    pytorchjob,
    runs_table,
    script_args,
    side_summary,
    trial_figures,
    wait_for_steps,
)

GOAL_STEPS_RATIO = 0.98
GOAL_FIRST_STEP_EXTRA_S = 0.5
TORCHRUN = Path(PYTHON).parent / "torchrun"
FOREIGN = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LUMIFLOW_CHECKPOINT_DIR")


def lumiflow_run(
    srv: LumiServer, client: Any, name: str, work: Path, args: argparse.Namespace
) -> dict[str, float]:
    timing = work / f"{name}.timing"
    body = pytorchjob(name, [PYTHON, str(SCRIPT), *script_args(args, timing_file=timing)])
    path = f"/api/v1/profiles/admin/trainingjobs/{name}"
    total = args.warmup_steps + args.steps
    last_look = [time.monotonic()]

    def phase() -> str | None:
        return client.get(path).json().get("status", {}).get("phase")

    def check() -> str | None:
        if time.monotonic() - last_look[0] < 5.0:
            return None
        last_look[0] = time.monotonic()
        p = phase()
        return f"job {name} is {p} before its last step" if p in ("Succeeded", "Failed") else None

    cpu0 = cpu_seconds(srv.pid)
    t0 = time.time()
    r = client.post("/api/v1/apply", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"apply answered {r.status_code}: {r.text}")
    wait_for_steps(timing, total, check=check, timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    while (p := phase()) not in ("Succeeded", "Failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} still {p} after its last step")
        time.sleep(0.05)
    end = time.time()
    server_cpu = cpu_seconds(srv.pid) - cpu0
    if p != "Succeeded":
        raise RuntimeError(f"job {name} {p}: {client.get(path).text}")
    return {**trial_figures(timing, t0, end, args), "server_cpu_s": server_cpu}


def torchrun_run(name: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    timing = work / f"{name}.timing"
    ckpt = work / f"{name}.ckpt"  # lumiflow gives its ranks LUMIFLOW_CHECKPOINT_DIR: checkpoint here too
    argv = [
        str(TORCHRUN),
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(SCRIPT),
        *script_args(args, timing_file=timing, checkpoint_dir=ckpt),
    ]
    env = {k: v for k, v in clean_env().items() if k not in FOREIGN and not k.startswith("PET_")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    total = args.warmup_steps + args.steps
    with open(work / f"{name}.log", "wb") as log:
        t0 = time.time()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work
        )
    try:

        def check() -> str | None:
            code = proc.poll()
            return None if code is None else f"torchrun exited with {code}: see {work / (name + '.log')}"

        wait_for_steps(timing, total, check=check, timeout=args.timeout)
        code = proc.wait(timeout=args.timeout)
        end = time.time()
    finally:
        stop_process(proc, grace=10)  # by PID; torchrun ends its ranks on SIGTERM
    if code != 0:
        raise RuntimeError(f"torchrun exited with {code}: {(work / (name + '.log')).read_text()[-3000:]}")
    return trial_figures(timing, t0, end, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, repeats=5)
    ap.add_argument("--keep-home", action="store_true", help="keep the server's home and the runs' files")
    args = ap.parse_args()
    if not TORCHRUN.exists():
        raise SystemExit(f"{TORCHRUN} not found: torch is not installed in this environment")

    work = Path(tempfile.mkdtemp(prefix="lumibench-train-"))
    lumi: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    load_before = os.getloadavg()[0]
    total_runs = args.warmup_runs + args.repeats
    try:
        with LumiServer(keep=args.keep_home) as srv, srv.client() as client:
            console.print(
                f"lumiflow at {srv.url} (pid {srv.pid}); {total_runs} runs per side "
                f"({args.warmup_runs} warm-up), {args.warmup_steps}+{args.steps} steps, grid {args.grid}, "
                f"batch {args.batch_size}/rank, {events_for(args)} showers; load {load_before:.2f}"
            )
            for i in range(total_runs):
                counted = i >= args.warmup_runs
                tag = f"{'run' if counted else 'warm-up'} {i + 1}/{total_runs}"

                def one_lumi(i: int = i, counted: bool = counted, tag: str = tag) -> None:
                    res = lumiflow_run(srv, client, f"tov-{i:03d}", work, args)
                    console.print(
                        f"  {tag} lumiflow: first step {res['first_step_s']:.2f} s, "
                        f"{res['steps_per_s']:.3f} steps/s, server CPU {res['server_cpu_s']:.2f} s",
                        style="dim",
                    )
                    if counted:
                        lumi.append(res)

                def one_torchrun(i: int = i, counted: bool = counted, tag: str = tag) -> None:
                    res = torchrun_run(f"torchrun-{i:03d}", work, args)
                    console.print(
                        f"  {tag} torchrun: first step {res['first_step_s']:.2f} s, "
                        f"{res['steps_per_s']:.3f} steps/s",
                        style="dim",
                    )
                    if counted:
                        bare.append(res)

                order = (one_lumi, one_torchrun) if i % 2 == 0 else (one_torchrun, one_lumi)
                for fn in order:
                    fn()
    finally:
        if args.keep_home:
            console.print(f"runs' files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    sides = {"lumiflow PyTorchJob": lumi, "torchrun": bare}
    console.print(figures_table(f"2-rank DDP 3DGAN, median (min–max) of {len(lumi)} runs per side", sides))
    console.print(runs_table("every measured run", sides))
    l_sum, t_sum = side_summary(lumi), side_summary(bare)
    ratio = l_sum["steps_per_s"] / t_sum["steps_per_s"]
    first_diff = l_sum["first_step_s"] - t_sum["first_step_s"]
    speed_met = ratio >= GOAL_STEPS_RATIO
    first_met = first_diff <= GOAL_FIRST_STEP_EXTRA_S
    pairs = pair_ratios(lumi, bare)

    def verdict(met: bool) -> str:
        return "[green]met[/]" if met else "[red]NOT met[/]"

    console.print(
        f"steps/s lumiflow/torchrun {ratio:.3f} (goal >= {GOAL_STEPS_RATIO}: {verdict(speed_met)}; "
        f"per-repeat p50 {pairs['steps_per_s_ratio_p50']:.3f}); first step lumiflow - torchrun "
        f"{first_diff:+.2f} s (goal <= +{GOAL_FIRST_STEP_EXTRA_S} s: {verdict(first_met)}; per-repeat p50 "
        f"{pairs['first_step_diff_s_p50']:+.2f} s)"
    )
    emit_json(
        {
            "benchmark": "train_overhead",
            "repeats": len(lumi),
            "warmup_runs": args.warmup_runs,
            "grid": args.grid,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup_steps,
            "steps": args.steps,
            "events": events_for(args),
            "lumiflow": l_sum,
            "torchrun": t_sum,
            "ratio_steps_per_s": ratio,
            "first_step_diff_s": first_diff,
            "pairs": pairs,
            "ratio_end_s": median([t["end_s"] for t in lumi]) / median([t["end_s"] for t in bare]),
            "goal_steps_ratio": GOAL_STEPS_RATIO,
            "goal_first_step_extra_s": GOAL_FIRST_STEP_EXTRA_S,
            "goal_steps_met": speed_met,
            "goal_first_step_met": first_met,
            "goal_met": speed_met and first_met,
            "loadavg_1m_before": round(load_before, 2),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
