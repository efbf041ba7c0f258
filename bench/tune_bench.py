"""Hyperparameter tuning: Katib Experiments on lumiflow versus Ray Tune, Optuna and MLflow.

Three parts, ``--part overhead|ingest|quality|all`` (a comma list works too), one JSON line
at the end with every figure.

**overhead** — the bookkeeping cost of a tuning run: ``--trials`` trials (100) of an objective
that sleeps ``--trial-seconds`` (0.5 s) and then reports ``(x - 2)**2``, 2 at a time, so the
ideal wall time is trials × seconds / 2. In the same invocation, in rotating order:

* lumiflow: a real ``lumi up`` (``_harness.LumiServer``, roomy quota) and a ``kubeflow.org/v1beta1``
  Experiment (random search, ``parallelTrialCount: 2``, a ``batch/v1`` Job trial template whose
  command runs ``objective.py``, which prints ``loss=...`` for Katib's StdOut collector) POSTed
  to ``/api/v1/apply``; the clock stops when a poll of the experiment (every ``--poll-ms``) sees
  the ``Succeeded`` (or ``Failed``) condition. The trials' ``startTime``/``completionTime`` give
  the most trials running at once and the gap between one trial's end and the start of the
  trial that takes its slot (the platform's times: they include each trial's process start);
* Ray Tune: ``tune.Tuner(trainable, tune_config=TuneConfig(num_samples, max_concurrent_trials=2,
  reuse_actors=True))`` on ``ray.init(num_cpus=2)`` (and ``reuse_actors=False`` with
  ``--ray-fresh-actors``); the clock runs around ``Tuner(...)`` + ``fit()``, ``ray.init`` is
  not counted. Ray runs only in a private network namespace whose only interface is loopback:
  the benchmark re-runs itself under ``unshare --net`` (root) before anything starts, and kills
  by PID whatever is left in that namespace at the end (everything in it is its own);
* Optuna in-process: ``study.optimize(objective, n_trials, n_jobs=2)`` — the floor, no
  isolation, no processes. Ray's and Optuna's gaps come from the trials' own clock readings.

Goal: lumiflow's wall time below Ray Tune's (reuse_actors=True) and within 1.3× the ideal.

**ingest** — metrics through the Push collector: ``lumiflow.report(loss=v, step=i)`` calls/s
from one client (one metric per call, ``--ingest-calls``), then ``lumiflow.report_many`` of 100
records per call (``--ingest-batches``); the client loop runs as the Worker replica of a
``lumiflow.dev/v1`` TrainingJob (the platform gives it its credentials) and writes its figures to
a file; afterwards ``GET .../trainingjobs/NAME/metrics`` must hold every point. Peer, same
invocation: ``mlflow server --workers 1`` (SQLite) from ``bench/.venv-mlflow`` (created once,
never in ``.venv``), driven by ``MlflowClient().log_metric`` (``--mlflow-calls``) and
``log_batch`` of 100 metrics in a subprocess of that venv. Goal: ≥ 10× MLflow, both modes.

**quality** — search quality on Hartmann6 (6-D, [0, 1]^6, optimum −3.32237): ``--quality-trials``
(60) trials × ``--seeds`` (5) seeds for ``--algorithms`` (tpe, bayesianoptimization, random),
through lumiflow's own Katib-name → Optuna-sampler mapping
(``lumiflow.tuning.algorithms.build_sampler`` and ``lumiflow.tuning.space.search_space``),
in-process, ask/tell; median (min–max) best value per algorithm, its ratio to the optimum and
to random search's median. No goal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from _harness import LumiServer, console, machine, rounded, table, wait_idle
from _tune_peers import (
    HARTMANN6_OPTIMUM,
    INSIDE,
    MlflowServer,
    RayTuneSide,
    ensure_mlflow_venv,
    ingest_figures,
    inside_private_network,
    kill_namespace_leftovers,
    lumiflow_ingest,
    lumiflow_overhead,
    mlflow_client_run,
    mlflow_version,
    optuna_run,
    private_network_unavailable,
    quality_study,
    quality_worker_init,
    reexec_in_private_network,
)

T = TypeVar("T")
NAMES = {"lumiflow": "lumiflow report / report_many", "mlflow": "MLflow log_metric / log_batch"}
PARTS = ("overhead", "ingest", "quality")
GOAL_IDEAL_RATIO = 1.3
GOAL_INGEST_RATIO = 10.0


def quality_part(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("lumiflow.tuning") is None:
        raise RuntimeError("lumiflow.tuning is not there yet (src/lumiflow/tuning)")
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    tasks = [(a, seed, args.quality_trials) for a in algorithms for seed in range(args.seeds)]
    console.print(
        f"[bold]quality[/]: Hartmann6, {args.quality_trials} trials × {args.seeds} seeds × "
        f"{', '.join(algorithms)}; {args.jobs} at a time"
    )
    started = time.monotonic()
    if args.jobs <= 1:  # in this process, one study after the other
        results = [quality_study(*task) for task in tasks]
    else:  # studies side by side, one thread each (spawned: no Ray or server threads forked)
        with ProcessPoolExecutor(
            max_workers=args.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=quality_worker_init,
            initargs=(1,),
        ) as pool:
            results = list(pool.map(quality_study, *zip(*tasks, strict=True)))
    wall = time.monotonic() - started
    per: dict[str, Any] = {}
    for algorithm in algorithms:
        rows = [r for r in results if r["algorithm"] == algorithm]
        bests = [r["best"] for r in rows]
        median = statistics.median(bests)
        per[algorithm] = {
            "sampler": rows[0]["sampler"],
            "best_median": median,
            "best_min": min(bests),
            "best_max": max(bests),
            "bests": bests,
            "ratio_to_optimum": median / HARTMANN6_OPTIMUM,
            "study_s_median": statistics.median(r["seconds"] for r in rows),
        }
    if "random" in per:
        for fig in per.values():
            fig["ratio_to_random"] = fig["best_median"] / per["random"]["best_median"]
    console.print(
        table(
            f"Hartmann6 best value (optimum {HARTMANN6_OPTIMUM}), {args.quality_trials} trials, {args.seeds} seeds",
            ["algorithm", "sampler", "median", "min", "max", "median/optimum", "vs random", "s/study"],
            [
                [
                    a,
                    f["sampler"],
                    f"{f['best_median']:.4f}",
                    f"{f['best_min']:.4f}",
                    f"{f['best_max']:.4f}",
                    f"{f['ratio_to_optimum']:.3f}",
                    fmt(f.get("ratio_to_random")),
                    f"{f['study_s_median']:.2f}",
                ]
                for a, f in per.items()
            ],
        )
    )
    return {
        "function": "hartmann6",
        "optimum": HARTMANN6_OPTIMUM,
        "trials": args.quality_trials,
        "seeds": args.seeds,
        "algorithms": per,
        "wall_s": wall,
    }


def emit_json(result: dict[str, Any]) -> None:
    """``_harness.emit_json`` with 4 digits instead of 2: Hartmann6's best values differ in the
    third decimal (the optimum is -3.32237), and ratios near 1 need them too."""
    sys.stdout.flush()
    print(json.dumps(rounded(result, 4), separators=(",", ":")), flush=True)


def ok(met: bool | None) -> str:
    if met is None:
        return "[yellow]not measured[/]"
    return "[green]met[/]" if met else "[red]NOT met[/]"


def own_clock(figures: dict[str, Any], key: str) -> Any:
    """A trial-timing figure by the trial's own clock: the objective's for lumiflow (its
    ``objective_`` keys), the trial function's for Ray Tune and Optuna."""
    return figures.get(f"objective_{key}", figures.get(key))


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


# --- the parts --------------------------------------------------------------------------------------


def side(label: str, errors: dict[str, str], fn: Callable[..., T], *args: Any) -> T | None:
    """``fn(*args)``, or None with the error kept under ``label`` (the other sides still run)."""
    try:
        return fn(*args)
    except Exception as exc:
        errors[label] = f"{type(exc).__name__}: {exc}"[:2000]
        console.print(f"  {label} failed: {errors[label]}", style="red")
        return None


def overhead_part(
    srv: LumiServer | None, client: httpx.Client | None, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    ideal = args.trials * args.trial_seconds / 2
    console.print(
        f"[bold]overhead[/]: {args.trials} trials × {args.trial_seconds:g} s, 2 in parallel "
        f"(ideal {ideal:.1f} s), {args.repeats} repeat(s)"
    )
    errors: dict[str, str] = {}
    runs: dict[str, list[dict[str, Any]]] = {"lumiflow": [], "ray_tune": [], "optuna": []}
    ray: RayTuneSide | None = None
    ray_skip = args.ray_skip_reason
    if ray_skip is None:
        ray = side("ray_init", errors, RayTuneSide)
        if ray is not None:
            console.print(f"  Ray up in {ray.init_s:.1f} s (not counted)", style="dim")
    if args.ray_fresh_actors:
        runs["ray_tune_fresh_actors"] = []
    labels = ["lumiflow"] if srv is not None else []
    labels += ["ray_tune"] if ray is not None else []
    labels += ["optuna"]
    labels += ["ray_tune_fresh_actors"] if ray is not None and args.ray_fresh_actors else []

    def run_side(label: str, tag: str, trials: int, seed: int) -> dict[str, Any]:
        seconds, poll_s = args.trial_seconds, args.poll_ms / 1000.0
        if label == "lumiflow":
            assert srv is not None
            assert client is not None
            return lumiflow_overhead(
                srv, client, name=f"overhead-{tag}", trials=trials, seconds=seconds, poll_s=poll_s, work=work
            )
        if label.startswith("ray_tune"):
            assert ray is not None
            fresh = label == "ray_tune_fresh_actors"
            name = f"{'fresh' if fresh else 'reuse'}-{tag}"
            return ray.run(name=name, trials=trials, seconds=seconds, reuse_actors=not fresh)
        return optuna_run(trials=trials, seconds=seconds, seed=seed)

    try:
        if args.warmup_trials > 0:
            for label in labels:
                res = side(label, errors, run_side, label, "warmup", args.warmup_trials, 99)
                if res is not None:
                    console.print(
                        f"  warm-up ({args.warmup_trials} trials, not counted): {label}: {res['wall_s']:.2f} s",
                        style="dim",
                    )
        for i in range(args.repeats):
            shift = i % len(labels)
            for label in labels[shift:] + labels[:shift]:
                res = side(label, errors, run_side, label, str(i), args.trials, i)
                if res is None:
                    continue
                runs[label].append(res)
                console.print(
                    f"  repeat {i + 1}: {label}: {res['wall_s']:.2f} s ({res['wall_s'] / ideal:.3f}× ideal), "
                    f"{res['succeeded']} ok / {res['failed']} failed, most running "
                    f"{fmt(res.get('max_running'), '.0f')}, gap p50 {fmt(ms(res.get('gap_p50_s')), '.0f')} ms",
                    style="dim",
                )
    finally:
        if ray is not None:
            ray.close()

    sides: dict[str, Any] = {}
    for label, results in runs.items():
        if not results:
            continue
        walls = [r["wall_s"] for r in results]
        wall = statistics.median(walls)

        def med(key: str, results: list[dict[str, Any]] = results) -> float | None:
            vals = [r[key] for r in results if isinstance(r.get(key), int | float)]
            return statistics.median(vals) if vals else None

        sides[label] = {
            "wall_s": wall,
            "walls_s": walls,
            "ratio_to_ideal": wall / ideal,
            "succeeded": med("succeeded"),
            "failed": med("failed"),
            "max_running": max(r.get("max_running", 0) for r in results),
            "gap_p50_s": med("gap_p50_s"),
            "gap_max_s": med("gap_max_s"),
            "first_start_s": med("first_start_s"),
            "trial_p50_s": med("trial_p50_s"),
            "best": med("best"),
        }
        if label == "lumiflow":
            sides[label]["server_wall_s"] = med("server_wall_s")
            for key in results[0]:
                if key.startswith("objective_") or key in ("launch_p50_s", "collect_p50_s", "matched_trials"):
                    sides[label][key] = med(key)
            sides[label]["outcomes"] = [r["outcome"] for r in results]
    if ray is not None:
        sides.setdefault("ray_tune", {})["init_s"] = ray.init_s

    def ratio(a: str, b: str) -> float | None:
        if "wall_s" in sides.get(a, {}) and "wall_s" in sides.get(b, {}):
            return float(sides[a]["wall_s"] / sides[b]["wall_s"])
        return None

    names = {
        "lumiflow": "lumiflow Experiment",
        "ray_tune": "Ray Tune (reuse actors)",
        "ray_tune_fresh_actors": "Ray Tune (fresh actors)",
        "optuna": "Optuna in-process (floor)",
    }
    console.print(
        table(
            f"{args.trials} trials × {args.trial_seconds:g} s, 2 in parallel: median of {args.repeats} run(s); "
            "gaps and first start by the trials' own clock",
            [
                "side",
                "wall s",
                "× ideal",
                "× lumiflow",
                "ok/failed",
                "most running",
                "gap p50 ms",
                "gap max ms",
                "first start s",
            ],
            [
                [
                    names[k],
                    f"{f['wall_s']:.2f}",
                    f"{f['ratio_to_ideal']:.3f}",
                    fmt(ratio(k, "lumiflow")),
                    f"{f['succeeded']:.0f}/{f['failed']:.0f}",
                    f"{f['max_running']:.0f}",
                    fmt(ms(own_clock(f, "gap_p50_s")), ".1f"),
                    fmt(ms(own_clock(f, "gap_max_s")), ".1f"),
                    fmt(own_clock(f, "first_start_s"), ".2f"),
                ]
                for k, f in sides.items()
                if "wall_s" in f
            ],
        )
    )
    if "lumiflow" in sides:
        f = sides["lumiflow"]
        console.print(
            f"lumiflow per trial, p50: trial startTime → the objective's first line "
            f"{fmt(ms(f['launch_p50_s']), '.0f')} ms (job, admission, process and interpreter start); its last "
            f"line → completionTime {fmt(ms(f['collect_p50_s']), '.0f')} ms (exit, collection, status); "
            f"gap by the trials' start/completionTime {fmt(ms(f['gap_p50_s']), '.0f')} ms "
            f"({fmt(f['matched_trials'], '.0f')} trials matched)"
        )
    lumi_vs_ray = ratio("lumiflow", "ray_tune")
    lumi_ideal = sides.get("lumiflow", {}).get("ratio_to_ideal")
    # Not measured (None) when Ray Tune was left out; not met when a side failed.
    goal_below_ray = None if ray_skip else (lumi_vs_ray is not None and lumi_vs_ray < 1.0)
    goal_ideal = lumi_ideal is not None and lumi_ideal <= GOAL_IDEAL_RATIO
    console.print(
        f"lumiflow / Ray Tune {fmt(lumi_vs_ray)} (goal < 1: "
        f"{ok(goal_below_ray)}); lumiflow / ideal {fmt(lumi_ideal)} "
        f"(goal ≤ {GOAL_IDEAL_RATIO}: {ok(goal_ideal)}); lumiflow / Optuna "
        f"{fmt(ratio('lumiflow', 'optuna'))}"
    )
    return {
        "trials": args.trials,
        "trial_seconds": args.trial_seconds,
        "parallel": 2,
        "repeats": args.repeats,
        "ideal_s": ideal,
        "sides": sides,
        "ratio_lumiflow_to_ray_tune": lumi_vs_ray,
        "ratio_lumiflow_to_optuna": ratio("lumiflow", "optuna"),
        "ratio_ray_tune_to_optuna": ratio("ray_tune", "optuna"),
        "ray_skipped": ray_skip,
        "errors": errors,
        "goal_ideal_ratio": GOAL_IDEAL_RATIO,
        "goal_below_ray_tune_met": goal_below_ray,
        "goal_ideal_met": goal_ideal,
    }


def ingest_part(
    srv: LumiServer | None, client: httpx.Client | None, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    console.print(
        f"[bold]ingest[/]: lumiflow {args.ingest_calls} report() calls + {args.ingest_batches} report_many(100); "
        f"MLflow {args.mlflow_calls} log_metric calls + {args.ingest_batches} log_batch(100); "
        f"{args.warmup_calls} warm-up calls each; {args.repeats} repeat(s)"
    )
    errors: dict[str, str] = {}
    runs: dict[str, list[dict[str, Any]]] = {"lumiflow": [], "mlflow": []}
    with MlflowServer() as mlflow:
        console.print(
            f"  MLflow {mlflow_version()} at {mlflow.url} (pid {mlflow.proc.pid if mlflow.proc else '?'})",
            style="dim",
        )

        def lumi(i: int) -> dict[str, Any]:
            assert srv is not None
            assert client is not None
            raw = lumiflow_ingest(
                srv,
                client,
                name=f"ingest-{i}",
                calls=args.ingest_calls,
                batches=args.ingest_batches,
                warmup=args.warmup_calls,
                work=work,
            )
            return ingest_figures(raw, calls=args.ingest_calls, batches=args.ingest_batches)

        def peer(i: int) -> dict[str, Any]:
            raw = mlflow_client_run(
                mlflow,
                calls=args.mlflow_calls,
                batches=args.ingest_batches,
                warmup=args.warmup_calls,
            )
            return ingest_figures(raw, calls=args.mlflow_calls, batches=args.ingest_batches)

        for i in range(args.repeats):
            steps = [("lumiflow", lumi), ("mlflow", peer)] if srv is not None else [("mlflow", peer)]
            if i % 2:
                steps.reverse()
            for label, fn in steps:
                # Each server idle first (the overhead part's backlog, the other side's run).
                for pid in (srv.pid if srv is not None else None, mlflow.proc.pid if mlflow.proc else None):
                    if pid is not None:
                        wait_idle(pid, timeout=60)
                res = side(label, errors, fn, i)
                if res is None:
                    continue
                runs[label].append(res)
                console.print(
                    f"  repeat {i + 1}: {label}: {res['calls_per_s']:.0f} calls/s, "
                    f"{res['batched_metrics_per_s']:.0f} metrics/s batched, lost {res['lost_points']}",
                    style="dim",
                )
    sides: dict[str, Any] = {}
    for label, results in runs.items():
        if results:
            best = {k: statistics.median(r[k] for r in results) for k in results[0] if k != "stored_points"}
            best["lost_points"] = max(r["lost_points"] for r in results)
            sides[label] = best
    single = batched = None
    if "lumiflow" in sides and "mlflow" in sides:
        single = sides["lumiflow"]["calls_per_s"] / sides["mlflow"]["calls_per_s"]
        batched = sides["lumiflow"]["batched_metrics_per_s"] / sides["mlflow"]["batched_metrics_per_s"]
    console.print(
        table(
            f"metrics ingestion from one client, median of {args.repeats} run(s)",
            [
                "side",
                "calls/s (1 metric)",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "mean ms",
                "metrics/s (100/call)",
                "p50 ms",
                "p99 ms",
                "lost",
            ],
            [
                [
                    NAMES[k],
                    f"{f['calls_per_s']:.0f}",
                    f"{f['call_p50_ms']:.2f}",
                    f"{f['call_p90_ms']:.2f}",
                    f"{f['call_p99_ms']:.2f}",
                    f"{f['call_mean_ms']:.2f}",
                    f"{f['batched_metrics_per_s']:.0f}",
                    f"{f['batch_p50_ms']:.2f}",
                    f"{f['batch_p99_ms']:.2f}",
                    f"{f['lost_points']:.0f}",
                ]
                for k, f in sides.items()
            ],
        )
    )
    goal_single = single is not None and single >= GOAL_INGEST_RATIO
    goal_batched = batched is not None and batched >= GOAL_INGEST_RATIO
    no_loss = "lumiflow" in sides and sides["lumiflow"]["lost_points"] == 0
    console.print(
        f"lumiflow / MLflow: single {fmt(single, '.1f')}× "
        f"(goal ≥ {GOAL_INGEST_RATIO:g}: {ok(goal_single)}), batched "
        f"{fmt(batched, '.1f')}× ({ok(goal_batched)}); "
        f"every point stored: {ok(no_loss)}"
    )
    return {
        "mlflow_version": mlflow_version(),
        "sides": sides,
        "ratio_single": single,
        "ratio_batched": batched,
        "errors": errors,
        "goal_ratio": GOAL_INGEST_RATIO,
        "goal_single_met": goal_single,
        "goal_batched_met": goal_batched,
        "goal_no_loss_met": no_loss,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", help="overhead, ingest, quality, all, or a comma list [all]")
    ap.add_argument("--trials", type=int, default=100, help="overhead: trials per side [100]")
    ap.add_argument("--trial-seconds", type=float, default=0.5, help="overhead: each trial sleeps this [0.5]")
    ap.add_argument(
        "--repeats", type=int, default=1, help="overhead and ingest: runs per side, rotating order [1]"
    )
    ap.add_argument(
        "--warmup-trials",
        type=int,
        default=4,
        help="overhead: an untimed run of this many trials per side first [4]",
    )
    ap.add_argument("--poll-ms", type=float, default=100.0, help="overhead: experiment poll interval [100]")
    ap.add_argument(
        "--ray-fresh-actors", action="store_true", help="overhead: also Ray Tune with reuse_actors=False"
    )
    ap.add_argument("--no-ray", action="store_true", help="overhead: leave Ray Tune out (no namespace)")
    ap.add_argument(
        "--ingest-calls", type=int, default=2000, help="ingest: lumiflow single-metric calls [2000]"
    )
    ap.add_argument("--mlflow-calls", type=int, default=300, help="ingest: MLflow single-metric calls [300]")
    ap.add_argument(
        "--ingest-batches", type=int, default=50, help="ingest: calls of 100 metrics, each side [50]"
    )
    ap.add_argument(
        "--warmup-calls", type=int, default=50, help="ingest: untimed calls first, each side [50]"
    )
    ap.add_argument("--quality-trials", type=int, default=60, help="quality: trials per study [60]")
    ap.add_argument("--seeds", type=int, default=5, help="quality: studies per algorithm [5]")
    ap.add_argument("--algorithms", default="tpe,bayesianoptimization,random", help="quality: Katib names")
    ap.add_argument(
        "--jobs", type=int, default=2, help="quality: studies at once, in processes (1: in this process) [2]"
    )
    ap.add_argument("--keep-home", action="store_true", help="keep the server's home and the runs' files")
    args = ap.parse_args()
    parts = PARTS if args.part == "all" else tuple(p.strip() for p in args.part.split(","))
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)} or all")

    args.ray_skip_reason = "--no-ray" if args.no_ray else None
    if "overhead" in parts and not args.no_ray and os.environ.get(INSIDE) != "1":
        args.ray_skip_reason = private_network_unavailable()
        if args.ray_skip_reason is None:
            if "ingest" in parts:  # pip needs the network, which the namespace does not have
                ensure_mlflow_venv(lambda m: console.print(m, style="dim"))
            reexec_in_private_network(Path(__file__).resolve())
        console.print(f"Ray Tune left out: {args.ray_skip_reason}", style="yellow")
    if os.environ.get(INSIDE) == "1" and not inside_private_network():
        raise SystemExit("refusing to start Ray outside a private network namespace")
    if "ingest" in parts:
        ensure_mlflow_venv(lambda m: console.print(m, style="dim"))

    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"benchmark": "tune_bench", "parts": list(parts)}
    work = Path(tempfile.mkdtemp(prefix="lumibench-tune-"))
    srv: LumiServer | None = None
    try:
        client = None
        if "overhead" in parts or "ingest" in parts:
            srv = LumiServer(keep=args.keep_home).start()
            client = srv.client()
            console.print(f"lumiflow at {srv.url} (pid {srv.pid}); load {load_before:.2f}", style="dim")
        if "overhead" in parts:
            result["overhead"] = overhead_part(srv, client, work, args)
        if "ingest" in parts:
            result["ingest"] = ingest_part(srv, client, work, args)
        if client is not None:
            client.close()
    finally:
        if srv is not None:
            srv.stop()
        leftovers = kill_namespace_leftovers()
        if leftovers:
            console.print(f"killed processes left in the namespace: {leftovers}", style="dim")
        if args.keep_home:
            console.print(f"runs' files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if "quality" in parts:
        try:
            result["quality"] = quality_part(args)
        except Exception as exc:
            console.print(f"quality failed: {exc}", style="red")
            result["quality"] = {"error": f"{type(exc).__name__}: {exc}"}

    goals: dict[str, bool | None] = {}
    if "overhead" in result:
        goals["overhead_below_ray_tune"] = result["overhead"]["goal_below_ray_tune_met"]
        goals["overhead_within_1_3x_ideal"] = result["overhead"]["goal_ideal_met"]
    if "ingest" in result:
        goals["ingest_single_10x_mlflow"] = result["ingest"]["goal_single_met"]
        goals["ingest_batched_10x_mlflow"] = result["ingest"]["goal_batched_met"]
        goals["ingest_no_lost_points"] = result["ingest"]["goal_no_loss_met"]
    result["goals"] = goals
    measured = [met for met in goals.values() if met is not None]
    result["goal_met"] = all(measured) if measured else None
    result["loadavg_1m_before"] = round(load_before, 2)
    result["machine"] = machine()
    emit_json(result)


if __name__ == "__main__":
    main()
