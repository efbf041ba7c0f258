"""The Kubernetes pod template, as far as lumiflow reads it, and every other field kept.

Fields of ``Container`` and ``PodSpec`` are listed explicitly (Kubernetes' names), so that a
typo (``comand``) is an error that names it, while fields a local run cannot use
(``image``, ``volumes``, ``nodeSelector``, ...) are accepted and kept for the Kubernetes
backend. Their inner structure is not interpreted here.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lumiflow.common.quantity import GPU_KEYS, QuantityError, Resources, parse_count, parse_cpu, parse_memory
from lumiflow.resources.meta import Lenient, Strict

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024


class ObjectFieldSelector(Strict):
    fieldPath: str
    apiVersion: str | None = None


class ResourceFieldSelector(Strict):
    resource: str
    containerName: str | None = None
    divisor: str | int | None = None


class KeySelector(Strict):
    key: str
    name: str | None = None
    optional: bool | None = None


class EnvVarSource(Strict):
    fieldRef: ObjectFieldSelector | None = None
    resourceFieldRef: ResourceFieldSelector | None = None
    secretKeyRef: KeySelector | None = None
    configMapKeyRef: KeySelector | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvVarSource:
        given = [
            n for n in ("fieldRef", "resourceFieldRef", "secretKeyRef", "configMapKeyRef") if getattr(self, n)
        ]
        if len(given) != 1:
            raise ValueError("exactly one of fieldRef, resourceFieldRef, secretKeyRef, configMapKeyRef")
        return self


class EnvVar(Strict):
    name: str
    value: str | None = None
    valueFrom: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or len(value) > 1024 or not _ENV_NAME.match(value):
            raise ValueError(f"environment variable name {value[:80]!r} is not valid")
        return value

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str) and len(value) > MAX_ARG_BYTES:
            raise ValueError(f"value is longer than {MAX_ARG_BYTES} bytes")
        return value


class ContainerPort(Strict):
    containerPort: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    hostPort: int | None = Field(default=None, ge=1, le=65535)
    hostIP: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 15 or not _PORT_NAME.match(value)):
            raise ValueError(f"port name {value!r} must be at most 15 lower-case letters, digits or '-'")
        return value


def _quantity_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of resource name to quantity")
    out: dict[str, str] = {}
    for key, item in value.items():
        key = str(key)
        try:
            if key == "cpu":
                parse_cpu(item)
            elif key in ("memory", "ephemeral-storage") or key.startswith("hugepages-"):
                parse_memory(item)
            elif key in GPU_KEYS or key.endswith("/gpu"):
                parse_count(item)
            else:
                parse_memory(item)
        except QuantityError as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
        out[key] = str(item)
    return out


class ResourceRequirements(Strict):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)
    claims: list[dict[str, Any]] | None = None

    @field_validator("requests", mode="before")
    @classmethod
    def _requests(cls, value: Any) -> Any:
        return _quantity_map(value, "requests")

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> Any:
        return _quantity_map(value, "limits")

    def effective(self, *, default_cpu: float, default_memory: int) -> Resources:
        """The request the scheduler counts: requests, else limits (Kubernetes' rule), else defaults."""

        def pick(*keys: str) -> str | None:
            for source in (self.requests, self.limits):
                for key in keys:
                    if key in source:
                        return source[key]
            return None

        cpu = pick("cpu")
        memory = pick("memory")
        gpu = pick(*GPU_KEYS)
        return Resources(
            cpu=parse_cpu(cpu) if cpu is not None else default_cpu,
            memory=parse_memory(memory) if memory is not None else default_memory,
            gpu=parse_count(gpu) if gpu is not None else 0,
        )


class Container(Strict):
    name: str = "main"
    image: str | None = None
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    workingDir: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    envFrom: list[dict[str, Any]] | None = None
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    ports: list[ContainerPort] = Field(default_factory=list)
    volumeMounts: list[dict[str, Any]] | None = None
    volumeDevices: list[dict[str, Any]] | None = None
    securityContext: dict[str, Any] | None = None
    livenessProbe: dict[str, Any] | None = None
    readinessProbe: dict[str, Any] | None = None
    startupProbe: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None
    stdin: bool | None = None
    stdinOnce: bool | None = None
    tty: bool | None = None
    terminationMessagePath: str | None = None
    terminationMessagePolicy: str | None = None
    resizePolicy: list[dict[str, Any]] | None = None
    restartPolicy: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 63 or not _PORT_NAME.match(value):
            raise ValueError(f"container name {value[:80]!r} is not a DNS-1123 label")
        return value

    @field_validator("command", "args", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            raise ValueError("must be a list of strings, e.g. [python3, train.py]")
        if isinstance(value, list):
            if len(value) > MAX_ARGS:
                raise ValueError(f"more than {MAX_ARGS} arguments")
            out = []
            for item in value:
                if isinstance(item, bool):
                    raise ValueError("arguments must be strings")
                text = str(item) if isinstance(item, int | float) else item
                if isinstance(text, str) and ("\x00" in text or len(text) > MAX_ARG_BYTES):
                    raise ValueError("an argument holds a NUL byte or is too long")
                out.append(text)
            return out
        return value

    @model_validator(mode="after")
    def _ports_unique(self) -> Container:
        names = [p.name for p in self.ports if p.name]
        numbers = [p.containerPort for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError("ports: duplicate port name")
        if len(set(numbers)) != len(numbers):
            raise ValueError("ports: duplicate containerPort")
        return self


class PodTemplateMeta(Lenient):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodSpec(Strict):
    containers: list[Container] = Field(min_length=1, max_length=32)
    initContainers: list[dict[str, Any]] | None = None
    ephemeralContainers: list[dict[str, Any]] | None = None
    volumes: list[dict[str, Any]] | None = None
    nodeSelector: dict[str, str] | None = None
    nodeName: str | None = None
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    topologySpreadConstraints: list[dict[str, Any]] | None = None
    restartPolicy: Literal["Always", "OnFailure", "Never"] | None = None
    serviceAccountName: str | None = None
    serviceAccount: str | None = None
    automountServiceAccountToken: bool | None = None
    securityContext: dict[str, Any] | None = None
    imagePullSecrets: list[dict[str, Any]] | None = None
    hostNetwork: bool | None = None
    hostIPC: bool | None = None
    hostPID: bool | None = None
    hostname: str | None = None
    subdomain: str | None = None
    dnsPolicy: str | None = None
    dnsConfig: dict[str, Any] | None = None
    schedulerName: str | None = None
    priorityClassName: str | None = None
    priority: int | None = None
    runtimeClassName: str | None = None
    terminationGracePeriodSeconds: int | None = Field(default=None, ge=0, le=86400)
    activeDeadlineSeconds: int | None = None
    shareProcessNamespace: bool | None = None
    enableServiceLinks: bool | None = None
    preemptionPolicy: str | None = None
    overhead: dict[str, Any] | None = None
    readinessGates: list[dict[str, Any]] | None = None
    setHostnameAsFQDN: bool | None = None
    os: dict[str, Any] | None = None
    hostAliases: list[dict[str, Any]] | None = None
    schedulingGates: list[dict[str, Any]] | None = None
    resourceClaims: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _unique_containers(self) -> PodSpec:
        names = [c.name for c in self.containers]
        if len(set(names)) != len(names):
            raise ValueError(f"containers: duplicate container names {names}")
        return self


class PodTemplateSpec(Strict):
    metadata: PodTemplateMeta = Field(default_factory=PodTemplateMeta)
    spec: PodSpec
