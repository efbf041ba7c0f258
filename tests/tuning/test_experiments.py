"""Katib Experiments end to end through the API: real trials as processes on the local cluster."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.tuning.experiments import (
    BRANIN,
    CURVE,
    experiment,
    get_experiment,
    python,
    trials,
    wait_experiment,
    write_script,
)

BRANIN_OPTIMUM = 0.397887
BRANIN_SPACE = [
    {"name": "x1", "parameterType": "double", "feasibleSpace": {"min": "-5", "max": "10"}},
    {"name": "x2", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "15"}},
]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _max_overlap(items: list[dict[str, Any]]) -> int:
    marks = []
    for t in items:
        marks.append((_time(t["status"]["startTime"]), 1))
        marks.append((_time(t["status"]["completionTime"]), -1))
    running = peak = 0
    for _, delta in sorted(marks, key=lambda m: (m[0], m[1])):
        running += delta
        peak = max(peak, running)
    return peak


def _apply(api: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    r = api.request("POST", "/api/v1/apply", json=manifest)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.mark.timeout(180)
def test_branin_with_tpe_finds_the_optimum_two_trials_at_a_time(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "branin.py", BRANIN)
    manifest = experiment(
        "branin",
        parameters=BRANIN_SPACE,
        command=python(script, "--x1=${trialParameters.x1}", "--x2=${trialParameters.x2}"),
        metric="branin",
        algorithm="tpe",
        # Seed and settings checked against every order in which two parallel trials can end
        # (the sampler sees one or both finished): all reach the optimum within 0.6.
        settings={"random_state": "36", "n_startup_trials": "3", "gamma": "0.25", "prior_weight": "0.5"},
        parallel=2,
        max_trials=20,
    )
    _apply(api, manifest)
    exp = wait_experiment(api, "branin", timeout=150)
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    assert status["reason"] == "ExperimentMaxTrialsReached"
    assert status["trials"] == 20 and status["trialsSucceeded"] == 20
    done = trials(api, "branin")
    assert sorted(t["metadata"]["name"] for t in done) == [f"branin-{i:04d}" for i in range(20)]
    assert _max_overlap(done) <= 2
    best = status["currentOptimalTrial"]
    value = float(best["observation"]["metrics"][0]["latest"])
    assert abs(value - BRANIN_OPTIMUM) < 1.0, best
    values = {t["metadata"]["name"]: float(t["status"]["observation"]["metrics"][0]["latest"]) for t in done}
    assert value == min(values.values())
    assert best["bestTrialName"] == min(values, key=values.__getitem__)
    assigned = {a["name"]: float(a["value"]) for a in best["parameterAssignments"]}
    assert -5 <= assigned["x1"] <= 10 and 0 <= assigned["x2"] <= 15


@pytest.mark.timeout(60)
def test_reaching_the_goal_ends_the_experiment(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "branin.py", BRANIN)
    manifest = experiment(
        "goal",
        parameters=BRANIN_SPACE,
        command=python(script, "--x1=${trialParameters.x1}", "--x2=${trialParameters.x2}"),
        metric="branin",
        goal=1000.0,  # any point of the domain reaches it
        parallel=1,
        max_trials=10,
    )
    _apply(api, manifest)
    status = wait_experiment(api, "goal", timeout=40)["status"]
    assert status["phase"] == "Succeeded"
    assert status["reason"] == "ExperimentGoalReached"
    assert "reached the goal" in status["message"]
    assert status["trials"] < 10


@pytest.mark.timeout(60)
def test_failing_trials_fail_the_experiment_past_max_failed_trial_count(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "fail.py", "import sys\nprint('loss=1')\nsys.exit(1)\n")
    manifest = experiment(
        "failing",
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}
        ],
        command=python(script, "--lr=${trialParameters.lr}"),
        parallel=1,
        max_trials=10,
        max_failed=2,
    )
    _apply(api, manifest)
    status = wait_experiment(api, "failing", timeout=40)["status"]
    assert status["phase"] == "Failed"
    assert status["reason"] == "ExperimentMaxFailedTrialsReached"
    assert "more than maxFailedTrialCount 2" in status["message"]
    assert status["trialsFailed"] == 3 and status["trials"] == 3
    failed = trials(api, "failing")[0]["status"]
    assert failed["phase"] == "Failed" and "failed" in failed["message"]


@pytest.mark.timeout(60)
def test_a_trial_that_reports_no_objective_is_metrics_unavailable(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "quiet.py", "print('accuracy=0.5 done')\n")
    manifest = experiment(
        "quiet",
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}
        ],
        command=python(script, "--lr=${trialParameters.lr}"),
        parallel=1,
        max_trials=3,
        max_failed=0,
    )
    _apply(api, manifest)
    status = wait_experiment(api, "quiet", timeout=40)["status"]
    assert status["phase"] == "Failed"
    assert status["trialMetricsUnavailable"] == 1
    trial = trials(api, "quiet")[0]["status"]
    assert trial["phase"] == "MetricsUnavailable"
    assert "reported no 'loss'" in trial["message"]


@pytest.mark.timeout(60)
def test_metrics_printed_just_before_exit_are_not_lost(api: Any, tmp_path: Path) -> None:
    """Katib's sidecar races the container's end (katib#1795): here the log is read after."""
    script = write_script(
        tmp_path,
        "burst.py",
        "import os, sys\nfor i in range(1, 2001):\n    sys.stdout.write(f'step={i} loss={1.0 / i}\\n')\nos._exit(0)\n",
    )
    manifest = experiment(
        "burst",
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}
        ],
        command=python(script, "--lr=${trialParameters.lr}"),
        parallel=1,
        max_trials=1,
    )
    _apply(api, manifest)
    status = wait_experiment(api, "burst", timeout=40)["status"]
    assert status["trialsSucceeded"] == 1
    metrics = status["currentOptimalTrial"]["observation"]["metrics"][0]
    assert float(metrics["min"]) == pytest.approx(1.0 / 2000)
    assert float(metrics["max"]) == 1.0
    r = api.request("GET", "/api/v1/profiles/admin/trials/burst-0000/metrics")
    assert r.status_code == 200, r.text
    series = r.json()["metrics"]["loss"]
    assert [p["step"] for p in series] == list(range(1, 2001))


def _pids_of(api: Any, name: str) -> list[int]:
    r = api.request("GET", f"/api/v1/profiles/admin/workloads/{name}")
    if r.status_code != 200:
        return []
    return [int(rep["pid"]) for rep in r.json()["status"].get("replicas", []) if rep.get("pid")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("algorithm", "settings", "early"),
    [
        (
            "grid",
            {"random_state": "3"},
            {
                "algorithmName": "medianstop",
                "algorithmSettings": [
                    {"name": "min_trials_required", "value": "2"},
                    {"name": "start_step", "value": "2"},
                ],
            },
        ),
        ("hyperband", {"resource_name": "epoch", "eta": "2", "max_resource": "2", "random_state": "4"}, None),
    ],
    ids=["medianstop", "hyperband"],
)
def test_early_stopping_stops_poor_trials_and_their_processes(
    api: Any, tmp_path: Path, algorithm: str, settings: dict[str, str], early: dict[str, Any] | None
) -> None:
    script = write_script(tmp_path, "curve.py", CURVE)
    qualities = ["0.9", "0.95", "0.1", "0.05", "0.2"]
    manifest = experiment(
        "stopping",
        parameters=[
            {"name": "quality", "parameterType": "categorical", "feasibleSpace": {"list": qualities}}
        ],
        command=python(script, "--quality=${trialParameters.quality}", "--epochs=10", "--sleep=0.4"),
        algorithm=algorithm,
        settings=settings,
        parallel=1,
        max_trials=5,
        early_stopping=early,
    )
    _apply(api, manifest)
    status = wait_experiment(api, "stopping", timeout=100)["status"]
    assert status["phase"] == "Succeeded", status
    all_trials = trials(api, "stopping")
    stopped = [t for t in all_trials if t["status"]["phase"] == "EarlyStopped"]
    assert stopped, [(t["metadata"]["name"], t["status"]) for t in all_trials]
    best = float(status["currentOptimalTrial"]["observation"]["metrics"][0]["min"])
    for t in stopped:
        quality = float(t["spec"]["parameterAssignments"][0]["value"])
        assert quality <= 0.2, t
        name = t["metadata"]["name"]
        log = api.request("GET", f"/api/v1/profiles/admin/trials/{name}/logs").text
        assert "epoch=10 " not in log  # stopped before its end
        job = api.request("GET", f"/api/v1/profiles/admin/trainingjobs/{name}").json()
        assert job["status"]["phase"] == "Suspended"
        for pid in _pids_of(api, name):
            wait_until(lambda pid=pid: not _alive(pid), timeout=20, message=f"replica {pid} of {name} to end")
        observed = float(t["status"]["observation"]["metrics"][0]["min"])
        assert observed > best
    assert status["trialsEarlyStopped"] == len(stopped)


@pytest.mark.timeout(60)
def test_several_objectives_give_a_pareto_front(api: Any, tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "two.py",
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--x', type=float)\n"
        "a = p.parse_args()\nprint(f'f1={a.x ** 2} f2={(a.x - 2) ** 2}')\n",
    )
    manifest = experiment(
        "pareto",
        parameters=[{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "-1", "max": "3"}}],
        command=python(script, "--x=${trialParameters.x}"),
        metric="f1",
        algorithm="nsga2",
        settings={"population_size": "4", "random_state": "1"},
        parallel=2,
        max_trials=8,
        objective_extra={"additionalObjectives": [{"objectiveMetricName": "f2", "type": "minimize"}]},
    )
    _apply(api, manifest)
    status = wait_experiment(api, "pareto", timeout=50)["status"]
    assert status["phase"] == "Succeeded"
    front = status["paretoFront"]
    assert front

    def point(entry: dict[str, Any]) -> tuple[float, float]:
        m = {x["name"]: float(x["min"]) for x in entry["observation"]["metrics"]}
        return m["f1"], m["f2"]

    points = [point(e) for e in front]
    everything = []
    for t in trials(api, "pareto"):
        obs = t["status"].get("observation") or {}
        m = {x["name"]: float(x["min"]) for x in obs.get("metrics", [])}
        if "f1" in m and "f2" in m:
            everything.append((m["f1"], m["f2"]))
    for p in points:  # nothing dominates a point of the front
        assert not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in everything)
    for q in everything:  # every other point is dominated by (or equal to) one of the front
        assert any(p[0] <= q[0] and p[1] <= q[1] for p in points)


@pytest.mark.timeout(60)
def test_the_file_collector_reads_json_lines(api: Any, tmp_path: Path) -> None:
    out = tmp_path / "metrics.jsonl"
    writer = write_script(
        tmp_path,
        "writer.py",
        "import json, sys\nwith open(sys.argv[1], 'w') as fh:\n"
        "    for i in range(1, 4):\n        fh.write(json.dumps({'step': i, 'loss': str(1.0 / i)}) + '\\n')\n",
    )
    manifest = experiment(
        "filed",
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}
        ],
        command=python(writer, str(out)),
        trial_parameters=[],
        parallel=1,
        max_trials=1,
        collector={
            "collector": {"kind": "File"},
            "source": {"fileSystemPath": {"path": str(out), "kind": "File", "format": "JSON"}},
        },
    )
    _apply(api, manifest)
    status = wait_experiment(api, "filed", timeout=40)["status"]
    assert status["trialsSucceeded"] == 1, status
    metric = status["currentOptimalTrial"]["observation"]["metrics"][0]
    assert float(metric["min"]) == pytest.approx(1 / 3) and float(metric["max"]) == 1.0


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            lambda s: s["algorithm"].update(algorithmName="simulated-annealing"),
            "spec.algorithm.algorithmName",
            "unknown algorithm",
        ),
        (
            lambda s: s["algorithm"].update(algorithmSettings=[{"name": "n_trees", "value": "3"}]),
            "spec.algorithm.algorithmSettings",
            "no setting 'n_trees'",
        ),
        (
            lambda s: s["parameters"][0]["feasibleSpace"].update(min="0.5", max="0.1"),
            "spec.parameters[0].feasibleSpace",
            "greater than max",
        ),
        (
            lambda s: s["parameters"][0]["feasibleSpace"].update(step="0"),
            "spec.parameters[0].feasibleSpace.step",
            "greater than 0",
        ),
        (
            lambda s: s["parameters"][0]["feasibleSpace"].update(step="-1"),
            "spec.parameters[0].feasibleSpace.step",
            "greater than 0",
        ),
        (
            lambda s: s["parameters"].append(
                {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": []}}
            ),
            "spec.parameters[1].feasibleSpace.list",
            "non-empty list",
        ),
        (
            lambda s: s["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
                "command"
            ].append("--x=${trialParameters.x}"),
            "spec.trialTemplate.trialSpec",
            "${trialParameters.x} is not defined",
        ),
        (
            lambda s: s["trialTemplate"]["trialSpec"].update(kind="Deployment", apiVersion="apps/v1"),
            "spec.trialTemplate.trialSpec",
            "Deployment",
        ),
        (lambda s: s["objective"].update(type="minimise"), "spec.objective.type", "minimize"),
        (lambda s: s.update(parallelTrialCount=0), "spec.parallelTrialCount", "greater than or equal to 1"),
        (
            lambda s: s["algorithm"].update(algorithmName="enas"),
            "spec.algorithm.algorithmName",
            "not offered",
        ),
    ],
    ids=[
        "unknown-algorithm",
        "unknown-setting",
        "min-above-max",
        "zero-step",
        "negative-step",
        "empty-categorical",
        "undefined-placeholder",
        "not-a-training-job",
        "objective-type",
        "no-parallelism",
        "nas",
    ],
)
def test_bad_experiments_are_refused_with_the_field_and_change_nothing(
    api: Any, change: Any, field: str, words: str
) -> None:
    manifest = experiment(
        "bad",
        parameters=[
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.1"}}
        ],
        command=["python3", "-c", "print('loss=1')", "--lr=${trialParameters.lr}"],
    )
    change(manifest["spec"])
    r = api.request("POST", "/api/v1/apply", json=manifest)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"].startswith(field), body
    assert words in body["message"], body
    assert api.request("GET", "/api/v1/profiles/admin/experiments/bad").status_code == 404
    assert api.request("GET", "/api/v1/profiles/admin/trials").json()["items"] == []


def test_katib_numbers_as_strings_and_hyphenated_names_are_accepted(api: Any) -> None:
    manifest = experiment(
        "katib-shape",
        parameters=[
            {"name": "num-layers", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "5"}},
            {
                "name": "lr",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
            },
            {
                "name": "momentum",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.5", "max": "0.99", "distribution": "normal"},
            },
            {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}},
            {"name": "batch", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32", "64"]}},
        ],
        command=["python3", "-c", "print('loss=1')"],
        max_trials=1,
    )
    manifest["spec"]["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": 3}]
    created = _apply(api, manifest)
    assert created["apiVersion"] == "lumiflow.dev/v1" and created["kind"] == "Experiment"
    assert created["spec"]["parameters"][0]["feasibleSpace"]["min"] == "2"
    again = api.request("POST", "/api/v1/apply", json=manifest)
    assert again.status_code == 200, again.text  # the same manifest again is a no-op
    assert again.json()["metadata"]["generation"] == created["metadata"]["generation"]
    exp = wait_until(
        lambda: (e := get_experiment(api, "katib-shape"))["status"].get("trials") and e,
        timeout=20,
        message="a trial",
    )
    trial = trials(api, exp["metadata"]["name"])[0]
    values = {a["name"]: a["value"] for a in trial["spec"]["parameterAssignments"]}
    assert 2 <= int(values["num-layers"]) <= 5
    assert 0.001 <= float(values["lr"]) <= 0.1
    assert 0.5 <= float(values["momentum"]) <= 0.99
    assert values["optimizer"] in ("sgd", "adam") and values["batch"] in ("16", "32", "64")
    assert json.loads(json.dumps(trial["spec"]["samplerAttrs"]))  # the sampler's notes are plain JSON


def _resumable(name: str, script: Path, policy: str | None) -> dict[str, Any]:
    manifest = experiment(
        name,
        parameters=BRANIN_SPACE,
        command=python(script, "--x1=${trialParameters.x1}", "--x2=${trialParameters.x2}"),
        metric="branin",
        algorithm="tpe",
        parallel=2,
        max_trials=2,
    )
    if policy is not None:
        manifest["spec"]["resumePolicy"] = policy
    return manifest


def _with_budget(manifest: dict[str, Any], budget: int) -> dict[str, Any]:
    changed = json.loads(json.dumps(manifest))
    changed["spec"]["maxTrialCount"] = budget
    return changed


@pytest.mark.timeout(120)
def test_a_long_running_experiment_restarts_when_its_budget_is_raised(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "branin.py", BRANIN)
    manifest = _resumable("resume", script, "LongRunning")
    _apply(api, manifest)
    first = wait_experiment(api, "resume", timeout=60)["status"]
    assert (first["phase"], first["reason"], first["trials"]) == (
        "Succeeded",
        "ExperimentMaxTrialsReached",
        2,
    )

    r = api.request("POST", "/api/v1/apply", json=manifest)  # unchanged: nothing to refuse or do
    assert r.status_code == 200, r.text
    assert r.json()["status"]["phase"] == "Succeeded"
    r = api.request("POST", "/api/v1/apply", json=_with_budget(manifest, 1))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "spec.maxTrialCount", r.json()
    assert "more than the 2 trials it has run" in r.json()["message"], r.json()
    r = api.request("POST", "/api/v1/apply", json=_with_budget(manifest, 5))
    assert r.status_code == 200, r.text

    def resumed() -> dict[str, Any] | None:
        status = get_experiment(api, "resume")["status"]
        done = status.get("phase") == "Succeeded" and status.get("trials") == 5
        return status if done else None

    status = wait_until(resumed, timeout=60, interval=0.2, message="the experiment to run 5 trials")
    assert status["reason"] == "ExperimentMaxTrialsReached"
    names = [t["metadata"]["name"] for t in trials(api, "resume")]
    assert len(names) == len(set(names)) == 5
    assert all(t["status"]["phase"] == "Succeeded" for t in trials(api, "resume"))
    events = api.request("GET", "/api/v1/profiles/admin/experiments/resume/events").json()["items"]
    assert any(e["reason"] == "Restarted" and "maxTrialCount is now 5" in e["message"] for e in events), (
        events
    )


@pytest.mark.timeout(120)
def test_an_ended_experiment_that_cannot_restart_refuses_changes(api: Any, tmp_path: Path) -> None:
    script = write_script(tmp_path, "branin.py", BRANIN)
    manifest = _resumable("never", script, None)  # Katib's default: Never
    _apply(api, manifest)
    before = wait_experiment(api, "never", timeout=60)

    r = api.request("POST", "/api/v1/apply", json=_with_budget(manifest, 4))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == "spec.maxTrialCount", body
    assert "cannot be restarted" in body["message"], body
    assert "resumePolicy is Never" in body["message"], body
    changed = json.loads(json.dumps(manifest))
    changed["spec"]["resumePolicy"] = "LongRunning"  # not a way around it: the policy is fixed
    r = api.request("POST", "/api/v1/apply", json=changed)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "spec.resumePolicy", r.json()

    after = get_experiment(api, "never")
    assert after["spec"]["maxTrialCount"] == 2
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(trials(api, "never")) == 2
