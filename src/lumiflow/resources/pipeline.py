"""Pipelines: ``Pipeline`` (a name), ``PipelineVersion`` (one compiled spec of it, immutable)
and ``PipelineRun`` (a run of a spec with parameter values; its status holds every node).

The compiled spec (``pipelineSpec``) is checked by :mod:`lumiflow.pipelines.spec` when a
version or a run is written (the API's service does it: the spec's schema belongs to the
pipelines layer, above this one); here it is kept as JSON.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field, field_validator

from lumiflow.resources.meta import Lenient, ResourceModel, Strict

MAX_PARAMETERS = 256


class RunState(StrEnum):
    """Kubeflow Pipelines' run and task states."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    def is_terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.SKIPPED, RunState.FAILED, RunState.CANCELED)


class PipelineSpecFields(Strict):
    description: str | None = Field(default=None, max_length=4096)


class Pipeline(ResourceModel):
    KIND: ClassVar[str] = "Pipeline"
    spec: PipelineSpecFields = Field(default_factory=PipelineSpecFields)
    status: dict[str, Any] = Field(default_factory=dict)


class PipelineVersionSpec(Strict):
    pipeline: str = Field(min_length=1, max_length=63)
    version: int = Field(ge=1)
    description: str | None = Field(default=None, max_length=4096)
    pipelineSpec: dict[str, Any]


class PipelineVersion(ResourceModel):
    KIND: ClassVar[str] = "PipelineVersion"
    spec: PipelineVersionSpec
    status: dict[str, Any] = Field(default_factory=dict)


class PipelineRunSpec(Strict):
    #: The pipeline and version to run (the latest when no version); the server copies that
    #: version's spec into ``pipelineSpec``, so a run keeps the spec it started with.
    pipeline: str | None = Field(default=None, max_length=63)
    version: int | None = Field(default=None, ge=1)
    pipelineSpec: dict[str, Any] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: Caching for the whole run (a step's own setting can only turn it off).
    caching: bool = True
    #: Set to stop the run: running steps are stopped, pending ones canceled.
    terminate: bool = False
    #: The cluster the steps run on (default: the profile's home cluster).
    cluster: str | None = None
    #: The recurring run that created this run, if any.
    recurringRun: str | None = None

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"at most {MAX_PARAMETERS} parameters")
        return value


class NodeStatus(Lenient):
    state: RunState = RunState.PENDING
    task: str | None = None
    component: str | None = None
    message: str | None = None
    startTime: str | None = None
    finishTime: str | None = None
    attempts: int = 0
    cached: bool = False
    cacheKey: str | None = None
    workload: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    iterations: int | None = None


class PipelineRunStatus(Lenient):
    state: RunState | None = None
    phase: str | None = None
    message: str | None = None
    startTime: str | None = None
    finishTime: str | None = None
    nodes: dict[str, NodeStatus] = Field(default_factory=dict)


class PipelineRun(ResourceModel):
    KIND: ClassVar[str] = "PipelineRun"
    spec: PipelineRunSpec
    status: PipelineRunStatus = Field(default_factory=PipelineRunStatus)


def check_run_update(old: dict[str, Any], new: dict[str, Any], _status: dict[str, Any]) -> None:
    """Only ``terminate`` may change once a run exists."""
    for key in sorted(set(old) | set(new)):
        if key != "terminate" and old.get(key) != new.get(key):
            raise ValueError(f"spec.{key}")


def check_version_update(old: dict[str, Any], new: dict[str, Any], _status: dict[str, Any]) -> None:
    if old != new:
        raise ValueError("spec")
