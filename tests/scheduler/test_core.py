"""Admission decisions: quota, capacity, gangs, and fairness across profiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lumiflow.common.quantity import Limits, Resources
from lumiflow.scheduler import Candidate, ClusterView, ProfileView, schedule

pytestmark = pytest.mark.timeout(10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cand(
    profile: str, i: int, *, cpu: float = 1, replicas: int = 1, cluster: str | None = None, priority: int = 0
) -> Candidate:
    one = Resources(cpu=cpu, memory=2**20)
    return Candidate(
        profile=profile,
        name=f"{profile}-{i}",
        uid=f"{profile}-{i}",
        request=one.scaled(replicas) + Resources(workloads=1),
        largest_replica=one,
        cluster=cluster,
        priority=priority,
        created_at=T0 + timedelta(seconds=i),
    )


def cluster(cpu: float = 100, per_replica: float | None = None) -> dict[str, ClusterView]:
    total = Resources(cpu=cpu, memory=2**40, gpu=0)
    per = Resources(cpu=per_replica if per_replica is not None else cpu, memory=2**40)
    return {"local": ClusterView(name="local", total=total, per_replica=per)}


def names(decision: object) -> list[str]:
    return [c.name for c, _ in decision.admitted]  # type: ignore[attr-defined]


def test_quota_bounds_admissions_and_the_rest_wait_with_a_reason() -> None:
    profiles = {"a": ProfileView("a", Limits(workloads=5))}
    decision = schedule([cand("a", i) for i in range(20)], profiles, cluster(), home_cluster="local")
    assert names(decision) == [f"a-{i}" for i in range(5)]
    assert len(decision.waiting) == 15
    reason, message = decision.waiting["a-5"]
    assert reason == "WaitingForQuota"
    assert "workloads 6/5" in message


def test_one_profiles_hundred_jobs_do_not_starve_anothers_one() -> None:
    profiles = {"big": ProfileView("big", Limits(cpu=100)), "small": ProfileView("small", Limits(cpu=100))}
    queue = [cand("big", i) for i in range(100)] + [cand("small", 1000)]
    decision = schedule(queue, profiles, cluster(cpu=3), home_cluster="local")
    assert "small-1000" in names(decision)
    assert len(decision.admitted) == 3


def test_the_least_served_profile_goes_first() -> None:
    profiles = {
        "a": ProfileView("a", Limits(cpu=10), used=Resources(cpu=8)),
        "b": ProfileView("b", Limits(cpu=10)),
    }
    decision = schedule([cand("a", 1), cand("b", 2)], profiles, cluster(cpu=1), home_cluster="local")
    assert names(decision) == ["b-2"]


def test_gangs_are_all_or_nothing() -> None:
    profiles = {"a": ProfileView("a", Limits(cpu=100))}
    clusters = cluster(cpu=4)
    clusters["local"].used = Resources(cpu=1)  # 3 of 4 cpus free: 3 of the 4 replicas would fit
    decision = schedule([cand("a", 1, replicas=4)], profiles, clusters, home_cluster="local")
    assert decision.admitted == []
    assert decision.waiting["a-1"][0] == "WaitingForCapacity"


def test_a_gang_larger_than_its_cluster_can_never_fit() -> None:
    profiles = {"a": ProfileView("a", Limits(cpu=100))}
    decision = schedule(
        [cand("a", 1, replicas=4), cand("a", 2)], profiles, cluster(cpu=3), home_cluster="local"
    )
    assert decision.waiting["a-1"] == (
        "Unschedulable",
        "the gang can never fit on cluster local: cpu 4 asked, 3 in all",
    )
    assert names(decision) == ["a-2"]  # it does not hold up the rest of its profile


def test_fifo_within_a_profile_for_quota() -> None:
    profiles = {"a": ProfileView("a", Limits(cpu=4), used=Resources(cpu=2))}
    queue = [cand("a", 1, cpu=3), cand("a", 2, cpu=1)]
    decision = schedule(queue, profiles, cluster(), home_cluster="local")
    assert decision.admitted == []  # the small job does not jump over the big one
    assert "behind a-1" in decision.waiting["a-2"][1]


def test_priority_before_age() -> None:
    profiles = {"a": ProfileView("a", Limits(workloads=1))}
    decision = schedule([cand("a", 1), cand("a", 2, priority=10)], profiles, cluster(), home_cluster="local")
    assert names(decision) == ["a-2"]


def test_a_job_that_can_never_fit_does_not_block_its_profile() -> None:
    profiles = {"a": ProfileView("a", Limits(cpu=100))}
    queue = [cand("a", 1, cpu=8), cand("a", 2, cluster="nowhere"), cand("a", 3, cpu=1)]
    decision = schedule(queue, profiles, cluster(cpu=16, per_replica=4), home_cluster="local")
    assert names(decision) == ["a-3"]
    assert decision.waiting["a-1"][0] == "Unschedulable"
    assert decision.waiting["a-2"][0] == "UnknownCluster"


def test_capacity_is_shared_greedily_across_profiles() -> None:
    profiles = {"a": ProfileView("a", Limits()), "b": ProfileView("b", Limits())}
    queue = [cand("a", 1, cpu=4), cand("b", 2, cpu=1)]
    decision = schedule(queue, profiles, cluster(cpu=2), home_cluster="local")
    assert names(decision) == ["b-2"]


def test_missing_profile_is_reported() -> None:
    decision = schedule([cand("ghost", 1)], {}, cluster(), home_cluster="local")
    assert decision.waiting["ghost-1"][0] == "NoProfile"
