"""Submit → running: a 1-replica TrainingJob on the local cluster versus a bare ``Popen``.

Both sides run the same command, whose first act is to write ``time.time()`` to a file
(``PYTHON -S -c ...``, PYTHON being the real interpreter binary, ``--python``), so "the command
started" is the command's own clock reading, not the moment a poller noticed. Trials are interleaved (lumiflow, Popen, Popen, lumiflow, ...)
in one run against one warm server, and each trial waits for the previous one to finish.

Per lumiflow trial:

* ``start``: from just before the HTTP submit (``POST /api/v1/apply``) to the command's
  first instruction;
* ``api``: from the same instant until ``GET`` of the job reports ``status.phase`` Running
  (or already Succeeded); the API is polled every ``--api-poll-ms`` (that is its resolution).

Per Popen trial: ``start`` from just before ``subprocess.Popen`` to the command's first
instruction, and ``returned`` when ``Popen`` returned (the process exists).

Goal: p50(lumiflow start) - p50(Popen start) <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import LumiServer, console, emit_json, machine, summary, table, wait_until
from lumiflow.common.timeutil import parse_rfc3339

GOAL_OVERHEAD_MS = 50.0

#: Atomic write (rename) so that a poller never reads a half-written number.
COMMAND_CODE = (
    "import time;t=repr(time.time());import os,sys;p=sys.argv[1];"
    "f=open(p+'.tmp','w');f.write(t);f.close();os.rename(p+'.tmp',p)"
)


def command(python: str, marker: Path) -> list[str]:
    return [python, "-S", "-c", COMMAND_CODE, str(marker)]


def job(name: str, argv: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "labels": {"bench": "submit-latency"}},
        "spec": {
            "framework": "generic",
            "replicaSpecs": {
                "Worker": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "command": argv[:1],
                                    "args": argv[1:],
                                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                }
                            ]
                        }
                    },
                }
            },
        },
    }


def read_marker(marker: Path) -> float | None:
    try:
        return float(marker.read_text())
    except (FileNotFoundError, ValueError):
        return None


def lumiflow_trial(
    srv: LumiServer, client: Any, *, name: str, argv: list[str], marker: Path, args: argparse.Namespace
) -> dict[str, float]:
    body = job(name, argv)
    path = f"/api/v1/profiles/admin/trainingjobs/{name}"
    api_every = args.api_poll_ms / 1000.0
    file_every = args.file_poll_ms / 1000.0
    t0 = time.time()
    r = client.post("/api/v1/apply", json=body)
    t_post = time.time()
    if r.status_code != 201:
        raise RuntimeError(f"apply answered {r.status_code}: {r.text}")
    started: float | None = None
    running_at: float | None = None
    next_api = t_post
    deadline = t0 + args.timeout
    while started is None or running_at is None:
        now = time.time()
        if now > deadline:
            raise TimeoutError(f"job {name}: no start within {args.timeout} s (log: {srv.log_path})")
        if started is None:
            started = read_marker(marker)
        if running_at is None and now >= next_api:
            phase = client.get(path).json().get("status", {}).get("phase")
            if phase in ("Running", "Succeeded"):
                running_at = time.time()
            elif phase == "Failed":
                raise RuntimeError(f"job {name} failed: {client.get(path).text}")
            next_api = time.time() + api_every
        time.sleep(file_every)
    # Let the job finish (and the controllers settle) before the next trial.
    wait_until(
        lambda: client.get(path).json().get("status", {}).get("phase") in ("Succeeded", "Failed"),
        timeout=args.timeout,
        interval=0.01,
        what=f"job {name} to finish",
    )
    result = {
        "start_ms": (started - t0) * 1000,
        "api_ms": (running_at - t0) * 1000,
        "post_ms": (t_post - t0) * 1000,
    }
    result.update(stages(srv, client, name=name, t0=t0, command_started=started))
    return result


def _epoch(value: str | None) -> float | None:
    when = parse_rfc3339(value)
    return when.timestamp() if when is not None else None


def stages(srv: LumiServer, client: Any, *, name: str, t0: float, command_started: float) -> dict[str, float]:
    """Where the time went, from the server's own records (read after the trial, untimed):
    job stored → Workload stored (TrainingJob controller) → admitted (scheduler) → shim
    started (Workload controller + launch) → command started (shim fork/exec)."""
    job_doc = client.get(f"/api/v1/profiles/admin/trainingjobs/{name}").json()
    wl_doc = client.get(f"/api/v1/profiles/admin/workloads/{name}").json()
    marks = {
        "job_stored": _epoch(job_doc["metadata"].get("creationTimestamp")),
        "workload_stored": _epoch(wl_doc["metadata"].get("creationTimestamp")),
        "admitted": _epoch(wl_doc.get("status", {}).get("admittedAt")),
        "shim_started": None,
    }
    attempt_dir = srv.home / "clusters" / "local" / wl_doc["metadata"]["uid"] / "0"
    for shim in attempt_dir.glob("*/shim.json"):
        marks["shim_started"] = float(json.loads(shim.read_text())["startedAt"])
    out: dict[str, float] = {}
    previous, previous_at = "submit", t0
    for stage, at in [*marks.items(), ("command_started", command_started)]:
        if at is None:
            continue
        out[f"stage_{previous}_to_{stage}_ms"] = (at - previous_at) * 1000
        previous, previous_at = stage, at
    return out


def popen_trial(*, argv: list[str], marker: Path, args: argparse.Namespace) -> dict[str, float]:
    t0 = time.time()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True
    )
    t_ret = time.time()
    try:
        started = wait_until(
            lambda: read_marker(marker),
            timeout=args.timeout,
            interval=args.file_poll_ms / 1000,
            what="marker",
        )
    finally:
        proc.wait(timeout=args.timeout)
    return {"start_ms": (started - t0) * 1000, "returned_ms": (t_ret - t0) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=50, help="measured trials per side [50]")
    ap.add_argument("--warmup", type=int, default=5, help="trials per side run first and excluded [5]")
    ap.add_argument("--api-poll-ms", type=float, default=5.0, help="GET interval while waiting [5]")
    ap.add_argument("--file-poll-ms", type=float, default=1.0, help="marker-file poll interval [1]")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per trial [60]")
    ap.add_argument(
        "--python",
        default=os.path.realpath(sys.executable),
        help="interpreter both sides run (a real binary, not a pyenv shim) [this one]",
    )
    ap.add_argument("--keep-home", action="store_true", help="keep the server's temporary home")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lumibench-markers-"))
    lumi: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []
    total = args.warmup + args.submissions
    try:
        with LumiServer(keep=args.keep_home) as srv, srv.client() as client:
            console.print(f"lumiflow at {srv.url} (pid {srv.pid}, home {srv.home}); {total} trials per side")
            for i in range(total):
                name = f"lat-{i:04d}"
                lm, pm = work / f"{name}-lumi", work / f"{name}-popen"

                def run_lumi(i: int = i, name: str = name, lm: Path = lm) -> None:
                    res = lumiflow_trial(
                        srv, client, name=name, argv=command(args.python, lm), marker=lm, args=args
                    )
                    if i >= args.warmup:
                        lumi.append(res)

                def run_popen(i: int = i, pm: Path = pm) -> None:
                    res = popen_trial(argv=command(args.python, pm), marker=pm, args=args)
                    if i >= args.warmup:
                        bare.append(res)

                # Alternate which side goes first, so neither always runs right after the other.
                order = (run_lumi, run_popen) if i % 2 == 0 else (run_popen, run_lumi)
                for fn in order:
                    fn()
                if (i + 1) % 10 == 0:
                    console.print(f"  {i + 1}/{total} trials", style="dim")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    l_start = summary([r["start_ms"] for r in lumi])
    l_api = summary([r["api_ms"] for r in lumi])
    l_post = summary([r["post_ms"] for r in lumi])
    p_start = summary([r["start_ms"] for r in bare])
    p_ret = summary([r["returned_ms"] for r in bare])
    overhead = l_start["p50"] - p_start["p50"]
    overhead_api = l_api["p50"] - p_start["p50"]

    cols = ["measure (ms)", "p50", "p90", "p99", "mean", "min", "max"]
    rows = [
        ["lumiflow: submit → command starts", *(l_start[k] for k in cols[1:])],
        ["lumiflow: submit → API says Running", *(l_api[k] for k in cols[1:])],
        ["lumiflow: POST /apply answered", *(l_post[k] for k in cols[1:])],
        ["Popen: call → command starts", *(p_start[k] for k in cols[1:])],
        ["Popen: call returned", *(p_ret[k] for k in cols[1:])],
    ]
    console.print(table(f"submit latency, {len(lumi)} trials per side (warm-up excluded)", cols, rows))
    stage_keys = [k for k in lumi[0] if k.startswith("stage_")] if lumi else []
    stage_p50 = {}
    for key in stage_keys:
        values = [r[key] for r in lumi if key in r]
        stage_p50[key[len("stage_") : -len("_ms")]] = summary(values)
    console.print(
        table(
            "lumiflow: where the time goes (server records; p50 of each stage, ms)",
            ["stage", "p50", "p90", "max"],
            [[k.replace("_to_", " → "), v["p50"], v["p90"], v["max"]] for k, v in stage_p50.items()],
        )
    )
    met = overhead <= GOAL_OVERHEAD_MS
    console.print(
        f"p50 overhead over Popen: command start {overhead:.1f} ms "
        f"([{'green' if met else 'red'}]goal <= {GOAL_OVERHEAD_MS:.0f} ms: {'met' if met else 'NOT met'}[/]); "
        f"API Running {overhead_api:.1f} ms; ratio of p50 start {l_start['p50'] / p_start['p50']:.1f}x"
    )
    emit_json(
        {
            "benchmark": "submit_latency",
            "submissions": len(lumi),
            "warmup": args.warmup,
            "api_poll_ms": args.api_poll_ms,
            "lumiflow_start_ms": {k: l_start[k] for k in ("p50", "p90", "p99")},
            "lumiflow_api_running_ms": {k: l_api[k] for k in ("p50", "p90", "p99")},
            "lumiflow_post_ms": {k: l_post[k] for k in ("p50", "p90", "p99")},
            "popen_start_ms": {k: p_start[k] for k in ("p50", "p90", "p99")},
            "popen_returned_ms": {k: p_ret[k] for k in ("p50", "p90", "p99")},
            "overhead_p50_start_ms": overhead,
            "overhead_p50_api_running_ms": overhead_api,
            "lumiflow_stages_p50_ms": {k: v["p50"] for k, v in stage_p50.items()},
            "ratio_p50_start": l_start["p50"] / p_start["p50"],
            "ratio_p50_api_running": l_api["p50"] / p_start["p50"],
            "goal_overhead_ms": GOAL_OVERHEAD_MS,
            "goal_met": met,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
