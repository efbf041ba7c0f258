"""Nothing lost: SIGKILL the server while jobs run, start it again, everything ends right."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import pid_alive, wait_until
from tests.jobs import job_manifest

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CONFIG = {
    "clusters": [
        {
            "name": "local",
            "type": "local",
            "home": True,
            "options": {"capacity": {"cpu": 16, "memory": "16Gi"}},
        }
    ],
    "controllers": {"restart_backoff_seconds": 0.05, "resync_seconds": 5},
}


def script(marks: Path, lines: int, period: float, exit_code: int, gate: Path) -> str:
    return (
        "import os, sys, time\n"
        f"name = os.environ['LUMIFLOW_POD_NAME']\n"
        f"open(os.path.join({str(marks)!r}, name), 'a').write(f'start {{os.getpid()}}\\n')\n"
        f"for i in range({lines}):\n"
        "    print(f'{name} line {i}', flush=True)\n"
        f"    if i == 1:\n"
        f"        while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        f"    time.sleep({period})\n"
        f"sys.exit({exit_code})\n"
    )


def test_sigkill_the_server_while_three_jobs_run(server_factory: Any, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    gate = tmp_path / "gate"
    server = server_factory(CONFIG)
    server.start()
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    api = httpx.Client(base_url=server.url, headers=headers, timeout=10)
    jobs = {
        "ok": job_manifest("ok", script(marks, 6, 0.1, 0, gate), replicas=2),
        "fails": job_manifest("fails", script(marks, 4, 0.1, 2, gate)),
        "slow": job_manifest("slow", script(marks, 12, 0.25, 0, gate)),
    }
    for manifest in jobs.values():
        assert api.post("/api/v1/apply", json=manifest).status_code == 201

    def phase(name: str) -> str | None:
        return api.get(f"/api/v1/profiles/admin/trainingjobs/{name}").json()["status"].get("phase")

    wait_until(lambda: all(phase(n) == "Running" for n in jobs), timeout=30, message="all three running")
    wait_until(lambda: len(list(marks.iterdir())) == 4, timeout=30, message="four replicas started")
    server.kill(signal.SIGKILL)
    api.close()
    pids = {p.name: int(p.read_text().split()[1]) for p in marks.iterdir()}
    # The replicas carry on without the server; the short ones finish while it is down.
    gate.write_text("go")
    wait_until(
        lambda: not pid_alive(pids["fails-worker-0"]) and not pid_alive(pids["ok-worker-1"]),
        timeout=30,
        message="short replicas to finish while the server is down",
    )
    assert pid_alive(pids["slow-worker-0"])

    server.start()
    api = httpx.Client(base_url=server.url, headers=headers, timeout=10)
    wait_until(
        lambda: phase("slow") == "Succeeded" and phase("ok") == "Succeeded" and phase("fails") == "Failed",
        timeout=60,
        message="the right final phases after the restart",
    )
    fails = api.get("/api/v1/profiles/admin/trainingjobs/fails").json()
    assert "code 2" in fails["status"]["message"]
    # Logs are complete.
    for name, lines, replicas in (("ok", 6, 2), ("fails", 4, 1), ("slow", 12, 1)):
        for r in range(replicas):
            text = api.get(
                f"/api/v1/profiles/admin/trainingjobs/{name}/logs", params={"replica": f"worker-{r}"}
            ).text
            assert text.splitlines() == [f"{name}-worker-{r} line {i}" for i in range(lines)], text
    # No replica was started twice, and none is left running.
    for mark in marks.iterdir():
        assert len(mark.read_text().splitlines()) == 1, mark.name
    for pid in pids.values():
        assert not pid_alive(pid)
    events = [e["reason"] for e in api.get("/api/v1/profiles/admin/trainingjobs/slow/events").json()["items"]]
    assert events.count("Running") == 1
    api.close()
    server.stop()


def test_a_job_submitted_just_before_the_kill_still_runs(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(CONFIG)
    server.start()
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
        manifest = job_manifest("late", "print('ran once')")
        assert api.post("/api/v1/apply", json=manifest).status_code == 201
    server.kill(signal.SIGKILL)
    server.start()
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
        wait_until(
            lambda: (
                api.get("/api/v1/profiles/admin/trainingjobs/late").json()["status"].get("phase")
                == "Succeeded"
            ),
            timeout=30,
            message="the job to run after the restart",
        )
        log = api.get("/api/v1/profiles/admin/trainingjobs/late/logs").text
        assert log == "ran once\n"
    assert os.path.exists(server.home / "lumiflow.db")
