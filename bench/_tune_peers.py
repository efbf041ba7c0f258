"""The sides of ``tune_bench.py``, one run each: lumiflow's (a Katib Experiment, a TrainingJob
that reports metrics, a study through its sampler mapping) and its peers' (Ray Tune, Optuna
in-process, an MLflow tracking server in a virtualenv of its own), with what they share:
Hartmann6, the trial-timing figures and the private network namespace Ray runs in.

Not a benchmark itself (the leading underscore keeps it out of ``bench/*.py`` runs). Every
process started here is ended by its PID; the namespace's leftovers are killed by PID, and
only inside a namespace this benchmark made (so all of them are its own).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from _harness import ROOT, LumiServer, clean_env, free_port, percentile, stop_process, wait_until
from lumiflow.common.timeutil import parse_rfc3339

# --- Hartmann6 ---------------------------------------------------------------------------------

#: The standard 6-D Hartmann function on [0, 1]^6 (Dixon & Szegő 1978; constants as in
#: Surjanovic & Bingham's Virtual Library of Simulation Experiments).
HARTMANN6_ALPHA = (1.0, 1.2, 3.0, 3.2)
HARTMANN6_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
HARTMANN6_P = tuple(
    tuple(v * 1e-4 for v in row)
    for row in (
        (1312, 1696, 5569, 124, 8283, 5886),
        (2329, 4135, 8307, 3736, 1004, 9991),
        (2348, 1451, 3522, 2883, 3047, 6650),
        (4047, 8828, 8732, 5743, 1091, 381),
    )
)
HARTMANN6_OPTIMUM = -3.32237
HARTMANN6_ARGMIN = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)


def hartmann6(x: Sequence[float]) -> float:
    total = 0.0
    for alpha, a_row, p_row in zip(HARTMANN6_ALPHA, HARTMANN6_A, HARTMANN6_P, strict=True):
        inner = sum(a * (xj - p) ** 2 for a, xj, p in zip(a_row, x, p_row, strict=True))
        total += alpha * math.exp(-inner)
    return -total


# --- trial timing --------------------------------------------------------------------------------


def max_running(intervals: Sequence[tuple[float, float]]) -> int:
    """The most trials running at one instant (an end at the same instant as a start is not
    an overlap)."""
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1])
    )
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def slot_gaps(intervals: Sequence[tuple[float, float]], parallel: int) -> list[float]:
    """Per freed slot, the time from a trial's end to the start of the trial that took its
    place: with ``parallel`` slots, the (k + parallel)-th start follows the k-th end."""
    starts = sorted(s for s, _ in intervals)
    ends = sorted(e for _, e in intervals)
    return [starts[k + parallel] - ends[k] for k in range(len(starts) - parallel)]


def timing_figures(
    intervals: Sequence[tuple[float, float]], parallel: int, t0: float
) -> dict[str, float | None]:
    """Figures of one run's trials, times in seconds since the epoch, ``t0`` the submit."""
    if not intervals:
        return {}
    gaps = slot_gaps(intervals, parallel)
    durations = [e - s for s, e in intervals]
    return {
        "max_running": float(max_running(intervals)),
        "gap_p50_s": statistics.median(gaps) if gaps else None,
        "gap_max_s": max(gaps) if gaps else None,
        "first_start_s": min(s for s, _ in intervals) - t0,
        "trial_p50_s": statistics.median(durations),
    }


# --- the private network namespace (Ray) ------------------------------------------------------------

#: Set (to "1") in the benchmark re-run under ``unshare --net``.
INSIDE = "LUMIFLOW_BENCH_TUNE_NETNS"


def private_network_unavailable() -> str | None:
    """Why Ray cannot run here (it only runs in a private network namespace), or None."""
    if os.geteuid() != 0:
        return "Ray runs only in a private network namespace, which needs root (unshare --net)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"Ray runs only in a private network namespace, which needs {tool!r}"
    return None


def inside_private_network() -> bool:
    """True in a network namespace whose only interface is loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def reexec_in_private_network(script: Path) -> None:
    """Replaces this process with ``script`` (same arguments) under ``unshare --net``, with the
    namespace's loopback up. The interpreter is this one (the venv's, by its path)."""
    os.environ[INSIDE] = "1"
    os.execvp(
        "unshare",
        [
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" "$@"',
            sys.executable,
            str(script),
            *sys.argv[1:],
        ],
    )


def kill_namespace_leftovers() -> list[str]:
    """Kills, by PID, every other process in this private network namespace (all were started
    by this benchmark: the namespace is its own); returns their PIDs and names."""
    if os.environ.get(INSIDE) != "1" or not inside_private_network():
        return []
    ours = os.readlink("/proc/self/ns/net")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/net") == ours:
                pids.append(int(entry))
    named = []
    for pid in pids:
        with contextlib.suppress(OSError):
            named.append(f"{pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return named


# --- Ray Tune ------------------------------------------------------------------------------------


def ray_trainable(config: dict[str, Any]) -> None:
    """One trial: sleep, then report the objective (and the trial's own clock readings)."""
    from ray import tune

    start = time.time()
    time.sleep(config["sleep"])
    x = config["x"]
    tune.report({"loss": (x - 2.0) ** 2, "t_start": start, "t_end": time.time()})


class RayTuneSide:
    """A local Ray (2 CPUs, no dashboard) started once, Tune runs on it; :meth:`close` shuts it
    down. Only inside a private network namespace."""

    def __init__(self) -> None:
        if not inside_private_network():
            raise RuntimeError("refusing to start Ray outside a private network namespace")
        # No usage reports, no token auth; Tune's older console output, which verbose=0 silences.
        os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_AIR_NEW_OUTPUT="0")
        # Short: Ray's Unix socket paths live under it and must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="lftune-", dir="/tmp"))
        import ray
        import ray.cloudpickle
        from ray import tune  # noqa: F401 - imported before any clock runs

        # The workers do not have bench/ on their path: ship the trainable by value.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        started = time.monotonic()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            _temp_dir=str(self.root / "ray"),
            _node_ip_address="127.0.0.1",
        )
        self.init_s = time.monotonic() - started

    def run(self, *, name: str, trials: int, seconds: float, reuse_actors: bool) -> dict[str, Any]:
        from ray import tune

        t0 = time.time()
        tuner = tune.Tuner(
            ray_trainable,
            param_space={"x": tune.uniform(-5.0, 10.0), "sleep": seconds},
            tune_config=tune.TuneConfig(
                num_samples=trials,
                max_concurrent_trials=2,
                reuse_actors=reuse_actors,
                metric="loss",
                mode="min",
            ),
            run_config=tune.RunConfig(name=name, storage_path=str(self.root / "results"), verbose=0),
        )
        grid = tuner.fit()
        end = time.time()
        intervals = []
        failed = 0
        for index in range(len(grid)):
            result = grid[index]
            metrics = result.metrics or {}
            if result.error is not None or "t_start" not in metrics:
                failed += 1
                continue
            intervals.append((float(metrics["t_start"]), float(metrics["t_end"])))
        best = (
            (grid.get_best_result(metric="loss", mode="min").metrics or {}).get("loss") if intervals else None
        )
        return {
            "wall_s": end - t0,
            "succeeded": len(intervals),
            "failed": failed,
            "best": best,
            **timing_figures(intervals, 2, t0),
        }

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


# --- Optuna in-process ----------------------------------------------------------------------------


def optuna_run(*, trials: int, seconds: float, seed: int) -> dict[str, Any]:
    """``study.optimize(objective, n_trials, n_jobs=2)`` with the random sampler: the floor."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()

    def objective(trial: Any) -> float:
        start = time.time()
        x = trial.suggest_float("x", -5.0, 10.0)
        time.sleep(seconds)
        with lock:
            intervals.append((start, time.time()))
        return (x - 2.0) ** 2

    t0 = time.time()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="minimize")
    study.optimize(objective, n_trials=trials, n_jobs=2)
    end = time.time()
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "wall_s": end - t0,
        "succeeded": len(done),
        "failed": len(study.trials) - len(done),
        "best": study.best_value if done else None,
        **timing_figures(intervals, 2, t0),
    }


# --- MLflow ----------------------------------------------------------------------------------------

MLFLOW_VENV = ROOT / "bench" / ".venv-mlflow"
MLFLOW_PYTHON = MLFLOW_VENV / "bin" / "python"


def ensure_mlflow_venv(log: Callable[[str], None]) -> None:
    """Creates ``bench/.venv-mlflow`` with MLflow once (never in ``.venv``: MLflow pins
    packages the platform's test dependencies need). Needs the network the first time."""
    if (MLFLOW_VENV / "bin" / "mlflow").exists():
        return
    log(f"creating {MLFLOW_VENV.relative_to(ROOT)} with MLflow (once; pip needs the network)")
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        [str(MLFLOW_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "mlflow"],
        check=True,
    )


def mlflow_version() -> str:
    out = subprocess.run(
        [str(MLFLOW_PYTHON), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


class MlflowServer:
    """``mlflow server --workers 1`` with a SQLite backend in a temporary folder, a child of
    this benchmark in a process group of its own, stopped by that group's id (the CLI starts
    uvicorn as a child, which a signal to the CLI alone would leave running).

    MLflow's background job runner (GenAI jobs: a runner and seven huey consumers, which
    outlive the server) is switched off with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``:
    it has no part in tracking and would otherwise poll on the 2 cores both sides share."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="lumibench-mlflow-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MlflowServer:
        argv = [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "server",
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.tmp / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.tmp / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                env={**clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{tail}")
            return _http_ok(f"{self.url}/health")

        try:
            wait_until(ready, timeout=180, interval=0.25, what=f"mlflow server at {self.url}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            group = self.proc.pid  # its own session: the group id is its PID
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            stop_process(self.proc)
            with contextlib.suppress(TimeoutError):
                wait_until(
                    lambda: not _group_alive(group), timeout=10, interval=0.1, what="MLflow's processes"
                )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def mlflow_client_run(server: MlflowServer, *, calls: int, batches: int, warmup: int) -> dict[str, Any]:
    """The client loop in a subprocess of the MLflow venv; its figures back."""
    script = server.tmp / "client.py"
    script.write_text(MLFLOW_CLIENT)
    out = server.tmp / f"figures-{time.time_ns()}.json"
    env = {**clean_env(), "MLFLOW_TRACKING_URI": server.url}
    env.pop("PYTHONPATH", None)
    argv = [str(MLFLOW_PYTHON), str(script), str(calls), str(batches), str(PER_BATCH), str(warmup), str(out)]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=server.tmp, timeout=900, check=False
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"MLflow client loop failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


# --- lumiflow -------------------------------------------------------------------------------------

PROFILE = "admin"
#: Trials and replicas run the venv's interpreter by its path (``python3`` on PATH may be a
#: pyenv shim, a shell script, or another interpreter).
PYTHON = sys.executable

#: The trial's command. Besides the ``loss=`` line (the StdOut collector's), it appends its
#: own clock readings to ``times.jsonl`` beside itself (one short O_APPEND write per trial),
#: which splits the platform's trial time into launch, the objective, and collection.
OBJECTIVE = """\
import time
start = time.time()
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
time.sleep(float(args["sleep"]))
x = float(args["x"])
print(f"loss={(x - 2.0) ** 2:.8f}", flush=True)
line = json.dumps({"x": args["x"], "start": start, "end": time.time()}) + "\\n"
fd = os.open(os.path.join(os.path.dirname(__file__), "times.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(fd, line.encode())
os.close(fd)
"""

#: The Katib Experiment of the overhead part, as a Kubeflow user writes it.
EXPERIMENT = """\
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: NAME, namespace: PROFILE}
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  parallelTrialCount: 2
  maxTrialCount: TRIALS
  parameters:
  - {name: x, parameterType: double, feasibleSpace: {min: "-5", max: "10"}}
  trialTemplate:
    primaryContainerName: training-container
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            restartPolicy: Never
            containers:
            - name: training-container
              command: [PYTHON, OBJECTIVE, "--x=${trialParameters.x}", "--sleep=SECONDS"]
              resources: {requests: {cpu: "1", memory: 256Mi}}
"""

#: The ingest part's client: one Worker replica (the platform gives it its credentials).
INGEST_JOB = """\
apiVersion: lumiflow.dev/v1
kind: TrainingJob
metadata: {name: NAME, labels: {bench: tune-ingest}}
spec:
  framework: generic
  replicaSpecs:
    Worker:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - {name: main, command: COMMAND, resources: {requests: {cpu: "1", memory: 512Mi}}}
"""


def manifest(template: str, **values: Any) -> dict[str, Any]:
    """``template`` parsed, then each string value that is an upper-case placeholder replaced
    by its value (of any type), and placeholders inside longer strings by its text."""
    marks = {key.upper(): value for key, value in values.items()}

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str):
            if node in marks:
                return marks[node]
            for mark, value in marks.items():
                node = node.replace(mark, str(value))
        return node

    filled: dict[str, Any] = fill(yaml.safe_load(template))
    return filled


def epoch(value: str | None) -> float | None:
    parsed = parse_rfc3339(value)
    return parsed.timestamp() if parsed else None


def condition(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and str(c.get("status")) == "True"
        for c in obj.get("status", {}).get("conditions") or []
    )


def list_all(client: httpx.Client, path: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"labelSelector": selector, "limit": 1000}
    while True:
        r = client.get(path, params=params)
        r.raise_for_status()
        body = r.json()
        items += body.get("items", [])
        token = body.get("metadata", {}).get("continue")
        if not token:
            return items
        params["continue"] = token


def observed_best(status: dict[str, Any]) -> float | None:
    """The objective's value of ``currentOptimalTrial`` (Katib: observation.metrics[])."""
    for metric in (status.get("currentOptimalTrial") or {}).get("observation", {}).get("metrics") or []:
        if metric.get("name") == "loss":
            for key in ("min", "latest", "value"):
                try:
                    return float(metric[key])
                except (KeyError, TypeError, ValueError):
                    continue
    return None


def lumiflow_overhead(
    srv: LumiServer,
    client: httpx.Client,
    *,
    name: str,
    trials: int,
    seconds: float,
    poll_s: float,
    work: Path,
) -> dict[str, Any]:
    """POSTs the Experiment, polls it until Succeeded/Failed; figures from its status, its
    trials' start/completionTime and the objective's own clock."""
    folder = work / name
    folder.mkdir()
    objective = folder / "objective.py"
    objective.write_text(OBJECTIVE)
    body = manifest(
        EXPERIMENT,
        name=name,
        profile=PROFILE,
        trials=trials,
        python=PYTHON,
        objective=str(objective),
        seconds=f"{seconds:g}",
    )
    path = f"/api/v1/profiles/{PROFILE}/experiments/{name}"
    deadline_s = trials * seconds * 4 + 120
    t0 = time.time()
    r = client.post("/api/v1/apply", json=body)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"apply answered {r.status_code}: {r.text[:2000]}")
    obj: dict[str, Any] = {}
    while True:
        time.sleep(poll_s)
        r = client.get(path)
        if r.status_code == 200:
            obj = r.json()
            if condition(obj, "Succeeded") or condition(obj, "Failed"):
                break
        if time.time() - t0 > deadline_s:
            raise TimeoutError(f"experiment {name} not finished after {deadline_s:g} s (log {srv.log_path})")
    end = time.time()
    status = obj.get("status", {})
    listed = list_all(client, f"/api/v1/profiles/{PROFILE}/trials", f"katib.kubeflow.org/experiment={name}")
    intervals = []
    by_x: dict[str, tuple[float, float]] = {}
    for trial in listed:
        start = epoch(trial.get("status", {}).get("startTime"))
        done = epoch(trial.get("status", {}).get("completionTime"))
        if start is not None and done is not None:
            intervals.append((start, done))
            for assignment in trial.get("spec", {}).get("parameterAssignments") or []:
                if assignment.get("name") == "x":
                    by_x[str(assignment.get("value"))] = (start, done)
    completion = epoch(status.get("completionTime"))
    times = folder / "times.jsonl"
    own = (
        [json.loads(line) for line in times.read_text().splitlines() if line.strip()]
        if times.exists()
        else []
    )
    launch = [t["start"] - by_x[t["x"]][0] for t in own if t["x"] in by_x]
    collect = [by_x[t["x"]][1] - t["end"] for t in own if t["x"] in by_x]
    objective_clock = timing_figures([(float(t["start"]), float(t["end"])) for t in own], 2, t0)
    return {
        "wall_s": end - t0,
        "server_wall_s": (completion - t0) if completion else None,
        "outcome": "Succeeded" if condition(obj, "Succeeded") else "Failed",
        "succeeded": status.get("trialsSucceeded", 0),
        "failed": status.get("trialsFailed", 0),
        "trials_listed": len(listed),
        "best": observed_best(status),
        **timing_figures(intervals, 2, t0),
        # By the objective's own clock (after its interpreter started), as Ray's and Optuna's:
        **{f"objective_{k}": v for k, v in objective_clock.items()},
        # Trial startTime → the objective's first line; its last line → trial completionTime.
        "launch_p50_s": statistics.median(launch) if launch else None,
        "collect_p50_s": statistics.median(collect) if collect else None,
        "matched_trials": len(launch),
    }


def lumiflow_ingest(
    srv: LumiServer, client: httpx.Client, *, name: str, calls: int, batches: int, warmup: int, work: Path
) -> dict[str, Any]:
    """Runs the client loop as a TrainingJob replica, reads its figures, then checks that the
    job's metrics hold every point."""
    script = work / "ingest_client.py"
    script.write_text(LUMIFLOW_CLIENT)
    out = work / f"{name}.json"
    command = [PYTHON, str(script), str(calls), str(batches), str(PER_BATCH), str(warmup), str(out)]
    r = client.post("/api/v1/apply", json=manifest(INGEST_JOB, name=name, command=command))
    if r.status_code not in (200, 201):
        raise RuntimeError(f"apply answered {r.status_code}: {r.text[:2000]}")
    path = f"/api/v1/profiles/{PROFILE}/trainingjobs/{name}"

    def finished() -> str | None:
        phase = client.get(path).json().get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_until(finished, timeout=900, interval=0.5, what=f"TrainingJob {name}")
    if phase != "Succeeded" or not out.exists():
        logs = client.get(f"{path}/logs", params={"replica": "worker-0"})
        raise RuntimeError(f"ingest job {name} {phase}: {logs.text[-2000:]} (server log {srv.log_path})")
    figures: dict[str, Any] = json.loads(out.read_text())
    metrics = client.get(f"{path}/metrics")
    metrics.raise_for_status()
    points = metrics.json().get("metrics", {}).get("loss", [])
    figures.update(stored=len(points), distinct_steps=len({p.get("step") for p in points}))
    return figures


# --- the ingest client loop (both sides) ----------------------------------------------------------

PER_BATCH = 100

#: One client, ``calls`` single-metric calls then ``batches`` calls of ``per_batch`` metrics,
#: each call timed (the batch is built before its clock starts); figures written to argv[5].
CLIENT_LOOP = """\
import json, os, sys, time
SETUP
calls, batches, per_batch, warmup = (int(a) for a in sys.argv[1:5])
out = sys.argv[5]
for i in range(warmup):
    WARM
single, batched, extra = [], [], {}
t0 = time.perf_counter()
for i in range(calls):
    s = time.perf_counter()
    SINGLE
    single.append(time.perf_counter() - s)
single_s = time.perf_counter() - t0
step = calls
t0 = time.perf_counter()
for b in range(batches):
    records = [("loss", 1.0 / (step + j + 1), step + j) for j in range(per_batch)]
    payload = MAKE_BATCH
    s = time.perf_counter()
    SEND_BATCH
    batched.append(time.perf_counter() - s)
    step += per_batch
batched_s = time.perf_counter() - t0
FINISH
with open(out + ".tmp", "w") as fh:
    json.dump({"single_s": single_s, "single_call_s": single, "batched_s": batched_s,
               "batched_call_s": batched, **extra}, fh)
os.rename(out + ".tmp", out)
"""


def client_loop(**parts: str) -> str:
    text = CLIENT_LOOP
    for key, code in parts.items():
        text = text.replace(key.upper(), code)
    return text


LUMIFLOW_CLIENT = client_loop(
    setup="import lumiflow",
    warm="lumiflow.report(warmup=float(i), step=i)",
    single="lumiflow.report(loss=1.0 / (i + 1), step=i)",
    make_batch='[{"name": n, "value": v, "step": st} for n, v, st in records]',
    send_batch="lumiflow.report_many(payload)",
    finish="",
)

MLFLOW_CLIENT = client_loop(
    setup=(
        "from mlflow.entities import Metric\nfrom mlflow.tracking import MlflowClient\n"
        "client = MlflowClient()\nrun_id = client.create_run(client.create_experiment(f'tb-{time.time_ns()}')).info.run_id"
    ),
    warm='client.log_metric(run_id, "warmup", float(i), step=i)',
    single='client.log_metric(run_id, "loss", 1.0 / (i + 1), step=i)',
    make_batch="[Metric(n, v, int(time.time() * 1000), st) for n, v, st in records]",
    send_batch="client.log_batch(run_id, metrics=payload)",
    finish=(
        'points = client.get_metric_history(run_id, "loss")\n'
        "extra = {'stored': len(points), 'distinct_steps': len({p.step for p in points})}"
    ),
)


def ingest_figures(raw: dict[str, Any], *, calls: int, batches: int) -> dict[str, Any]:
    single, batched = raw["single_call_s"], raw["batched_call_s"]
    expected = calls + batches * PER_BATCH
    return {
        "calls_per_s": calls / raw["single_s"],
        "call_p50_ms": percentile(single, 50) * 1000,
        "call_p90_ms": percentile(single, 90) * 1000,
        "call_p99_ms": percentile(single, 99) * 1000,
        "call_mean_ms": raw["single_s"] / calls * 1000,
        "batched_metrics_per_s": batches * PER_BATCH / raw["batched_s"],
        "batch_p50_ms": percentile(batched, 50) * 1000,
        "batch_p99_ms": percentile(batched, 99) * 1000,
        "calls": calls,
        "batches": batches,
        "expected_points": expected,
        "stored_points": raw.get("stored"),
        "lost_points": expected - int(raw.get("distinct_steps", 0)),
    }


# --- quality: Hartmann6 through lumiflow's sampler mapping ------------------------------------------


def quality_worker_init(threads: int) -> None:
    """Each study process: ``threads`` BLAS/torch threads (1 when studies run side by side)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(threads)


def quality_study(algorithm: str, seed: int, trials: int) -> dict[str, Any]:
    """One study, ask/tell on Hartmann6, with the sampler lumiflow builds for ``algorithm``
    (its Katib name, no settings) over the space it builds from Katib-shaped parameters."""
    import optuna

    from lumiflow.tuning.algorithms import build_sampler
    from lumiflow.tuning.space import search_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parameters = [
        {"name": f"x{i}", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
        for i in range(6)
    ]
    space = search_space(parameters)
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if "parameters" in inspect.signature(build_sampler).parameters:  # grid needs them
        extra["parameters"] = parameters
    sampler = build_sampler(algorithm, {}, seed=seed, **extra)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    for _ in range(trials):
        trial = study.ask(space)
        study.tell(trial, hartmann6([float(trial.params[f"x{i}"]) for i in range(6)]))
    return {
        "algorithm": algorithm,
        "seed": seed,
        "best": study.best_value,
        "seconds": time.perf_counter() - started,
        "sampler": type(sampler).__name__,
    }
