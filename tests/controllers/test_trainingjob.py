"""A TrainingJob's life with real processes: success, restart policies, deadlines, TTL,
suspend, deletion. Each test follows the job through the HTTP API, as a user would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ApiHarness
from tests.helpers import pid_alive, wait_until
from tests.jobs import events, get_job, job_manifest, logs, submit, wait_phase

pytestmark = pytest.mark.timeout(60)


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_job_succeeds_with_kubeflow_status(api: ApiHarness) -> None:
    script = (
        "import os; print('hello from', os.environ['LUMIFLOW_REPLICA_NAME'], os.environ['LUMIFLOW_POD_NAME'])"
    )
    submit(api, job_manifest("ok", script, replicas=2))
    job = wait_phase(api, "ok")
    status = job["status"]
    assert status["phase"] == "Succeeded"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Created": "True", "Running": "False", "Succeeded": "True"}
    assert status["replicaStatuses"] == {"Worker": {"active": 0, "succeeded": 2, "failed": 0}}
    assert status["startTime"] <= status["completionTime"]
    assert [r["name"] for r in status["replicas"]] == ["worker-0", "worker-1"]
    assert logs(api, "ok", "worker-1") == "hello from worker-1 ok-worker-1\n"
    reasons = [e["reason"] for e in events(api, "ok")]
    assert reasons == ["Created", "Running", "Succeeded"]


def test_on_failure_restarts_exactly_backoff_limit_times_then_fails(api: ApiHarness, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    script = f"open({str(runs)!r}, 'a').write('run\\n'); raise SystemExit(1)"
    submit(api, job_manifest("flaky", script, restart="OnFailure", run_policy={"backoffLimit": 2}))
    job = wait_phase(api, "flaky", "Failed")
    assert count_lines(runs) == 3  # the first run and exactly two restarts
    assert job["status"]["restartCount"] == 2
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exited with code 1" in failed["message"]
    reasons = [e["reason"] for e in events(api, "flaky")]
    assert reasons.count("Restarting") == 2
    # The log of each attempt is kept.
    assert logs(api, "flaky", attempt=0) == ""


def test_never_fails_at_once_and_stops_the_rest_of_the_gang(api: ApiHarness, tmp_path: Path) -> None:
    pid_file = tmp_path / "sleeper.pid"
    script = (
        "import os, time, sys\n"
        "if os.environ['LUMIFLOW_REPLICA_INDEX'] == '0':\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)\n"
        "else:\n"
        f"    while not os.path.exists({str(pid_file)!r}): time.sleep(0.01)\n"
        "    sys.exit(3)\n"
    )
    submit(api, job_manifest("never", script, replicas=2))
    job = wait_phase(api, "never", "Failed")
    assert "worker-1" in job["status"]["message"] and "code 3" in job["status"]["message"]
    assert job["status"]["restartCount"] == 0
    sleeper = int(pid_file.read_text())
    wait_until(lambda: not pid_alive(sleeper), timeout=15, message="the other replica to be stopped")


def test_exit_code_policy_retries_signals_but_not_errors(api: ApiHarness, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # First run kills itself with SIGKILL (137, retryable); the second exits 1 (permanent).
    script = (
        "import os, signal\n"
        f"p = {str(runs)!r}\n"
        "n = len(open(p).read().splitlines()) if os.path.exists(p) else 0\n"
        "open(p, 'a').write('run\\n')\n"
        "os.kill(os.getpid(), signal.SIGKILL) if n == 0 else exit(1)\n"
    )
    submit(api, job_manifest("exitcode", script, restart="ExitCode", run_policy={"backoffLimit": 5}))
    job = wait_phase(api, "exitcode", "Failed")
    assert count_lines(runs) == 2
    assert job["status"]["restartCount"] == 1
    assert "ExitCode" in job["status"]["message"]


def test_backoff_limit_bounds_restarts_of_an_oom_like_kill(api: ApiHarness, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    script = (
        f"import os, signal; open({str(runs)!r}, 'a').write('x\\n'); os.kill(os.getpid(), signal.SIGKILL)"
    )
    submit(api, job_manifest("oom", script, restart="ExitCode", run_policy={"backoffLimit": 1}))
    job = wait_phase(api, "oom", "Failed")
    assert count_lines(runs) == 2
    assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"


def test_active_deadline_stops_the_job(api: ApiHarness, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    submit(api, job_manifest("slow", script, run_policy={"activeDeadlineSeconds": 1}))
    job = wait_phase(api, "slow", "Failed", timeout=20)
    assert (
        next(c for c in job["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
    )
    pid = int(pid_file.read_text())
    wait_until(lambda: not pid_alive(pid), timeout=15, message="the replica to be stopped")


def test_ttl_after_finished_deletes_the_job(api: ApiHarness) -> None:
    submit(api, job_manifest("short", "print('done')", run_policy={"ttlSecondsAfterFinished": 1}))
    wait_phase(api, "short", "Succeeded")
    wait_until(
        lambda: api.request("GET", "/api/v1/profiles/admin/trainingjobs/short").status_code == 404,
        timeout=15,
        message="the job to be deleted by its TTL",
    )
    assert api.request("GET", "/api/v1/profiles/admin/workloads/short").status_code == 404


def test_suspend_stops_and_resume_runs_again(api: ApiHarness, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    gate = tmp_path / "gate"
    script = (
        "import os, time\n"
        f"open({str(runs)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    )
    manifest = job_manifest("pausable", script)
    submit(api, manifest)
    wait_until(lambda: count_lines(runs) == 1, timeout=15, message="the first run")
    first_pid = int(runs.read_text().split()[0])
    manifest["spec"]["runPolicy"]["suspend"] = True
    submit(api, manifest)
    job = wait_phase(api, "pausable", "Suspended")
    assert any(c["type"] == "Suspended" and c["status"] == "True" for c in job["status"]["conditions"])
    wait_until(lambda: not pid_alive(first_pid), timeout=15, message="the suspended replica to stop")
    wl = api.request("GET", "/api/v1/profiles/admin/workloads/pausable").json()
    wait_until(
        lambda: (
            api.request("GET", "/api/v1/profiles/admin/workloads/pausable").json()["status"]["phase"]
            == "Stopped"
        ),
        timeout=10,
        message="the workload to be stopped",
    )
    assert wl["spec"]["stopped"] is True
    usage = api.request("GET", "/api/v1/profiles/admin").json()["status"]["usage"]
    assert usage["workloads"] == 0  # a suspended job holds no quota
    manifest["spec"]["runPolicy"]["suspend"] = False
    submit(api, manifest)
    wait_until(lambda: count_lines(runs) == 2, timeout=15, message="the resumed run")
    gate.write_text("go")
    job = wait_phase(api, "pausable", "Succeeded")
    reasons = [e["reason"] for e in events(api, "pausable")]
    assert "Suspended" in reasons and "Resumed" in reasons


def test_deleting_a_running_job_stops_its_replicas_first(api: ApiHarness, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    submit(api, job_manifest("doomed", script))
    wait_until(pid_file.exists, timeout=15, message="the replica to start")
    pid = int(pid_file.read_text())
    r = api.request("DELETE", "/api/v1/profiles/admin/trainingjobs/doomed")
    assert r.status_code in (200, 202)
    wait_until(
        lambda: api.request("GET", "/api/v1/profiles/admin/trainingjobs/doomed").status_code == 404,
        timeout=20,
        message="the job to be gone",
    )
    assert not pid_alive(pid)
    assert api.request("GET", "/api/v1/profiles/admin/workloads/doomed").status_code == 404
    # The name can be used again at once.
    submit(api, job_manifest("doomed", "print(1)"))
    assert wait_phase(api, "doomed")["status"]["phase"] == "Succeeded"


def test_a_replica_that_ignores_sigterm_is_killed_after_the_grace_period(
    api: ApiHarness, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    script = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    manifest = job_manifest("stubborn", script)
    manifest["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    submit(api, manifest)
    wait_until(pid_file.exists, timeout=15, message="the replica to start")
    pid = int(pid_file.read_text())
    api.request("DELETE", "/api/v1/profiles/admin/trainingjobs/stubborn")
    wait_until(lambda: not pid_alive(pid), timeout=10, message="SIGKILL after the grace period")


def test_the_environment_a_replica_sees(api: ApiHarness) -> None:
    script = (
        "import os, json\n"
        "keep = ['SEED', 'POD', 'NS', 'CPU', 'PYTHONUNBUFFERED', 'LUMIFLOW_PROFILE', 'LUMIFLOW_JOB_NAME',"
        " 'LUMIFLOW_REPLICA_TYPE', 'LUMIFLOW_REPLICA_INDEX', 'CUDA_VISIBLE_DEVICES', 'EXPANDED', 'LUMIFLOW_ATTEMPT']\n"
        "print(json.dumps({k: os.environ.get(k) for k in keep}))\n"
        "print(os.getcwd())\n"
    )
    manifest = job_manifest("envjob", script, cpu="1500m")
    container = manifest["spec"]["replicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "SEED", "value": 7},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
        {"name": "EXPANDED", "value": "seed-$(SEED)-$$(SEED)"},
    ]
    submit(api, manifest)
    wait_phase(api, "envjob", "Succeeded")
    import json

    first, cwd = logs(api, "envjob").splitlines()
    assert json.loads(first) == {
        "SEED": "7",
        "POD": "envjob-worker-0",
        "NS": "admin",
        "CPU": "2",
        "PYTHONUNBUFFERED": "1",
        "LUMIFLOW_PROFILE": "admin",
        "LUMIFLOW_JOB_NAME": "envjob",
        "LUMIFLOW_REPLICA_TYPE": "worker",
        "LUMIFLOW_REPLICA_INDEX": "0",
        "CUDA_VISIBLE_DEVICES": "",
        "EXPANDED": "seed-7-$(SEED)",
        "LUMIFLOW_ATTEMPT": "0",
    }
    assert Path(cwd).is_dir()


def test_gpus_are_assigned_through_cuda_visible_devices(api_factory: object) -> None:
    clusters = [
        {
            "name": "local",
            "type": "local",
            "home": True,
            "options": {"capacity": {"cpu": 8, "memory": "8Gi"}, "gpus": ["0", "1"]},
        }
    ]
    with api_factory(
        clusters=clusters, profiles={"default_quota": {"cpu": "8", "nvidia.com/gpu": "2"}}
    ) as api:  # type: ignore[operator]
        script = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(0.5)"
        submit(api, job_manifest("gpus", script, replicas=2, gpu=1))
        wait_phase(api, "gpus", "Succeeded")
        seen = {logs(api, "gpus", r).strip() for r in ("worker-0", "worker-1")}
        assert seen == {"0", "1"}
        # A third GPU is more than the quota: the job waits, saying why.
        submit(api, job_manifest("toomany", "print(1)", replicas=3, gpu=1))
        job = wait_phase(api, "toomany", "Queued")
        assert "gpu 3/2" in job["status"]["message"]


def test_logs_of_an_unknown_replica_name_the_replicas(api: ApiHarness) -> None:
    submit(api, job_manifest("two", "print(1)", replicas=2))
    wait_phase(api, "two")
    r = api.request("GET", "/api/v1/profiles/admin/trainingjobs/two/logs", params={"replica": "worker-7"})
    assert r.status_code == 404
    assert "worker-0, worker-1" in r.json()["message"]


def test_follow_streams_across_a_gang_restart(api: ApiHarness, tmp_path: Path) -> None:
    marker = tmp_path / "first"
    script = (
        "import os, sys\n"
        f"first = not os.path.exists({str(marker)!r})\n"
        f"open({str(marker)!r}, 'a').write('x')\n"
        "print('attempt', os.environ['LUMIFLOW_ATTEMPT'], flush=True)\n"
        "sys.exit(1 if first else 0)\n"
    )
    submit(api, job_manifest("restarts", script, restart="OnFailure"))
    r = api.request("GET", "/api/v1/profiles/admin/trainingjobs/restarts/logs", params={"follow": "true"})
    assert r.status_code == 200
    assert r.text == "attempt 0\n--- lumiflow: gang restarted, attempt 1 ---\nattempt 1\n"
    assert get_job(api, "restarts")["status"]["phase"] == "Succeeded"


def test_own_process_group_is_cleaned_when_the_replica_exits(api: ApiHarness, tmp_path: Path) -> None:
    child_pid = tmp_path / "child"
    script = (
        "import subprocess\n"
        "p = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(p.pid))\n"
    )
    submit(api, job_manifest("leaky", script))
    wait_phase(api, "leaky", "Succeeded")
    pid = int(child_pid.read_text())
    wait_until(lambda: not pid_alive(pid), timeout=10, message="the leftover child to be killed")
    assert not os.path.exists(f"/proc/{pid}/status") or not pid_alive(pid)
