"""Pipeline runs end to end through the API: every step a real process on the local cluster."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lumiflow.pipelines import compiler
from tests.helpers import wait_until
from tests.pipelines import pipelines_for_tests as p

pytestmark = pytest.mark.timeout(120)


def spec_of(func: Any) -> dict[str, Any]:
    return compiler.compile(func).model_dump(mode="json", exclude_none=True)


def start(api: Any, func: Any, name: str, **parameters: Any) -> dict[str, Any]:
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipelineSpec": spec_of(func), "parameters": parameters},
    }
    r = api.request("POST", "/api/v1/profiles/admin/pipelineruns", json=doc)
    assert r.status_code == 201, r.text
    return dict(r.json())


def finished(api: Any, name: str, timeout: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = api.request("GET", f"/api/v1/profiles/admin/pipelineruns/{name}").json()
        return run if run["status"].get("state") in ("SUCCEEDED", "FAILED", "CANCELED") else None

    return wait_until(done, timeout=timeout, interval=0.2, message=f"run {name} to finish")


def _t(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_conditions_loops_and_the_exit_handler(api: Any, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    start(api, p.control_flow, "flow", n=5, marks=str(marks))
    run = finished(api, "flow")
    status = run["status"]
    assert status["state"] == "SUCCEEDED", status
    nodes = status["nodes"]
    states = {k: v["state"] for k, v in nodes.items()}
    big = [k for k in nodes if k.endswith("big")]
    small = [k for k in nodes if k.endswith("small") or "small" in k]
    assert big and all(states[k] == "SUCCEEDED" for k in big), states
    # The Else branch's group is skipped, its step never started.
    skipped = [k for k, v in states.items() if v == "SKIPPED"]
    assert skipped and not any(nodes[k].get("workload") for k in small), states
    assert nodes[big[0]]["outputs"]["Output"] == "big 5"
    # Never more than 2 loop iterations at once (the steps' own start/end marks).
    events = []
    for f in marks.iterdir():
        events.append((f.stat().st_mtime, 1 if f.name.endswith(".start") else -1))
    running = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        running += d
        peak = max(peak, running)
    assert len(events) == 10 and peak <= 2
    totals = [v for k, v in nodes.items() if k.endswith("total")]
    assert totals[0]["outputs"]["Output"] == 1 + 4 + 9 + 16 + 25
    exits = [v for k, v in nodes.items() if k.endswith("announce")]
    assert exits[0]["state"] == "SUCCEEDED"


def test_a_failing_step_fails_the_run_with_its_traceback_and_the_exit_step_still_runs(api: Any) -> None:
    start(api, p.failing, "fails", n=7)
    status = finished(api, "fails")["status"]
    assert status["state"] == "FAILED"
    nodes = status["nodes"]
    boom = next(v for k, v in nodes.items() if k.endswith("boom"))
    assert boom["state"] == "FAILED" and "exit code 1" in boom["message"]
    log = api.request("GET", f"/api/v1/profiles/admin/workloads/{boom['workload']}/logs").text
    assert "Traceback (most recent call last)" in log and "ValueError: boom at 7" in log
    cleanup = next(v for k, v in nodes.items() if k.endswith("announce"))
    assert cleanup["state"] == "SUCCEEDED"


def test_set_retry_retries_a_failing_step(api: Any, tmp_path: Path) -> None:
    start(api, p.retrying, "retried", counter=str(tmp_path / "c1"), fail_times=2)
    node = next(iter(finished(api, "retried")["status"]["nodes"].values()))
    assert node["state"] == "SUCCEEDED" and node["attempts"] == 3 and node["outputs"]["Output"] == 3
    start(api, p.retrying, "exhausted", counter=str(tmp_path / "c2"), fail_times=5)
    status = finished(api, "exhausted")["status"]
    node = next(iter(status["nodes"].values()))
    assert status["state"] == "FAILED" and node["attempts"] == 3
    assert (tmp_path / "c2").read_text() == "3"  # ran exactly 1 + 2 retries


def test_caching_skips_unchanged_steps_and_reruns_what_changed(api: Any) -> None:
    start(api, p.cached, "first", n=4, lr=0.1)
    first = finished(api, "first")["status"]
    assert first["state"] == "SUCCEEDED"
    assert not any(n.get("cached") for n in first["nodes"].values())
    workloads_before = len(api.request("GET", "/api/v1/profiles/admin/workloads").json()["items"])

    start(api, p.cached, "second", n=4, lr=0.1)
    second = finished(api, "second")["status"]
    assert second["state"] == "SUCCEEDED"
    assert all(n.get("cached") for n in second["nodes"].values()), second["nodes"]
    assert all(not n.get("workload") for n in second["nodes"].values())  # no process started
    assert len(api.request("GET", "/api/v1/profiles/admin/workloads").json()["items"]) == workloads_before
    for key, node in second["nodes"].items():
        assert node["outputs"] == first["nodes"][key]["outputs"]
        assert "cached" in node["message"]

    start(api, p.cached, "third", n=4, lr=0.5)  # only train's input changed
    third = finished(api, "third")["status"]["nodes"]
    by_task = {v["task"]: v for v in third.values()}
    assert by_task["make-lines"]["cached"] is True
    assert not by_task["train"].get("cached") and by_task["train"]["workload"]

    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "uncached"},
        "spec": {"pipelineSpec": spec_of(p.cached), "parameters": {"n": 4, "lr": 0.1}, "caching": False},
    }
    assert api.request("POST", "/api/v1/profiles/admin/pipelineruns", json=doc).status_code == 201
    nodes = finished(api, "uncached")["status"]["nodes"]
    assert not any(n.get("cached") for n in nodes.values())


def test_artifacts_carry_digests_and_lineage_leads_back_to_the_data(api: Any) -> None:
    start(api, p.cached, "lineage", n=3, lr=0.2)
    nodes = finished(api, "lineage")["status"]["nodes"]
    by_task = {v["task"]: v for v in nodes.values()}
    model = by_task["train"]["outputs"]["model"]["artifact"]
    data = by_task["make-lines"]["outputs"]["data"]["artifact"]
    assert model["digest"].startswith("sha256:") and model["size"] > 0
    assert data["metadata"] == {"lines": 3}
    metrics = by_task["train"]["outputs"]["metrics"]["artifact"]
    assert metrics["metadata"]["score"] == pytest.approx(1 / 1.2)
    graph = api.request(
        "GET", "/api/v1/profiles/admin/lineage", params={"uri": model["uri"], "direction": "upstream"}
    ).json()
    uris = {a["uri"] for a in graph["artifacts"]}
    assert data["uri"] in uris
    steps = {x["name"] for x in graph["executions"]}
    assert {"lineage/" + k for k in nodes if nodes[k]["task"] in ("train", "make-lines")} <= steps
    down = api.request(
        "GET", "/api/v1/profiles/admin/lineage", params={"uri": data["uri"], "direction": "downstream"}
    ).json()
    assert model["uri"] in {a["uri"] for a in down["artifacts"]}
    # Another user cannot see the profile's lineage.
    other = api.add_user("mallory", "elsewhere")
    r = api.request("GET", "/api/v1/profiles/admin/lineage", params={"uri": model["uri"]}, token=other)
    assert r.status_code == 404


def test_bad_runs_are_refused_with_the_field(api: Any) -> None:
    spec = spec_of(p.cached)
    base = {"apiVersion": "lumiflow.dev/v1", "kind": "PipelineRun", "metadata": {"name": "bad"}}
    cases = [
        ({"pipelineSpec": spec, "parameters": {"nope": 1}}, "spec.parameters.nope", "no parameter 'nope'"),
        ({"pipelineSpec": spec, "parameters": {"n": "many"}}, "spec.parameters.n", "expected int"),
        ({"pipeline": "missing"}, "spec.pipeline", "no pipeline 'missing'"),
        ({}, "spec.pipeline", "spec.pipeline"),
    ]
    cyclic = spec_of(p.cached)
    tasks = cyclic["root"]["tasks"]
    first, second = sorted(tasks)
    tasks[first]["dependsOn"] = [second]
    tasks[second]["dependsOn"] = [first]
    cases.append(({"pipelineSpec": cyclic}, "spec.pipelineSpec", "cycle"))
    for body, field, words in cases:
        r = api.request("POST", "/api/v1/profiles/admin/pipelineruns", json={**base, "spec": body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"].startswith(field) and words in r.json()["message"], r.json()
    assert api.request("GET", "/api/v1/profiles/admin/pipelineruns").json()["items"] == []


def test_terminate_cancels_a_running_run(api: Any, tmp_path: Path) -> None:
    marks = tmp_path / "m"
    marks.mkdir()
    start(api, p.control_flow, "stopped", n=5, marks=str(marks))
    wait_until(lambda: any(marks.iterdir()), timeout=60, message="a loop step to start")

    def terminate() -> bool:
        # The controller writes the run's status as steps move on: a stale resourceVersion is
        # refused (409) and the client reads the run again, as the API's message says.
        run = api.request("GET", "/api/v1/profiles/admin/pipelineruns/stopped").json()
        run["spec"]["terminate"] = True
        r = api.request("PUT", "/api/v1/profiles/admin/pipelineruns/stopped", json=run)
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200

    wait_until(terminate, timeout=30, message="the terminate request to be taken")
    status = finished(api, "stopped")["status"]
    assert status["state"] == "CANCELED"
    assert any(n["state"] == "CANCELED" for n in status["nodes"].values())
    started = {f.name.split(".")[0] for f in marks.iterdir()}
    assert len(started) < 5  # the rest never ran
