"""From a TrainingJob's replica specs to the Workload's replicas (command, env, needs).

What a replica sees is what a Kubernetes pod of the same manifest would see, as far as a
process can: the container's env in order with ``valueFrom.fieldRef`` and
``resourceFieldRef`` resolved, ``$(VAR)`` references expanded in env, command and args
(Kubernetes' rules: earlier variables only, ``$$`` escapes, unknown references kept), and
``PYTHONUNBUFFERED=1`` so that logs appear as they are written. lumiflow adds
``LUMIFLOW_*`` variables naming the job, profile and replica, and one
``LUMIFLOW_PORT_<NAME>`` per declared port (locally every replica gets a free port, since
they share one host).

Frameworks (TFJob, PyTorchJob, ...) add their own variables in their module
(:mod:`lumiflow.controllers.frameworks`); they come after the container's env, as the
Kubeflow operators append theirs. Before the container's env come the variables a user may
override: ``OMP_NUM_THREADS`` from the replica's cpu request (rounded up, at least 1: two
ranks on two cores each spawning a thread per core run twice as slow) and
``LUMIFLOW_CHECKPOINT_DIR``, the job's checkpoint directory, which outlives gang restarts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumiflow.clusters.base import host_placeholder, port_placeholder
from lumiflow.common.documents import SOURCE_DIR_ANNOTATION
from lumiflow.common.errors import PermanentError
from lumiflow.common.quantity import Resources, parse_cpu, parse_memory
from lumiflow.controllers.frameworks import JobContext, logic_for
from lumiflow.resources.podspec import Container, EnvVar
from lumiflow.resources.trainingjob import ReplicaSpec, TrainingJob, main_container
from lumiflow.resources.workload import ReplicaResources, WorkloadReplica

#: Kubeflow's replica types first, in the order their operators rank them.
TYPE_ORDER = ("chief", "master", "launcher", "ps", "worker", "evaluator")

_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$$`` is a literal ``$``; unknown names stay."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    if "$" not in text:
        return text
    return _REF.sub(sub, text)


def ordered_types(job: TrainingJob) -> list[str]:
    """Replica types in a stable order (JSONB does not keep key order)."""

    def rank(name: str) -> tuple[int, str]:
        lower = name.lower()
        return (TYPE_ORDER.index(lower) if lower in TYPE_ORDER else len(TYPE_ORDER), lower)

    return sorted(job.spec.replicaSpecs, key=rank)


@dataclass(frozen=True, slots=True)
class ReplicaIdentity:
    type: str  # as written in replicaSpecs (Worker)
    index: int

    @property
    def name(self) -> str:
        return f"{self.type.lower()}-{self.index}"


def replica_identities(job: TrainingJob) -> list[ReplicaIdentity]:
    out: list[ReplicaIdentity] = []
    for rtype in ordered_types(job):
        out.extend(ReplicaIdentity(rtype, i) for i in range(job.spec.replicaSpecs[rtype].replicas))
    return out


def identity_by_name(job: TrainingJob) -> dict[str, ReplicaIdentity]:
    return {r.name: r for r in replica_identities(job)}


def port_names(container: Container) -> list[str]:
    return [p.name or f"port-{p.containerPort}" for p in container.ports]


def _field_ref(
    path: str,
    *,
    job_name: str,
    profile: str,
    uid: str,
    pod_name: str,
    replica: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> str:
    simple = {
        "metadata.name": pod_name,
        "metadata.namespace": profile,
        "metadata.uid": uid,
        "status.podIP": host_placeholder(replica),
        "status.hostIP": host_placeholder(replica),
        "spec.nodeName": host_placeholder(replica),
        "spec.serviceAccountName": "default",
    }
    if path in simple:
        return simple[path]
    match = re.match(r"^metadata\.(labels|annotations)\['([^']+)'\]$", path)
    if match:
        source = labels if match.group(1) == "labels" else annotations
        return source.get(match.group(2), "")
    raise PermanentError(f"env fieldRef {path!r} is not supported")


def _resource_ref(resource: str, divisor: Any, request: Resources, limits: Mapping[str, str]) -> str:
    if resource.endswith("cpu"):
        value = parse_cpu(limits["cpu"]) if resource.startswith("limits") and "cpu" in limits else request.cpu
        div = parse_cpu(divisor) if divisor else 1.0
        return str(max(1, math.ceil(value / div)))
    if resource.endswith("memory"):
        mem = (
            parse_memory(limits["memory"])
            if resource.startswith("limits") and "memory" in limits
            else request.memory
        )
        divm = parse_memory(divisor) if divisor else 1
        return str(max(1, math.ceil(mem / divm)))
    raise PermanentError(f"env resourceFieldRef {resource!r} is not supported")


def container_env(
    env: list[EnvVar],
    *,
    base: dict[str, str],
    job_name: str,
    profile: str,
    uid: str,
    pod_name: str,
    replica: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    request: Resources,
    limits: Mapping[str, str],
) -> dict[str, str]:
    """The container's env on top of ``base``, in order, with references resolved."""
    result = dict(base)
    for var in env:
        if var.valueFrom is not None:
            src = var.valueFrom
            if src.fieldRef is not None:
                value = _field_ref(
                    src.fieldRef.fieldPath,
                    job_name=job_name,
                    profile=profile,
                    uid=uid,
                    pod_name=pod_name,
                    replica=replica,
                    labels=labels,
                    annotations=annotations,
                )
            elif src.resourceFieldRef is not None:
                value = _resource_ref(
                    src.resourceFieldRef.resource, src.resourceFieldRef.divisor, request, limits
                )
            else:  # refused at apply time; kept for safety
                raise PermanentError(f"env {var.name}: secrets and config maps are not available")
        else:
            value = expand(var.value or "", result)
        result[var.name] = value
    return result


def checkpoint_dir(job_dir: Path) -> Path:
    return job_dir / "checkpoints"


def build_replicas(
    job: TrainingJob,
    *,
    profile: str,
    uid: str,
    public_url: str,
    default_cpu: float,
    default_memory: int,
    job_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> list[WorkloadReplica]:
    """Every replica of ``job`` as a Workload replica, with its framework's variables
    (TF_CONFIG, MASTER_ADDR, ...) and command."""
    name = job.metadata.name or ""
    framework = logic_for(job.spec.framework)
    ctx = JobContext(name=name, profile=profile, uid=uid, job_dir=job_dir)
    labels = job.metadata.labels
    annotations = job.metadata.annotations
    replicas: list[WorkloadReplica] = []
    identities = replica_identities(job)
    all_ports = {
        ident.name: port_names(main_container(job.spec.replicaSpecs[ident.type], job.spec.framework))
        for ident in identities
    }
    addresses = {
        r: {"host": host_placeholder(r), "ports": {p: port_placeholder(r, p) for p in ports}}
        for r, ports in all_ports.items()
    }
    addresses_json = json.dumps(addresses, separators=(",", ":"))
    for ident in identities:
        spec: ReplicaSpec = job.spec.replicaSpecs[ident.type]
        container = main_container(spec, job.spec.framework)
        request = container.resources.effective(default_cpu=default_cpu, default_memory=default_memory)
        pod_name = f"{name}-{ident.type.lower()}-{ident.index}"
        base = {
            "PYTHONUNBUFFERED": "1",
            "LUMIFLOW_URL": public_url,
            "LUMIFLOW_PROFILE": profile,
            "LUMIFLOW_JOB_NAME": name,
            "LUMIFLOW_JOB_UID": uid,
            "LUMIFLOW_REPLICA_TYPE": ident.type.lower(),
            "LUMIFLOW_REPLICA_INDEX": str(ident.index),
            "LUMIFLOW_REPLICA_NAME": ident.name,
            "LUMIFLOW_POD_NAME": pod_name,
            "LUMIFLOW_REPLICA_ADDRESSES": addresses_json,
            **(extra_env or {}),
        }
        for port in all_ports[ident.name]:
            base[f"LUMIFLOW_PORT_{port.upper().replace('-', '_')}"] = port_placeholder(ident.name, port)
        base["OMP_NUM_THREADS"] = str(max(1, math.ceil(request.cpu - 1e-9)))
        if job_dir is not None:
            base["LUMIFLOW_CHECKPOINT_DIR"] = str(checkpoint_dir(job_dir))
        env = container_env(
            container.env,
            base=base,
            job_name=name,
            profile=profile,
            uid=uid,
            pod_name=pod_name,
            replica=ident.name,
            labels=labels,
            annotations=annotations,
            request=request,
            limits=container.resources.limits,
        )
        env.update(framework.environment(job, ident.type, ident.index, ctx))
        command = [expand(part, env) for part in (container.command or [])]
        command += [expand(part, env) for part in (container.args or [])]
        command = framework.command(job, ident.type, ident.index, command, ctx)
        replicas.append(
            WorkloadReplica(
                name=ident.name,
                command=command,
                env=env,
                workingDir=container.workingDir,
                sourceDir=annotations.get(SOURCE_DIR_ANNOTATION),
                resources=ReplicaResources(cpu=request.cpu, memory=request.memory, gpu=request.gpu),
                ports=all_ports[ident.name],
            )
        )
    return replicas
