"""Distributed training on Ray: lumiflow's Ray backend versus Ray Train's TorchTrainer.

A real two-node Ray cluster (head 127.0.0.2, worker 127.0.0.3, 2 CPUs each), started by
``tests/clusters/ray_support.py`` inside a private network namespace whose only interface is
loopback: the benchmark re-runs itself under ``unshare --net`` (root only) and everything,
the nodes, the lumiflow server and this driver, runs in there; the cluster's processes are
stopped by PID at the end and whatever is left in the namespace is killed by PID.

The same 2-rank DDP 3DGAN run (``examples/3dgan``, small grid, one epoch of ``--warmup-steps`` +
``--steps`` steps, batch 4 per rank, gloo, one thread per rank, the same synthetic showers),
launched

* by lumiflow: a ``kubeflow.org/v1`` PyTorchJob (Master + 1 Worker, ``cpu: "1"`` each) with
  ``spec.cluster: ray-lab``, POSTed to the HTTP API of a real ``lumi up`` whose configuration
  has the Ray cluster; the backend makes a placement group (SPREAD) and one supervising actor
  per replica, which runs ``python train_torch.py`` with Kubeflow's environment;
* by Ray Train: ``TorchTrainer(train_loop_per_worker, scaling_config=ScalingConfig(num_workers=2,
  resources_per_worker={"CPU": 1}, placement_strategy="SPREAD"))`` and ``fit()``, called from
  this process (a driver already connected to the cluster and with ``ray.train`` imported:
  the cheapest submit Ray Train has). The loop imports the example's ``train_torch`` (its
  model, data and step code) and runs its ``Trainer`` on the process group Ray Train set up.

Runs are interleaved, one at a time, after ``--warmup-runs`` runs per side that do not count.
Rank 0 writes the times (``--timing-file``, see ``_training.py``); the clock starts just before
the HTTP POST / the ``TorchTrainer(...)`` call. ``start`` is ``main()`` of the script for
lumiflow (before ``init_process_group``) and the first line of the loop for Ray Train (after
Ray Train has set up the process group), so compare the first step, not ``start``.

Goal (issue 4): submit → first step, lumiflow <= Ray Train (medians). Steps/s is reported.
Needs root, ``unshare``, ``ip`` and ``pip install 'ray[train]==<the installed ray>'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import ROOMY_CONFIG, ROOT, LumiServer, console, emit_json, machine
from _training import (
    EXAMPLE,
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

INSIDE = "LUMIFLOW_BENCH_RAY_NETNS"
CLUSTER = "ray-lab"


# --- the private network namespace ----------------------------------------------------------


def reexec_in_private_network() -> None:
    """Replaces this process with itself under ``unshare --net`` (the only way it runs)."""
    if os.geteuid() != 0:
        raise SystemExit("ray_overhead.py needs root: it runs the Ray cluster in a private network namespace")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            raise SystemExit(f"ray_overhead.py needs {tool!r} (util-linux / iproute2)")
    os.environ[INSIDE] = "1"
    script = str(Path(__file__).resolve())
    os.execvp(
        "unshare",
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" "$@"',
            PYTHON,
            script,
            *sys.argv[1:],
        ],
    )


# --- Ray Train's side -------------------------------------------------------------------------


def ray_train_loop(config: dict[str, Any]) -> None:
    """Each Ray Train worker: the example's own trainer on the process group Ray Train made."""
    import sys

    import ray.train
    import torch

    if config["example"] not in sys.path:
        sys.path.insert(0, config["example"])
    import train_torch  # the example's model, data and step code
    from common import TorchEnv

    torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 gives the lumiflow side
    context = ray.train.get_context()
    env = TorchEnv(rank=context.get_world_rank(), world_size=context.get_world_size())
    args = train_torch.parse_args(config["argv"])
    if env.rank == 0:
        train_torch.mark_time(args.timing_file, "start")
    with open(f"{config['nodes']}.{env.rank}", "w") as fh:  # which node: checked after the run
        fh.write(ray.util.get_node_ip_address())
    train_torch.Trainer(args, env).run()


def ray_train_run(name: str, work: Path, args: argparse.Namespace) -> dict[str, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    timing = work / f"{name}.timing"
    argv = script_args(args, timing_file=timing, checkpoint_dir=work / f"{name}.ckpt")
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            trainer = TorchTrainer(
                ray_train_loop,
                train_loop_config={
                    "example": str(EXAMPLE),
                    "argv": argv,
                    "nodes": str(work / f"{name}.node"),
                },
                scaling_config=ScalingConfig(
                    num_workers=2, resources_per_worker={"CPU": 1}, placement_strategy="SPREAD"
                ),
                run_config=RunConfig(name=name, storage_path=str(work / "ray_results")),
            )
            outcome["result"] = trainer.fit()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            outcome["end"] = time.time()

    t0 = time.time()
    thread = threading.Thread(target=fit, name=f"fit-{name}", daemon=True)
    thread.start()
    thread.join(args.timeout)
    if thread.is_alive():
        raise TimeoutError(f"Ray Train run {name} still running after {args.timeout:g} s")
    if "error" in outcome:
        raise RuntimeError(f"Ray Train run {name} failed: {outcome['error']!r}")
    error = getattr(outcome.get("result"), "error", None)
    if error is not None:
        raise RuntimeError(f"Ray Train run {name} failed: {error!r}")
    nodes = {p.read_text() for p in work.glob(f"{name}.node.*")}
    return {**trial_figures(timing, t0, outcome["end"], args), "nodes_used": float(len(nodes))}


# --- lumiflow's side --------------------------------------------------------------------------


def lumiflow_run(
    srv: LumiServer, client: Any, name: str, work: Path, args: argparse.Namespace
) -> dict[str, float]:
    timing = work / f"{name}.timing"
    body = pytorchjob(name, [PYTHON, str(SCRIPT), *script_args(args, timing_file=timing)], cluster=CLUSTER)
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
    if p != "Succeeded":
        raise RuntimeError(f"job {name} {p}: {client.get(path).text} (server log {srv.log_path})")
    figures = trial_figures(timing, t0, end, args)
    figures.update(lumiflow_stages(srv, client, name, t0))
    return figures


def lumiflow_stages(srv: LumiServer, client: Any, name: str, t0: float) -> dict[str, float]:
    """When the backend's actor started rank 0's process (its ``started`` record), and the
    nodes the ranks ran on (untimed, after the run)."""
    workload = client.get(f"/api/v1/profiles/admin/workloads/{name}").json()
    out: dict[str, float] = {}
    hosts = {r.get("name"): r.get("host") for r in workload.get("status", {}).get("replicas", [])}
    out["nodes_used"] = float(len({h for h in hosts.values() if h}))
    attempt = srv.home / "clusters" / CLUSTER / workload["metadata"]["uid"] / "0"
    try:
        started = json.loads((attempt / "master-0" / "started").read_text())
        out["launched_s"] = float(started["startedAt"]) - t0
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def server_config(cluster: Any) -> str:
    options = {"address": cluster.address, "node_dir": str(cluster.node_dir), "placement_timeout": 20}
    return ROOMY_CONFIG.replace(
        "profiles:",
        f"- name: {CLUSTER}\n  type: ray\n  options: {json.dumps(options)}\nprofiles:",
        1,
    )


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, repeats=4)
    ap.add_argument("--keep-home", action="store_true", help="keep the server's home and the runs' files")
    args = ap.parse_args()
    if os.environ.get(INSIDE) != "1":
        try:
            import ray.train
        except ImportError as exc:
            import ray

            raise SystemExit(
                f"Ray Train is missing ({exc}): pip install 'ray[train]=={ray.__version__}'"
            ) from None
        reexec_in_private_network()

    sys.path.insert(0, str(ROOT))
    from tests.clusters.ray_support import RayTestCluster, inside_private_network

    if not inside_private_network():
        raise SystemExit("refusing to start Ray outside a private network namespace")
    # As for the nodes (ray_support): no usage reports, no token auth; the drivers (this
    # process, the lumiflow server) inherit these.
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="lumibench-ray-"))
    lumi: list[dict[str, float]] = []
    peer: list[dict[str, float]] = []
    total_runs = args.warmup_runs + args.repeats
    cluster = RayTestCluster()
    started = time.monotonic()
    import ray

    try:
        cluster.start()
        console.print(f"Ray cluster at {cluster.address}: 2 nodes up in {time.monotonic() - started:.1f} s")
        # The cluster's start left this process connected in lumiflow's namespace; Ray Train
        # gets a connection of its own, made (like its imports) before any clock runs.
        from lumiflow.clusters.ray.connection import disconnect

        disconnect()
        ray.init(address=cluster.address, namespace="bench-ray-train", log_to_driver=False)
        import ray.train.torch

        with LumiServer(config=server_config(cluster), keep=args.keep_home) as srv, srv.client() as client:
            console.print(
                f"lumiflow at {srv.url} (pid {srv.pid}); {total_runs} runs per side "
                f"({args.warmup_runs} warm-up), {args.warmup_steps}+{args.steps} steps, grid {args.grid}, "
                f"batch {args.batch_size}/rank, {events_for(args)} showers; load {load_before:.2f}"
            )
            for i in range(total_runs):
                counted = i >= args.warmup_runs
                tag = f"{'run' if counted else 'warm-up'} {i + 1}/{total_runs}"

                def one_lumi(i: int = i, counted: bool = counted, tag: str = tag) -> None:
                    res = lumiflow_run(srv, client, f"rov-{i:03d}", work, args)
                    console.print(
                        f"  {tag} lumiflow on Ray: first step {res['first_step_s']:.2f} s, "
                        f"{res['steps_per_s']:.3f} steps/s, rank 0 launched at "
                        f"{res.get('launched_s', float('nan')):.2f} s, {res.get('nodes_used', 0):.0f} nodes",
                        style="dim",
                    )
                    if counted:
                        lumi.append(res)

                def one_ray_train(i: int = i, counted: bool = counted, tag: str = tag) -> None:
                    res = ray_train_run(f"raytrain-{i:03d}", work, args)
                    console.print(
                        f"  {tag} Ray Train: first step {res['first_step_s']:.2f} s, "
                        f"{res['steps_per_s']:.3f} steps/s, {res['nodes_used']:.0f} nodes",
                        style="dim",
                    )
                    if counted:
                        peer.append(res)

                order = (one_lumi, one_ray_train) if i % 2 == 0 else (one_ray_train, one_lumi)
                for fn in order:
                    fn()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        leftovers = cluster.stop()
        if leftovers:
            console.print(f"killed processes left in the namespace: {leftovers}", style="dim")
        if args.keep_home:
            console.print(f"runs' files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    sides = {"lumiflow PyTorchJob on Ray": lumi, "Ray Train TorchTrainer": peer}
    console.print(
        figures_table(
            f"2-rank DDP 3DGAN on 2 Ray nodes, median (min–max) of {len(lumi)} runs per side", sides
        )
    )
    console.print(runs_table("every measured run", sides))
    l_sum, r_sum = side_summary(lumi), side_summary(peer)
    launched = [t["launched_s"] for t in lumi if "launched_s" in t]
    first_diff = l_sum["first_step_s"] - r_sum["first_step_s"]
    ratio = l_sum["steps_per_s"] / r_sum["steps_per_s"]
    met = first_diff <= 0.0
    pairs = pair_ratios(lumi, peer)
    console.print(
        f"first step lumiflow - Ray Train {first_diff:+.2f} s (goal <= 0: "
        f"{'[green]met[/]' if met else '[red]NOT met[/]'}; per-repeat p50 {pairs['first_step_diff_s_p50']:+.2f} s); "
        f"steps/s lumiflow/Ray Train {ratio:.3f}; lumiflow's rank 0 process started "
        f"{median(launched):.2f} s after the submit (p50)"
    )
    emit_json(
        {
            "benchmark": "ray_overhead",
            "path": "server API: PyTorchJob with spec.cluster ray-lab",
            "repeats": len(lumi),
            "warmup_runs": args.warmup_runs,
            "grid": args.grid,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup_steps,
            "steps": args.steps,
            "events": events_for(args),
            "ray_nodes": 2,
            "lumiflow": {
                **l_sum,
                "launched_s": median(launched),
                "nodes_used": [t.get("nodes_used") for t in lumi],
            },
            "ray_train": {**r_sum, "nodes_used": [t.get("nodes_used") for t in peer]},
            "first_step_diff_s": first_diff,
            "ratio_first_step": l_sum["first_step_s"] / r_sum["first_step_s"],
            "ratio_steps_per_s": ratio,
            "pairs": pairs,
            "goal_first_step_diff_s": 0.0,
            "goal_met": met,
            "loadavg_1m_before": round(load_before, 2),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
