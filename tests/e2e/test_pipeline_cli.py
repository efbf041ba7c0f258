"""Pipelines as users drive them: the CLI against a real server, and a server killed mid-run."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import lumi, wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

PIPELINE = textwrap.dedent(
    """
    from lumiflow import dsl
    from lumiflow.dsl import Dataset, Input, Output

    @dsl.component
    def make(n: int, marks: str, data: Output[Dataset]) -> None:
        import os
        with open(os.path.join(marks, "make"), "a") as fh:
            fh.write("ran\\n")
        with open(data.path, "w") as fh:
            fh.write("x" * n)

    @dsl.component
    def slow(data: Input[Dataset], marks: str, seconds: float) -> int:
        import os, time
        with open(os.path.join(marks, "slow"), "a") as fh:
            fh.write("started\\n")
        time.sleep(seconds)
        with open(data.path) as fh:
            return len(fh.read())

    @dsl.pipeline(name="demo")
    def demo(n: int = 3, marks: str = "/tmp", seconds: float = 0.1) -> None:
        data = make(n=n, marks=marks)
        slow(data=data.outputs["data"], marks=marks, seconds=seconds)
    """
)


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_compile_upload_run_and_trace_from_the_command_line(
    server_factory: Any, home: Path, tmp_path: Path
) -> None:
    server = server_factory()
    server.start()
    marks = tmp_path / "marks"
    marks.mkdir()
    source = tmp_path / "demo.py"
    source.write_text(PIPELINE)
    compiled = lumi("pipeline", "compile", str(source), home=home)
    assert "demo" in compiled.stdout and (tmp_path / "demo.yaml").exists()
    v1 = as_json(lumi("pipeline", "upload", str(source), "--name", "demo", "-o", "json", home=home))
    assert v1["kind"] == "PipelineVersion" and v1["spec"]["version"] == 1
    v2 = as_json(
        lumi("pipeline", "upload", str(tmp_path / "demo.yaml"), "--name", "demo", "-o", "json", home=home)
    )
    assert v2["spec"]["version"] == 2

    run = as_json(
        lumi(
            "run",
            "create",
            "demo",
            "--param",
            "n=5",
            "--param",
            f"marks={marks}",
            "--wait",
            "-o",
            "json",
            home=home,
        )
    )
    assert run["kind"] == "PipelineRun" and run["status"]["state"] == "SUCCEEDED"
    assert run["spec"]["version"] == 2 and run["spec"]["parameters"]["n"] == 5  # read as the parameter's type
    name = run["metadata"]["name"]
    table = lumi("run", "get", name, home=home).stdout
    assert "make" in table and "slow" in table and "SUCCEEDED" in table
    log = lumi("run", "logs", name, "--step", "slow", home=home).stdout
    assert "runs slow()" in log
    slow = next(v for k, v in run["status"]["nodes"].items() if v["task"] == "slow")
    assert slow["outputs"]["Output"] == 5
    data_uri = next(v for v in run["status"]["nodes"].values() if v["task"] == "make")["outputs"]["data"][
        "artifact"
    ]["uri"]
    graph = as_json(lumi("lineage", data_uri, "--downstream", "-o", "json", home=home))
    assert {x["name"] for x in graph["executions"]} == {f"{name}/slow"}
    tree = lumi("lineage", data_uri, home=home).stdout
    assert "make" in tree and "Dataset" in tree

    retried = as_json(lumi("run", "retry", name, "-o", "json", home=home))
    assert retried["metadata"]["name"] != name
    listing = lumi("run", "list", home=home).stdout
    assert name in listing and retried["metadata"]["name"] in listing

    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('no pipeline here')\n")
    failed = lumi("pipeline", "compile", str(bad), home=home, check=False)
    assert failed.returncode != 0 and "no pipeline here" in failed.stderr and "Traceback" not in failed.stderr
    unknown = lumi("run", "create", "demo", "--param", "nope=1", home=home, check=False)
    assert unknown.returncode != 0 and "no parameter 'nope'" in unknown.stderr


def test_a_server_killed_mid_run_finishes_the_run_without_running_a_step_twice(
    server_factory: Any, home: Path, tmp_path: Path
) -> None:
    from lumiflow.pipelines import compiler

    server = server_factory()
    server.start()
    marks = tmp_path / "marks"
    marks.mkdir()
    source = tmp_path / "demo_restart.py"
    source.write_text(PIPELINE)
    spec = compiler.compile(compiler.load_pipeline_file(str(source))).model_dump(
        mode="json", exclude_none=True
    )
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "survives"},
        "spec": {"pipelineSpec": spec, "parameters": {"marks": str(marks), "seconds": 3.0}},
    }
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
        assert api.post("/api/v1/profiles/admin/pipelineruns", json=doc).status_code == 201
        wait_until((marks / "slow").exists, timeout=60, message="the slow step to start")
    server.kill(signal.SIGKILL)
    server.start()
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:

        def finished() -> dict[str, Any] | None:
            run = api.get("/api/v1/profiles/admin/pipelineruns/survives").json()
            return run if run["status"].get("state") in ("SUCCEEDED", "FAILED") else None

        run = wait_until(finished, timeout=90, interval=0.3, message="the run to finish after the restart")
    assert run["status"]["state"] == "SUCCEEDED", run["status"]
    assert (marks / "make").read_text() == "ran\n"  # not run again
    assert (marks / "slow").read_text() == "started\n"  # re-attached, not restarted
    assert all(n.get("attempts", 0) <= 1 for n in run["status"]["nodes"].values())
