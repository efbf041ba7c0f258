"""Scheduler throughput: admissions per second with 1,000 queued 1-replica Workloads.

In-process: a ``Platform`` on SQLite in a temporary home, with none of its loops started
(no controllers, no scheduler thread), so only the timed ``scheduler.run_once()`` passes
touch the queue. ``--profiles`` profiles are created with quotas, then ``--workloads``
Workloads (phase Pending, one replica each) spread round-robin over them; the clock runs
over scheduler passes until a pass admits nothing more.

Two variants:

* ``all-fit``: quotas large enough for everything; all Workloads are admitted;
* ``partial``: each profile's quota admits ``--partial-fraction`` of its Workloads; the rest
  stay Queued with a reason. After the admitting passes, one more pass over the unchanged
  queue is timed (``steady_pass_ms``: what every later wake-up costs while they wait).

Peer: Kubernetes' scheduler bar of 100 pods/s (a constant; no kube-scheduler runs here):
kubernetes/community, contributors/devel/sig-scheduling/scheduler_benchmarking.md: "the
API server rate limitation is set to 100 requests per second. As a result, the scheduler's
throughput is capped at 100 pods/s" (ClusterLoader2 also checks SchedulingThroughput >= 100).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import console, emit_json, machine, summary, table
from lumiflow.common.settings import Settings
from lumiflow.resources.profile import Profile
from lumiflow.resources.workload import Workload
from lumiflow.server.platform import Platform
from lumiflow.store import StoredObject

KUBE_SCHEDULER_PODS_PER_S = 100.0
KUBE_SOURCE = "kubernetes/community contributors/devel/sig-scheduling/scheduler_benchmarking.md"


def settings_for(home: Path, workloads: int) -> Settings:
    cpu = max(64, workloads * 2)
    return Settings.load(
        home=home,
        overrides={
            "clusters": [
                {
                    "name": "local",
                    "type": "local",
                    "home": True,
                    "options": {"capacity": {"cpu": cpu, "memory": f"{cpu * 4}Gi", "gpu": 0}},
                }
            ]
        },
    )


def profile_object(name: str, workloads_quota: int) -> StoredObject:
    spec = Profile.parse(
        {
            "apiVersion": Profile.API_VERSION,
            "kind": "Profile",
            "metadata": {"name": name},
            "spec": {
                "owner": {"kind": "User", "name": name},
                "resourceQuotaSpec": {
                    "hard": {"cpu": "100000", "memory": "1000Ti", "workloads": str(workloads_quota)}
                },
            },
        }
    ).spec.model_dump(mode="json", exclude_none=True)
    return StoredObject(kind="Profile", api_version=Profile.API_VERSION, profile="", name=name, spec=spec)


def workload_object(profile: str, name: str) -> StoredObject:
    spec = {
        "replicas": [
            {
                "name": "worker-0",
                "command": ["true"],
                "resources": {"cpu": 1.0, "memory": 2**30, "gpu": 0},
            }
        ]
    }
    doc = {"apiVersion": Workload.API_VERSION, "kind": "Workload", "metadata": {"name": name}, "spec": spec}
    Workload.parse(doc)  # the same validation the controllers apply
    return StoredObject(
        kind="Workload",
        api_version=Workload.API_VERSION,
        profile=profile,
        name=name,
        spec=spec,
        status={"phase": "Pending"},
    )


def run_variant(
    *, variant: str, workloads: int, profiles: int, fraction: float, keep: bool
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="lumibench-sched-"))
    platform = Platform(settings_for(tmp / "home", workloads))
    try:
        store = platform.store
        per_profile = [
            workloads // profiles + (1 if i < workloads % profiles else 0) for i in range(profiles)
        ]
        names = [f"team-{i}" for i in range(profiles)]
        expected = 0
        for name, count in zip(names, per_profile, strict=True):
            quota = count if variant == "all-fit" else int(count * fraction)
            expected += min(count, quota)
            store.create(profile_object(name, quota))
        t = time.perf_counter()
        for i in range(workloads):
            store.create(workload_object(names[i % profiles], f"wl-{i:05d}"))
        setup_s = time.perf_counter() - t

        passes: list[dict[str, float]] = []
        admitted = 0
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            n = platform.scheduler.run_once()
            passes.append({"admitted": n, "ms": (time.perf_counter() - t) * 1000})
            admitted += n
            if n == 0:
                break
        # The last pass admitted nothing: it only confirmed that the queue is settled.
        busy_s = sum(p["ms"] for p in passes if p["admitted"]) / 1000
        total_s = time.perf_counter() - start
        t = time.perf_counter()
        platform.scheduler.run_once()
        steady_ms = (time.perf_counter() - t) * 1000

        counts = store.count("Workload")
        if admitted != expected or counts.get("Admitted", 0) != expected:
            raise RuntimeError(f"{variant}: admitted {admitted}, store {counts}, expected {expected}")
        return {
            "variant": variant,
            "workloads": workloads,
            "profiles": profiles,
            "admitted": admitted,
            "queued": counts.get("Queued", 0),
            "passes": len(passes),
            "pass_ms": [p["ms"] for p in passes],
            "admit_s": busy_s,
            "total_s": total_s,
            "admissions_per_s": admitted / busy_s if busy_s else float("inf"),
            "steady_pass_ms": steady_ms,
            "setup_s": setup_s,
        }
    finally:
        platform.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=1000, help="queued 1-replica Workloads [1000]")
    ap.add_argument("--profiles", type=int, default=4, help="profiles they are spread over [4]")
    ap.add_argument("--partial-fraction", type=float, default=0.6, help="quota share in 'partial' [0.6]")
    ap.add_argument("--repeats", type=int, default=3, help="fresh runs of each variant [3]")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary homes")
    args = ap.parse_args()

    runs: dict[str, list[dict[str, Any]]] = {"all-fit": [], "partial": []}
    for rep in range(args.repeats):
        for variant in ("all-fit", "partial"):
            res = run_variant(
                variant=variant,
                workloads=args.workloads,
                profiles=args.profiles,
                fraction=args.partial_fraction,
                keep=args.keep_home,
            )
            runs[variant].append(res)
            console.print(
                f"  run {rep + 1} {variant:8s}: {res['admitted']} admitted, {res['queued']} queued in "
                f"{res['passes']} passes ({', '.join(f'{ms:.0f}' for ms in res['pass_ms'])} ms); "
                f"{res['admissions_per_s']:,.0f} admissions/s; steady pass {res['steady_pass_ms']:.0f} ms",
                style="dim",
            )

    figures: dict[str, Any] = {}
    rows = []
    for variant, results in runs.items():
        rate = summary([r["admissions_per_s"] for r in results])
        steady = summary([r["steady_pass_ms"] for r in results])
        admit = summary([r["admit_s"] for r in results])
        figures[variant] = {
            "admitted": results[0]["admitted"],
            "queued": results[0]["queued"],
            "passes": results[0]["passes"],
            "admit_s_p50": admit["p50"],
            "admissions_per_s_p50": rate["p50"],
            "admissions_per_s_min": rate["min"],
            "admissions_per_s_runs": [r["admissions_per_s"] for r in results],
            "steady_pass_ms_p50": steady["p50"],
            "ratio_to_kube_scheduler": rate["p50"] / KUBE_SCHEDULER_PODS_PER_S,
        }
        rows.append(
            [
                variant,
                f"{results[0]['admitted']}/{results[0]['workloads']}",
                results[0]["passes"],
                admit["p50"] * 1000,
                rate["p50"],
                rate["min"],
                steady["p50"],
                f"{rate['p50'] / KUBE_SCHEDULER_PODS_PER_S:.1f}x",
            ]
        )
    rows.append(["kube-scheduler bar (constant)", "-", "-", "-", KUBE_SCHEDULER_PODS_PER_S, "-", "-", "1.0x"])
    console.print(
        table(
            f"scheduler admissions, {args.workloads} Workloads over {args.profiles} profiles, "
            f"p50 of {args.repeats} runs",
            [
                "variant",
                "admitted",
                "passes",
                "admit ms",
                "adm/s p50",
                "adm/s min",
                "steady pass ms",
                "vs k8s",
            ],
            rows,
        )
    )
    console.print(f"peer: {KUBE_SCHEDULER_PODS_PER_S:.0f} pods/s, from {KUBE_SOURCE}")
    emit_json(
        {
            "benchmark": "scheduler_throughput",
            "workloads": args.workloads,
            "profiles": args.profiles,
            "partial_fraction": args.partial_fraction,
            "repeats": args.repeats,
            **{k.replace("-", "_"): v for k, v in figures.items()},
            "kube_scheduler_pods_per_s": KUBE_SCHEDULER_PODS_PER_S,
            "kube_scheduler_source": KUBE_SOURCE,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
