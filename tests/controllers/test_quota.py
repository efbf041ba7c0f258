"""Quotas and fairness through the whole system: API → scheduler → local cluster."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.jobs import job_manifest, submit, wait_phase

pytestmark = pytest.mark.timeout(120)

BIG_CLUSTER = [
    {"name": "local", "type": "local", "home": True, "options": {"capacity": {"cpu": 64, "memory": "64Gi"}}}
]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = best = 0
    for _, step in points:
        running += step
        best = max(best, running)
    return best


def test_twenty_concurrent_submissions_never_run_more_than_the_quota(
    api_factory: Any, tmp_path: Path
) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    quota = {"default_quota": {"cpu": "64", "memory": "64Gi", "workloads": "5"}}
    with api_factory(clusters=BIG_CLUSTER, profiles=quota) as api:
        script = (
            "import os, time\n"
            "start = time.time(); time.sleep(0.4)\n"
            f"open(os.path.join({str(spans)!r}, os.environ['LUMIFLOW_JOB_NAME']), 'w')"
            ".write(f'{start} {time.time()}')\n"
        )
        manifests = [job_manifest(f"j{i:02d}", script) for i in range(20)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda m: submit(api, m), manifests))
        # While they run, the store never holds more than 5 admitted or running workloads
        # (a job's own phase may lag its workload by a reconcile, as in Kubernetes).
        peak = 0

        def all_done() -> bool:
            nonlocal peak
            workloads = api.request("GET", "/api/v1/profiles/admin/workloads").json()["items"]
            active = [w for w in workloads if w["status"].get("phase") in ("Admitted", "Running")]
            peak = max(peak, len(active))
            items = api.request("GET", "/api/v1/profiles/admin/trainingjobs").json()["items"]
            return [i["status"].get("phase") for i in items].count("Succeeded") == 20

        wait_until(all_done, timeout=90, interval=0.05, message="all 20 jobs to succeed")
        assert peak <= 5
        intervals = [tuple(map(float, p.read_text().split())) for p in spans.iterdir()]
        assert len(intervals) == 20
        assert max_overlap(intervals) <= 5  # type: ignore[arg-type]
        assert max_overlap(intervals) >= 2  # they did run in parallel, up to the quota


def test_a_queued_job_says_why_and_starts_when_room_frees(api_factory: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    quota = {"default_quota": {"cpu": "1", "memory": "1Gi", "workloads": "10"}}
    with api_factory(clusters=BIG_CLUSTER, profiles=quota) as api:
        blocker = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
        submit(api, job_manifest("first", blocker, cpu="1"))
        wait_phase(api, "first", "Running")
        submit(api, job_manifest("second", "print('ran')", cpu="500m"))
        job = wait_phase(api, "second", "Queued")
        assert "waiting for quota" in job["status"]["message"]
        assert "cpu 1500m/1" in job["status"]["message"]
        gate.write_text("go")
        wait_phase(api, "first", "Succeeded")
        wait_phase(api, "second", "Succeeded")


def test_another_profiles_single_job_is_not_starved(api_factory: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cluster = [
        {"name": "local", "type": "local", "home": True, "options": {"capacity": {"cpu": 2, "memory": "8Gi"}}}
    ]
    with api_factory(clusters=cluster, profiles={"default_quota": {"cpu": "100", "memory": "64Gi"}}) as api:
        bob = api.add_user("bob", "physics")
        waiting = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
        for i in range(8):
            submit(api, job_manifest(f"a{i}", waiting, cpu="1"))
        wait_until(
            lambda: (
                sum(
                    1
                    for i in api.request("GET", "/api/v1/profiles/admin/trainingjobs").json()["items"]
                    if i["status"].get("phase") == "Running"
                )
                == 2
            ),
            timeout=20,
            message="two running",
        )
        submit(api, job_manifest("b0", "print('bob ran')", cpu="1"), token=bob)
        gate.write_text("go")
        # When the first slot frees, bob's one job goes before admin's six queued ones.
        job = wait_phase(api, "b0", "Succeeded", profile="bob", token=bob)
        started_b = job["status"]["startTime"]
        for i in range(8):
            wait_phase(api, f"a{i}", "Succeeded")
        later_admin = [
            i
            for i in api.request("GET", "/api/v1/profiles/admin/trainingjobs").json()["items"]
            if i["status"].get("startTime") and i["status"]["startTime"] > started_b
        ]
        assert len(later_admin) >= 4
