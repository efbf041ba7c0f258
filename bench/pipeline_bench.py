"""Pipelines: a chain of no-op steps on lumiflow versus Kubeflow Pipelines' local runner.

Both sides run the same pipeline: ``--steps`` (20) Python components in a chain, each taking
the previous one's int output and returning it + 1 (its own work is under a microsecond and is
counted as 0), so a run's wall time is all per-step overhead. In one invocation, one untimed
warm-up run each, then ``--repeats`` (3) runs interleaved lumiflow, KFP, lumiflow, KFP, ...
(each side's server or driver idle first); the medians of the totals are compared.

* lumiflow: ``lumiflow.dsl`` components, compiled with ``lumiflow.pipelines.compiler.compile``
  and POSTed as a ``lumiflow.dev/v1`` PipelineRun (``spec.caching: false``) to a real ``lumi
  up`` (``_harness.LumiServer``); the clock runs from the compile to the poll (every
  ``--poll-ms``) that sees ``status.state`` SUCCEEDED. Every step is a Workload whose one
  replica runs ``python -m lumiflow.runtime.component`` in a fresh process on the local
  cluster; its outputs are stored, a cache entry and lineage recorded. Per step, from the
  run's ``status.nodes`` (``startTime``/``finishTime``, launch to finish) and the step's
  Workload (created, admitted, the replica's process start and exit), the time is split into
  stages: where the overhead goes.
* KFP: the same chain as ``@kfp.dsl.component(install_kfp_package=False)`` components run by
  ``kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), enable_caching=False)``
  (each step ``python -m kfp.dsl.executor_main`` in a fresh process, no pip install per step).
  KFP lives in ``bench/.venv-kfp`` (created on first use with ``pip install kfp``, which needs
  the network; never in ``.venv``, whose test dependencies its pins would move); a driver
  process of that venv stays up for the whole benchmark, runs one pipeline per request and
  answers with its timings as JSON; its clock runs from the ``@dsl.pipeline`` decoration (KFP's
  compile) to the call's return. Per-step times come from KFP's own log records ("Executing
  task" → "finished with status").

Per-step overhead = (median total wall − the steps' own work, 0) / steps. Goal: lumiflow's
per-step overhead ≤ half of KFP local's.

Cached re-run: a run with caching on (new parameter values, so every step runs and is
cached), then ``--repeats`` re-runs with the same parameters: every step comes from the cache,
no process starts; its total time. KFP's local cache (``enable_caching=True``, kfp ≥ 2.16) is
run the same way beside it where the installed kfp has one.

Floor: the step's process alone, ``python -m lumiflow.runtime.component TASK.json`` on a task
file like the controller's (``--floor-runs`` times), and a bare ``python -c pass``: what of
lumiflow's per-step time is its step process and what is the platform around it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from _harness import (
    ROOT,
    LumiServer,
    clean_env,
    console,
    emit_json,
    machine,
    stop_process,
    table,
    wait_idle,
)
from lumiflow import dsl
from lumiflow.common.timeutil import parse_rfc3339
from lumiflow.pipelines import compiler

PROFILE = "admin"
RUNS = f"/api/v1/profiles/{PROFILE}/pipelineruns"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")
#: lumiflow's per-step overhead must be at most this fraction of KFP local's.
GOAL_RATIO = 0.5
#: The cached part's first input: far from the uncached runs' 0..steps, whose steps (caching
#: off still records each step's cache entry) would otherwise answer from the cache already.
CACHED_START = 1_000_000

KFP_VENV = ROOT / "bench" / ".venv-kfp"
KFP_PYTHON = KFP_VENV / "bin" / "python"

# --- lumiflow's pipeline -------------------------------------------------------------------------


@dsl.component
def add_one(x: int) -> int:
    return x + 1


def lumiflow_chain(steps: int) -> Any:
    """A ``@dsl.pipeline`` of ``steps`` ``add_one`` steps, each fed the previous one's output."""

    @dsl.pipeline(name="chain")
    def chain(start: int = 0) -> None:
        task = add_one(x=start)
        for _ in range(steps - 1):
            task = add_one(x=task.output)

    return chain


# --- the KFP side: a driver in bench/.venv-kfp ---------------------------------------------------

#: Runs in the KFP venv. Requests on stdin, one JSON object a line; one JSON answer a line on
#: the descriptor that was stdout when it started (KFP's local runner logs, and streams every
#: step's output, to stdout: that goes to the log file given as argv[1]).
KFP_DRIVER = '''\
import json, logging, os, re, sys, time

proto = os.fdopen(os.dup(1), "w")
log_fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(log_fd, 1)
os.dup2(log_fd, 2)
work = sys.argv[2]

import inspect
import warnings

warnings.simplefilter("ignore", FutureWarning)
import kfp
from kfp import dsl, local

ANSI = re.compile(r"\\x1b\\[[0-9;]*m")
STARTED = re.compile(r"^Executing task '([^']+)'")
FINISHED = re.compile(r"^Task '([^']+)' finished with status")
marks = []


class Marks(logging.Filter):
    """KFP's own log records of each task's start and end (a filter on the root logger stays
    when kfp.local swaps the handlers)."""

    def filter(self, record):
        text = ANSI.sub("", record.getMessage())
        for kind, pattern in (("start", STARTED), ("end", FINISHED)):
            m = pattern.match(text)
            if m:
                marks.append((kind, m.group(1), record.created))
        return True


logging.getLogger().addFilter(Marks())


@dsl.component(install_kfp_package=False)
def add_one(x: int) -> int:
    return x + 1


ACCEPTS = inspect.signature(local.init).parameters  # older kfp: no cache, no workspace_root
CACHE = "enable_caching" in ACCEPTS
proto.write(json.dumps({"ready": True, "kfp": kfp.__version__, "cache": CACHE}) + "\\n")
proto.flush()
for line in sys.stdin:
    req = json.loads(line)
    steps = int(req["steps"])
    options = {
        "pipeline_root": os.path.join(work, "root"),
        "workspace_root": os.path.join(work, "workspace"),
        "enable_caching": bool(req["caching"]),
        "cache_root": os.path.join(work, "cache"),
    }
    local.init(
        runner=local.SubprocessRunner(use_venv=False), **{k: v for k, v in options.items() if k in ACCEPTS}
    )
    marks.clear()
    t0 = time.perf_counter()
    wall0 = time.time()

    @dsl.pipeline(name="chain")
    def chain(start: int = 0) -> int:
        task = add_one(x=start)
        for _ in range(steps - 1):
            task = add_one(x=task.output)
        return task.output

    t1 = time.perf_counter()
    error = None
    try:
        value = chain(start=int(req["start"])).output
    except Exception as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"
    t2 = time.perf_counter()
    proto.write(
        json.dumps(
            {
                "wall_s": t2 - t0,
                "compile_s": t1 - t0,
                "t0": wall0,
                "value": value,
                "error": error,
                "marks": marks,
            }
        )
        + "\\n"
    )
    proto.flush()
'''


def ensure_kfp_venv() -> None:
    """Creates ``bench/.venv-kfp`` with the KFP SDK once (never in ``.venv``: its pins may move
    packages the platform's test dependencies need). Needs the network the first time."""
    if KFP_PYTHON.exists():
        probe = subprocess.run([str(KFP_PYTHON), "-c", "import kfp.local"], capture_output=True, check=False)
        if probe.returncode == 0:
            return
    console.print(
        f"creating {KFP_VENV.relative_to(ROOT)} with kfp (once; pip needs the network)", style="dim"
    )
    subprocess.run([sys.executable, "-m", "venv", str(KFP_VENV)], check=True)
    subprocess.run(
        [str(KFP_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "kfp"],
        check=True,
    )


class KfpDriver:
    """The KFP driver process (see :data:`KFP_DRIVER`), a child of this benchmark, ended by its
    PID; its steps are its own children and end with each run."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log_path = work / "kfp.log"
        script = work / "kfp_driver.py"
        script.write_text(KFP_DRIVER)
        env = clean_env()
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [str(KFP_PYTHON), str(script), str(self.log_path), str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=work,
            env=env,
            text=True,
        )
        hello = self._answer()
        self.version = str(hello["kfp"])
        self.has_cache = bool(hello["cache"])

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"the KFP driver exited ({self.proc.poll()}):\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, *, steps: int, start: int, caching: bool) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"steps": steps, "start": start, "caching": caching}) + "\n")
        self.proc.stdin.flush()
        raw = self._answer()
        if raw["error"] is not None or raw["value"] != start + steps:
            raise RuntimeError(f"KFP run ended with {raw['value']!r} (want {start + steps}): {raw['error']}")
        return raw

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        stop_process(self.proc, grace=10)


def kfp_figures(raw: dict[str, Any], steps: int) -> dict[str, Any]:
    starts = {name: t for kind, name, t in raw["marks"] if kind == "start"}
    ends = {name: t for kind, name, t in raw["marks"] if kind == "end"}
    order = sorted(starts, key=starts.__getitem__)
    launch = [ends[n] - starts[n] for n in order if n in ends]
    gaps = [starts[b] - ends[a] for a, b in itertools.pairwise(order) if a in ends]
    return {
        "wall_s": raw["wall_s"],
        "compile_s": raw["compile_s"],
        "processes": len(starts),
        "step_launch_to_finish_p50_ms": 1000 * statistics.median(launch) if launch else None,
        "step_gap_p50_ms": 1000 * statistics.median(gaps) if gaps else None,
        "submit_to_first_step_ms": 1000 * (starts[order[0]] - raw["t0"]) if order else None,
    }


# --- the lumiflow side ------------------------------------------------------------------------------


def _t(value: str | None) -> float | None:
    parsed = parse_rfc3339(value)
    return parsed.timestamp() if parsed is not None else None


def lumiflow_run(
    client: httpx.Client, *, name: str, steps: int, start: int, caching: bool, poll_s: float
) -> dict[str, Any]:
    """One PipelineRun, from the compile to the run's ``status.finishTime`` (the server's clock
    is this machine's: no poll interval in the figure, and polls can be sparse, so that they
    take little of the server's CPU); its status and Workloads."""
    wall0 = time.time()
    t0 = time.perf_counter()
    spec = compiler.compile(lumiflow_chain(steps)).model_dump(mode="json", exclude_none=True)
    t1 = time.perf_counter()
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipelineSpec": spec, "parameters": {"start": start}, "caching": caching},
    }
    r = client.post(RUNS, json=doc)
    if r.status_code != 201:
        raise RuntimeError(f"POST PipelineRun: {r.status_code} {r.text[:500]}")
    while True:
        run = client.get(f"{RUNS}/{name}").json()
        if run.get("status", {}).get("state") in TERMINAL:
            break
        time.sleep(poll_s)
    t2 = time.perf_counter()
    status = run["status"]
    if status["state"] != "SUCCEEDED":
        raise RuntimeError(f"run {name} ended {status['state']}: {status.get('message')}")
    # The chain's end is the step with the highest output (cached steps of one reconcile
    # share their start time, so time cannot tell them apart).
    last = max(status["nodes"].values(), key=lambda n: (n.get("outputs") or {}).get("Output") or 0)
    if last.get("outputs", {}).get("Output") != start + steps:
        raise RuntimeError(f"run {name}: the last step says {last.get('outputs')} (want {start + steps})")
    workloads = client.get(
        f"/api/v1/profiles/{PROFILE}/workloads",
        params={"labelSelector": f"pipelines.lumiflow.dev/run={name}", "limit": 1000},
    ).json()["items"]
    return {
        "wall_s": (_t(status["finishTime"]) or 0.0) - wall0,
        "seen_s": t2 - t0,
        "compile_s": t1 - t0,
        "t0": wall0,
        "run": run,
        "workloads": workloads,
    }


#: The stages of one lumiflow step, in order; they add up to the node's startTime → finishTime.
STAGES = (
    ("reconcile_to_workload_ms", "controller: collect the previous step, plan, create the Workload"),
    ("workload_to_admitted_ms", "scheduler: Workload stored → admitted"),
    ("admitted_to_process_ms", "Workload controller + local cluster: admitted → the step's shim started"),
    ("process_ms", "shim started → the step's process exited (fork, exec, interpreter, imports, the step)"),
    ("exit_to_reconcile_ms", "exit noticed → Workload status → PipelineRun reconcile"),
)


def lumiflow_figures(raw: dict[str, Any], steps: int) -> dict[str, Any]:
    run = raw["run"]
    status = run["status"]
    nodes = sorted(status["nodes"].values(), key=lambda n: _t(n["startTime"]) or 0.0)
    by_name = {w["metadata"]["name"]: w for w in raw["workloads"]}
    launch = [1000 * ((_t(n["finishTime"]) or 0.0) - (_t(n["startTime"]) or 0.0)) for n in nodes]
    # The next step's startTime is stamped by the reconcile that saw the previous one finish.
    gaps = [
        1000 * ((_t(b["startTime"]) or 0.0) - (_t(a["finishTime"]) or 0.0))
        for a, b in itertools.pairwise(nodes)
    ]
    stages: dict[str, list[float]] = {key: [] for key, _ in STAGES}
    for node in nodes:
        wl = by_name.get(node.get("workload") or "")
        if wl is None:
            continue
        ws = wl["status"]
        replica = (ws.get("replicas") or [{}])[0]
        marks = [
            _t(node["startTime"]),
            _t(wl["metadata"]["creationTimestamp"]),
            _t(ws.get("admittedAt")),
            _t(replica.get("startTime")),
            _t(replica.get("finishTime")),
            _t(node["finishTime"]),
        ]
        if any(m is None for m in marks):
            continue
        for (key, _), a, b in zip(STAGES, marks, marks[1:], strict=False):
            stages[key].append(1000 * (b - a))  # type: ignore[operator]
    created = _t(run["metadata"]["creationTimestamp"]) or 0.0
    figures: dict[str, Any] = {
        "wall_s": raw["wall_s"],
        "seen_s": raw["seen_s"],
        "compile_s": raw["compile_s"],
        "server_s": (_t(status["finishTime"]) or 0.0) - created,
        "steps_seen": len(nodes),
        "cached_steps": sum(1 for n in nodes if n.get("cached")),
        "processes": sum(1 for n in nodes if n.get("workload")),
        "step_launch_to_finish_p50_ms": statistics.median(launch) if launch else None,
        "step_gap_p50_ms": statistics.median(gaps) if gaps else None,
        "submit_to_first_step_ms": 1000 * ((_t(nodes[0]["startTime"]) or 0.0) - raw["t0"]) if nodes else None,
        "created_to_first_step_ms": 1000 * ((_t(nodes[0]["startTime"]) or 0.0) - created) if nodes else None,
    }
    for key, values in stages.items():
        figures[key] = statistics.median(values) if values else None
    return figures


def step_floor(work: Path, runs: int) -> dict[str, float]:
    """The step's process alone, as the shim execs it, and a bare interpreter (ms, medians)."""
    task = {
        "node": "add-one",
        "function": "add_one",
        "source": add_one.source,
        "parameters": {"x": 0},
        "artifacts": {},
        "returns": ["Output"],
        "result": str(work / "floor-result.json"),
    }
    path = work / "floor-task.json"
    path.write_text(json.dumps(task))
    env = {**clean_env(), "PYTHONUNBUFFERED": "1"}

    def timed(argv: Sequence[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, cwd=work, env=env)
        return 1000 * (time.perf_counter() - t0)

    component = [sys.executable, "-m", "lumiflow.runtime.component", str(path)]
    bare = [sys.executable, "-c", "pass"]
    timed(component)  # warm the page cache
    comp = [timed(component) for _ in range(runs)]
    plain = [timed(bare) for _ in range(runs)]
    # The least of the runs: a floor, as little disturbed by other work as this machine allows.
    result = json.loads((work / "floor-result.json").read_text())
    if result["parameters"].get("Output") != 1:
        raise RuntimeError(f"the step process answered {result}")
    return {"component_process_ms": min(comp), "bare_interpreter_ms": min(plain)}


# --- reporting -------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def ok(met: bool | None) -> str:
    if met is None:
        return "[yellow]not measured[/]"
    return "[green]met[/]" if met else "[red]NOT met[/]"


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def summarize(results: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    walls = [r["wall_s"] for r in results]
    out: dict[str, Any] = {"wall_s": statistics.median(walls), "walls_s": walls}
    out["per_step_overhead_ms"] = 1000 * (out["wall_s"] - 0.0) / steps
    for key in results[0]:
        if key != "wall_s" and isinstance(results[0][key], int | float):
            out[key] = median_of(results, key)
    return out


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="steps in the chain [20]")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side, interleaved [3]")
    ap.add_argument("--warmup-runs", type=int, default=1, help="untimed runs per side first [1]")
    ap.add_argument("--poll-ms", type=float, default=100.0, help="lumiflow: PipelineRun poll interval [100]")
    ap.add_argument(
        "--cached-repeats", type=int, default=1, help="cached re-runs per side after the priming run [1]"
    )
    ap.add_argument(
        "--floor-runs", type=int, default=10, help="runs of the step process alone (0: none) [10]"
    )
    ap.add_argument("--no-kfp", action="store_true", help="leave KFP out (lumiflow only)")
    ap.add_argument("--keep-home", action="store_true", help="keep the server's home and the KFP outputs")
    args = ap.parse_args()
    if args.steps < 2 or args.repeats < 1:
        ap.error("--steps must be ≥ 2 and --repeats ≥ 1")
    kfp_error = None
    if not args.no_kfp:
        try:
            ensure_kfp_venv()
        except (OSError, subprocess.CalledProcessError) as exc:
            kfp_error = f"cannot create {KFP_VENV.relative_to(ROOT)}: {exc}"
            console.print(f"KFP left out: {kfp_error}", style="yellow")

    load_before = os.getloadavg()[0]
    poll_s = args.poll_ms / 1000.0
    work = Path(tempfile.mkdtemp(prefix="lumibench-pipeline-"))
    errors: dict[str, str] = {"kfp_local": kfp_error} if kfp_error else {}
    runs: dict[str, list[dict[str, Any]]] = {"lumiflow": [], "kfp_local": []}
    cached: dict[str, list[dict[str, Any]]] = {"lumiflow": [], "kfp_local": []}
    kfp: KfpDriver | None = None
    floor: dict[str, float] = {}
    srv = LumiServer(keep=args.keep_home)
    try:
        srv.start()
        client = srv.client()
        console.print(f"lumiflow at {srv.url} (pid {srv.pid}); load {load_before:.2f}", style="dim")
        if not args.no_kfp and kfp_error is None:
            kfp = KfpDriver(work)
            console.print(
                f"KFP {kfp.version} local SubprocessRunner (driver pid {kfp.proc.pid})", style="dim"
            )
        console.print(
            f"[bold]{args.steps}-step chain[/], caching off: {args.warmup_runs} warm-up + {args.repeats} timed "
            "run(s) per side, interleaved lumiflow, KFP, ..."
        )
        counter = 0

        def lumi(*, start: int, caching: bool) -> dict[str, Any]:
            nonlocal counter
            counter += 1
            wait_idle(srv.pid, timeout=60)
            raw = lumiflow_run(
                client, name=f"chain-{counter}", steps=args.steps, start=start, caching=caching, poll_s=poll_s
            )
            return lumiflow_figures(raw, args.steps)

        def peer(*, start: int, caching: bool) -> dict[str, Any]:
            assert kfp is not None
            wait_idle(srv.pid, timeout=60)
            return kfp_figures(kfp.run(steps=args.steps, start=start, caching=caching), args.steps)

        sides = [("lumiflow", lumi)] + ([("kfp_local", peer)] if kfp is not None else [])
        for i in range(args.warmup_runs + args.repeats):
            timed = i >= args.warmup_runs
            for label, fn in sides:
                try:
                    res = fn(start=0, caching=False)
                except Exception as exc:
                    errors[label] = f"{type(exc).__name__}: {exc}"[:2000]
                    console.print(f"  {label} failed: {errors[label]}", style="red")
                    continue
                if timed:
                    runs[label].append(res)
                console.print(
                    f"  {'run ' + str(i - args.warmup_runs + 1) if timed else 'warm-up'}: {label}: "
                    f"{res['wall_s']:.2f} s, {1000 * res['wall_s'] / args.steps:.0f} ms/step",
                    style="dim",
                )

        console.print(
            f"[bold]cached re-run[/]: one run with caching on, then {args.cached_repeats} re-run(s)"
        )
        for label, fn in sides:
            if label == "kfp_local" and kfp is not None and not kfp.has_cache:
                continue
            try:
                first = fn(start=CACHED_START, caching=True)
                if label == "lumiflow" and first["cached_steps"]:
                    raise RuntimeError(f"the priming run had {first['cached_steps']} cached steps")
                for _ in range(args.cached_repeats):
                    res = fn(start=CACHED_START, caching=True)
                    if label == "lumiflow" and (res["cached_steps"] != args.steps or res["processes"]):
                        raise RuntimeError(
                            f"re-run: {res['cached_steps']} cached, {res['processes']} processes"
                        )
                    cached[label].append(res)
                console.print(
                    f"  {label}: priming {first['wall_s']:.2f} s, cached re-run "
                    f"{statistics.median(r['wall_s'] for r in cached[label]):.3f} s",
                    style="dim",
                )
            except Exception as exc:
                errors[f"{label}_cached"] = f"{type(exc).__name__}: {exc}"[:2000]
                console.print(f"  {label} cached failed: {errors[label + '_cached']}", style="red")
        client.close()
        if args.floor_runs > 0:
            wait_idle(srv.pid, timeout=60)
            floor = step_floor(work, args.floor_runs)
    finally:
        if kfp is not None:
            kfp.close()
        srv.stop()
        if args.keep_home:
            console.print(f"kept: {srv.tmp} (server home), {work} (KFP outputs)")
        else:
            shutil.rmtree(work, ignore_errors=True)

    summary = {k: summarize(v, args.steps) for k, v in runs.items() if v}
    cached_summary = {k: summarize(v, args.steps) for k, v in cached.items() if v}
    lf, kf = summary.get("lumiflow"), summary.get("kfp_local")
    ratio = lf["per_step_overhead_ms"] / kf["per_step_overhead_ms"] if lf and kf else None
    goal_met = None if ratio is None else ratio <= GOAL_RATIO

    names = {"lumiflow": "lumiflow", "kfp_local": "KFP local"}
    console.print(
        table(
            f"{args.steps} no-op steps in a chain, caching off: median of {args.repeats} run(s)",
            [
                "side",
                "total s",
                "runs s",
                "ms/step",
                "step p50 ms",
                "gap p50 ms",
                "→1st step ms",
                "compile ms",
            ],
            [
                [
                    names[k],
                    f"{f['wall_s']:.2f}",
                    " ".join(f"{w:.2f}" for w in f["walls_s"]),
                    f"{f['per_step_overhead_ms']:.1f}",
                    fmt(f.get("step_launch_to_finish_p50_ms")),
                    fmt(f.get("step_gap_p50_ms")),
                    fmt(f.get("submit_to_first_step_ms")),
                    fmt(1000 * f["compile_s"]),
                ]
                for k, f in summary.items()
            ],
        )
    )
    console.print(
        "ms/step: (total − the steps' own work, 0) / steps; step p50: one step's launch → finish "
        "(lumiflow: the node's startTime → finishTime; KFP: its 'Executing task' → 'finished' log "
        "records); gap: a step's finish → the next one's launch; →1st step: the clock's start → "
        "the first launch",
        style="dim",
    )
    if lf:
        rows = [[text, fmt(lf.get(key))] for key, text in STAGES]
        rows.append(
            [
                "sum: a step's launch → finish (node startTime → finishTime)",
                fmt(sum(lf.get(k) or 0 for k, _ in STAGES)),
            ]
        )
        if floor:
            rows.append(
                ["floor: python -m lumiflow.runtime.component alone", fmt(floor["component_process_ms"])]
            )
            rows.append(["floor: python -c pass", fmt(floor["bare_interpreter_ms"])])
        console.print(
            table(
                "lumiflow: where a step's time goes (p50 over the steps, median of runs)",
                ["stage", "ms"],
                rows,
            )
        )
    if cached_summary:
        console.print(
            table(
                f"cached re-run of the {args.steps}-step chain (every step from the cache, no process)",
                ["side", "total s", "ms/step", "gap p50 ms", "processes", "runs s"],
                [
                    [
                        names[k],
                        f"{f['wall_s']:.3f}",
                        f"{f['per_step_overhead_ms']:.1f}",
                        fmt(f.get("step_gap_p50_ms")),
                        fmt(f.get("processes"), ".0f"),
                        " ".join(f"{w:.3f}" for w in f["walls_s"]),
                    ]
                    for k, f in cached_summary.items()
                ],
            )
        )
    console.print(
        f"per-step overhead: lumiflow {fmt(lf['per_step_overhead_ms'] if lf else None)} ms, KFP local "
        f"{fmt(kf['per_step_overhead_ms'] if kf else None)} ms, ratio {fmt(ratio, '.2f')} "
        f"(goal ≤ {GOAL_RATIO:g}: {ok(goal_met)}); cached re-run: lumiflow "
        f"{fmt(cached_summary.get('lumiflow', {}).get('wall_s'), '.3f')} s, KFP local "
        f"{fmt(cached_summary.get('kfp_local', {}).get('wall_s'), '.3f')} s; load {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    emit_json(
        {
            "benchmark": "pipeline_bench",
            "steps": args.steps,
            "repeats": args.repeats,
            "warmup_runs": args.warmup_runs,
            "poll_ms": args.poll_ms,
            "kfp_version": kfp.version if kfp is not None else None,
            "lumiflow_per_step_ms": lf["per_step_overhead_ms"] if lf else None,
            "kfp_local_per_step_ms": kf["per_step_overhead_ms"] if kf else None,
            "lumiflow_cached_rerun_s": cached_summary.get("lumiflow", {}).get("wall_s"),
            "kfp_local_cached_rerun_s": cached_summary.get("kfp_local", {}).get("wall_s"),
            "lumiflow": summary.get("lumiflow"),
            "kfp_local": summary.get("kfp_local"),
            "cached_rerun": cached_summary,
            "floor_ms": floor or None,
            "ratio_overhead_lumiflow_to_kfp": ratio,
            "goal_ratio": GOAL_RATIO,
            "goal_met": goal_met,
            "errors": errors,
            "loadavg_1m_before": round(load_before, 2),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
