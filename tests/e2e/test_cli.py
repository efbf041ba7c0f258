"""The CLI as users run it, against a real server process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT, free_port, lumi, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def as_json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_the_cli_round_trip(server_factory: Any, home: Path, tmp_path: Path) -> None:
    server = server_factory()
    server.start()
    # `lumi up` logged this home's CLI in as the admin.
    me = as_json(lumi("whoami", "-o", "json", home=home))
    assert me["user"] == "admin" and "admin" in me["roles"]

    applied = as_json(
        lumi("apply", "-f", str(ROOT / "examples/hello/job.yaml"), "--wait", "-o", "json", home=home)
    )
    assert applied["kind"] == "TrainingJob"
    assert applied["status"]["phase"] == "Succeeded"
    again = lumi("apply", "-f", str(ROOT / "examples/hello/job.yaml"), home=home)
    assert again.stdout.strip() == "trainingjob/hello unchanged"

    job = as_json(lumi("get", "trainingjob", "hello", "-o", "json", home=home))
    assert set(job) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert job["metadata"]["namespace"] == "admin"
    listing = as_json(lumi("get", "tj", "-o", "json", home=home))
    assert listing["kind"] == "List" and [i["metadata"]["name"] for i in listing["items"]] == ["hello"]
    as_yaml = yaml.safe_load(lumi("get", "trainingjobs", "hello", "-o", "yaml", home=home).stdout)
    assert as_yaml["metadata"]["uid"] == job["metadata"]["uid"]
    assert lumi("get", "tj", "-o", "name", home=home).stdout.strip() == "trainingjob/hello"

    table = lumi("get", "trainingjobs", home=home).stdout
    assert "hello" in table and "Succeeded" in table
    described = lumi("describe", "trainingjob", "hello", home=home).stdout
    for needle in ("Succeeded", "worker-1", "conditions", "events", "Running"):
        assert needle in described
    log = lumi("logs", "trainingjob", "hello", "--replica", "worker-1", home=home).stdout
    assert log.splitlines()[0] == "worker-1 step=0 loss=1.000"
    events = as_json(lumi("events", "trainingjob", "hello", "-o", "json", home=home))
    assert [e["reason"] for e in events["items"]][-1] == "Succeeded"
    wl = as_json(lumi("get", "workload", "hello", "-o", "json", home=home))
    assert wl["kind"] == "Workload" and wl["status"]["phase"] == "Succeeded"

    # Users, login, profiles.
    added = as_json(lumi("users", "add", "alice", "--group", "physics", "-o", "json", home=home))
    assert added["user"]["groups"] == ["physics"]
    alice_home = tmp_path / "alice"
    lumi("login", server.url, "--token", added["token"], home=alice_home)
    assert (alice_home / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert as_json(lumi("whoami", "-o", "json", home=alice_home))["user"] == "alice"
    profile = as_json(
        lumi(
            "profiles",
            "create",
            "calo",
            "--owner-group",
            "physics",
            "--cpu",
            "4",
            "--memory",
            "8Gi",
            "--max-workloads",
            "2",
            "-o",
            "json",
            home=home,
        )
    )
    assert profile["spec"]["resourceQuotaSpec"]["hard"] == {"cpu": "4", "memory": "8Gi", "workloads": "2"}
    created = as_json(
        lumi(
            "apply", "-f", str(ROOT / "examples/hello/job.yaml"), "-p", "calo", "-o", "json", home=alice_home
        )
    )
    assert created["metadata"]["namespace"] == "calo"
    lumi("profiles", "set-quota", "calo", "--cpu", "8", home=home)
    assert as_json(lumi("get", "profile", "calo", "-o", "json", home=home))["status"]["hard"]["cpu"] == 8
    tokens = as_json(lumi("tokens", "list", "-o", "json", home=alice_home))["items"]
    lumi("tokens", "revoke", tokens[0]["id"], home=alice_home)
    denied = lumi("whoami", home=alice_home, check=False)
    assert denied.returncode == 1 and "revoked" in denied.stderr

    status = lumi("status", home=home).stdout
    assert "local" in status and "admin" in status
    lumi("delete", "trainingjob", "hello", "--wait", home=home)
    gone = lumi("get", "trainingjob", "hello", home=home, check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr


def test_bad_input_on_the_command_line(server_factory: Any, home: Path, tmp_path: Path) -> None:
    server_factory().start()
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: lumiflow.dev/v1\nkind: TrainingJob\nmetadata:\n  name: [oops\n")
    result = lumi("apply", "-f", str(broken), home=home, check=False)
    assert result.returncode == 1
    assert "line" in result.stderr and "Traceback" not in result.stderr
    typo = tmp_path / "typo.yaml"
    doc = yaml.safe_load((ROOT / "examples/hello/job.yaml").read_text())
    doc["spec"]["replicaSpecs"]["Worker"]["replica"] = 2
    typo.write_text(yaml.safe_dump(doc))
    result = lumi("apply", "-f", str(typo), home=home, check=False)
    assert result.returncode == 1
    assert "spec.replicaSpecs.Worker.replica" in result.stderr and "did you mean 'replicas'" in result.stderr
    assert lumi("get", "nonsense", home=home, check=False).returncode == 1
    missing = lumi("apply", "-f", str(tmp_path / "missing.yaml"), home=home, check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert as_json(lumi("get", "tj", "-o", "json", home=home))["items"] == []


def test_up_detached_and_down(home: Path) -> None:
    port = free_port()
    up = lumi("up", "--detach", "--port", str(port), home=home, timeout=120)
    assert f"http://127.0.0.1:{port}" in up.stdout and "admin token" in up.stdout
    try:
        assert as_json(lumi("whoami", "-o", "json", home=home))["user"] == "admin"
        again = lumi("up", "--detach", "--port", str(port), home=home, check=False)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = lumi("down", home=home)
    assert "stopped" in down.stdout
    assert lumi("whoami", home=home, check=False).returncode == 1
    assert not (home / "server.json").exists()


def test_the_server_refuses_an_old_schema(home: Path) -> None:
    from lumiflow.store import migrate
    from lumiflow.store.sql import make_engine

    engine = make_engine(f"sqlite:///{home / 'lumiflow.db'}")
    migrate.upgrade(engine, "0001")
    engine.dispose()
    refused = lumi("up", "--port", str(free_port()), home=home, check=False, timeout=60)
    assert refused.returncode == 1
    assert "lumi db upgrade" in refused.stderr
    upgraded = lumi("db", "upgrade", home=home)
    assert f"0001 -> {migrate.head_revision()}" in upgraded.stdout
    port = free_port()
    lumi("up", "--detach", "--port", str(port), home=home, timeout=120)
    try:
        wait_until(lambda: lumi("whoami", home=home, check=False).returncode == 0, timeout=30)
    finally:
        lumi("down", home=home)


def test_relative_paths_resolve_next_to_the_manifest(server_factory: Any, home: Path, tmp_path: Path) -> None:
    server_factory().start()
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("import os\nprint('ran in', os.getcwd())\n")
    manifest = yaml.safe_load((ROOT / "examples/hello/job.yaml").read_text())
    container = manifest["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = ["python3", "train.py"], []
    manifest["spec"]["replicaSpecs"]["Worker"]["replicas"] = 1
    (project / "job.yaml").write_text(yaml.safe_dump(manifest))
    done = as_json(lumi("apply", "-f", str(project / "job.yaml"), "--wait", "-o", "json", home=home))
    assert done["status"]["phase"] == "Succeeded"
    assert done["metadata"]["annotations"]["lumiflow.dev/source-dir"] == str(project)
    assert lumi("logs", "trainingjob", "hello", home=home).stdout == f"ran in {project}\n"
    # Applying the same file again changes nothing.
    assert lumi("apply", "-f", str(project), home=home).stdout.strip() == "trainingjob/hello unchanged"
    # An explicit workingDir wins.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "train.py").write_text("print('elsewhere')\n")
    manifest["metadata"]["name"] = "explicit"
    container["workingDir"] = str(elsewhere)
    lumi("apply", "-f", "-", "--wait", home=home, input=yaml.safe_dump(manifest))
    assert lumi("logs", "trainingjob", "explicit", home=home).stdout == "elsewhere\n"


def test_tuning_from_the_command_line(server_factory: Any, home: Path, tmp_path: Path) -> None:
    server = server_factory()
    server.start()
    script = tmp_path / "quadratic.py"
    script.write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--x', type=float)\n"
        "a = p.parse_args()\nprint(f'step=1 loss={(a.x - 1) ** 2 + 2}')\nprint(f'step=2 loss={(a.x - 1) ** 2}')\n"
    )
    import sys

    experiment = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "quad"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {
                "algorithmName": "sobol",
                "algorithmSettings": [{"name": "random_state", "value": "1"}],
            },
            "parallelTrialCount": 2,
            "maxTrialCount": 4,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "-2", "max": "3"}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "main",
                                        "command": [sys.executable, str(script), "--x=${trialParameters.x}"],
                                    }
                                ],
                            }
                        }
                    },
                },
            },
        },
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    applied = as_json(lumi("apply", "-f", str(path), "-o", "json", home=home))
    assert applied["kind"] == "Experiment" and applied["apiVersion"] == "lumiflow.dev/v1"
    wait_until(
        lambda: (
            as_json(lumi("tune", "status", "quad", "-o", "json", home=home))["status"].get("phase")
            == "Succeeded"
        ),
        timeout=60,
        interval=0.5,
        message="the experiment to succeed",
    )
    shown = as_json(lumi("tune", "status", "quad", "-o", "json", home=home))
    assert set(shown) == {"apiVersion", "kind", "metadata", "spec", "status"}
    best = shown["status"]["currentOptimalTrial"]["bestTrialName"]
    table = lumi("tune", "status", "quad", home=home).stdout
    assert "★ best" in table and best in table and "quad-0003" in table and "Succeeded" in table
    listing = lumi("get", "experiments", home=home).stdout
    assert "quad" in listing and "sobol" in listing and "4/4 of 4" in listing
    trials = as_json(
        lumi("get", "trials", "-l", "katib.kubeflow.org/experiment=quad", "-o", "json", home=home)
    )
    assert len(trials["items"]) == 4
    series = as_json(lumi("metrics", "trial", best, "-o", "json", home=home))["metrics"]
    assert [p["step"] for p in series["loss"]] == [1, 2]
    spark = lumi("metrics", "trial", best, home=home).stdout
    assert "loss" in spark and "TREND" in spark
    missing = lumi("tune", "status", "nope", home=home, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
