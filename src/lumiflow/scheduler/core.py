"""Admission: which waiting Workloads start now, and where. Pure logic, no I/O.

The queue is fair across profiles in the sense of Dominant Resource Fairness: at every
step the profile with the smallest dominant share (its largest used/quota fraction over
cpu, memory, gpu and workloads) offers its next Workload. One profile's hundred queued jobs
therefore do not starve another profile's one.

Within a profile, order is priority, then age, and strict: if the profile's head does not
fit its quota, its later Workloads wait too (a big job is not starved by small ones behind
it). Across profiles the cluster is filled greedily: a Workload too big for the free
capacity does not block another profile's smaller one.

A gang is admitted whole or not at all: every replica must fit on the cluster, and the
sum must fit both the quota and the free capacity.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime

from lumiflow.common.quantity import Limits, Resources, format_cpu, format_memory
from lumiflow.resources.workload import NEVER_FITS_REASONS

#: Reasons that no amount of waiting cures (the Workload stays queued with the reason; a
#: TrainingJob whose Workload is queued for one of them fails with it).
NEVER_FITS = NEVER_FITS_REASONS


@dataclass(frozen=True, slots=True)
class Candidate:
    profile: str
    name: str
    uid: str
    request: Resources  # sum over replicas, workloads=1
    largest_replica: Resources
    cluster: str | None
    priority: int
    created_at: datetime


@dataclass(slots=True)
class ProfileView:
    name: str
    limits: Limits
    used: Resources = Resources()
    home_cluster: str | None = None


@dataclass(slots=True)
class ClusterView:
    name: str
    total: Resources
    per_replica: Resources
    used: Resources = Resources()


@dataclass(slots=True)
class Decision:
    admitted: list[tuple[Candidate, str]] = field(default_factory=list)
    #: uid -> (reason code, message) for every candidate left waiting
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)


def _fits(request: Resources, free: Resources, *, word: str = "free") -> list[str]:
    short: list[str] = []
    eps = 1e-9
    if request.cpu > free.cpu + eps:
        short.append(f"cpu {format_cpu(request.cpu)} asked, {format_cpu(max(free.cpu, 0))} {word}")
    if request.memory > free.memory:
        short.append(
            f"memory {format_memory(request.memory)} asked, {format_memory(max(free.memory, 0))} {word}"
        )
    if request.gpu > free.gpu:
        short.append(f"gpu {request.gpu} asked, {max(free.gpu, 0)} {word}")
    return short


def _share(profile: ProfileView, total: Resources) -> float:
    share = profile.limits.dominant_share(profile.used)
    if share == 0.0 and profile.limits == Limits():
        fallback = Limits(cpu=total.cpu or None, memory=total.memory or None, gpu=total.gpu or None)
        share = fallback.dominant_share(profile.used)
    return share


def schedule(
    candidates: list[Candidate],
    profiles: dict[str, ProfileView],
    clusters: dict[str, ClusterView],
    *,
    home_cluster: str,
) -> Decision:
    decision = Decision()
    per_profile: dict[str, list[Candidate]] = {}
    for c in candidates:
        per_profile.setdefault(c.profile, []).append(c)
    for queue in per_profile.values():
        queue.sort(key=lambda c: (-c.priority, c.created_at, c.name))

    total = Resources()
    for cl in clusters.values():
        total = total + cl.total

    heap: list[tuple[float, str]] = []
    position: dict[str, int] = {}
    for name, queue in per_profile.items():
        if name not in profiles:
            for c in queue:
                decision.waiting[c.uid] = ("NoProfile", f"profile {name!r} does not exist")
            continue
        heapq.heappush(heap, (_share(profiles[name], total), name))
        position[name] = 0

    while heap:
        _, name = heapq.heappop(heap)
        queue = per_profile[name]
        idx = position[name]
        if idx >= len(queue):
            continue
        cand = queue[idx]
        profile = profiles[name]
        cluster_name = cand.cluster or profile.home_cluster or home_cluster
        cluster = clusters.get(cluster_name)
        blocked: tuple[str, str] | None = None
        if cluster is None:
            blocked = ("UnknownCluster", f"cluster {cluster_name!r} does not exist")
        else:
            too_big = _fits(cand.largest_replica, cluster.per_replica)
            if too_big:
                blocked = (
                    "Unschedulable",
                    f"a replica can never fit on cluster {cluster_name}: {'; '.join(too_big)} at most",
                )
        if blocked is None:
            over = profile.limits.exceeded_by(profile.used + cand.request)
            if over:
                blocked = (
                    "WaitingForQuota",
                    f"waiting for quota of profile {name}: {', '.join(over)} (used+asked/hard)",
                )
        if blocked is None and cluster is not None:
            gang_too_big = _fits(cand.request, cluster.total, word="in all")
            if gang_too_big:
                blocked = (
                    "Unschedulable",
                    f"the gang can never fit on cluster {cluster_name}: {'; '.join(gang_too_big)}",
                )
        if blocked is None and cluster is not None:
            short = _fits(cand.request, cluster.total - cluster.used)
            if short:
                blocked = (
                    "WaitingForCapacity",
                    f"waiting for capacity on cluster {cluster_name}: {'; '.join(short)}",
                )
        if blocked is not None and blocked[0] in NEVER_FITS:
            # This one cannot run as it is; it must not hold up the rest of the profile.
            decision.waiting[cand.uid] = blocked
            position[name] = idx + 1
            if position[name] < len(queue):
                heapq.heappush(heap, (_share(profile, total), name))
            continue
        if blocked is not None:
            # Strict FIFO inside the profile: everything behind the head waits as well.
            decision.waiting[cand.uid] = blocked
            for later in queue[idx + 1 :]:
                decision.waiting[later.uid] = (
                    blocked[0],
                    f"behind {cand.name} in profile {name}'s queue; {blocked[1]}",
                )
            position[name] = len(queue)
            continue
        assert cluster is not None
        decision.admitted.append((cand, cluster.name))
        profile.used = profile.used + cand.request
        cluster.used = cluster.used + cand.request
        position[name] = idx + 1
        if position[name] < len(queue):
            heapq.heappush(heap, (_share(profile, total), name))
    return decision
