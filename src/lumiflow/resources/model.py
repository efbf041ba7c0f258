"""``Model``: a registered model version — an artifact (a checkpoint, a saved model) under a
name, with a stage (None, Staging, Production, Archived), registered by a pipeline step
(``dsl.register_model``) or by hand, and traceable through lineage to what produced it.

Each object is one version, named ``{model}-v{version}`` and labelled
``lumiflow.dev/model={model}`` (``lumi get models -l lumiflow.dev/model=calo3dgan``). Only the
stage and the description may change afterwards.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from lumiflow.resources.meta import Lenient, ResourceModel, Strict

MODEL_LABEL = "lumiflow.dev/model"


class Stage(StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class ModelArtifact(Strict):
    uri: str = Field(min_length=1, max_length=2048)
    digest: str | None = Field(default=None, max_length=80)
    size: int | None = Field(default=None, ge=0)
    type: str = "Model"


class ModelSource(Lenient):
    pipelineRun: str | None = None
    step: str | None = None
    trainingJob: str | None = None


class ModelSpec(Strict):
    model: str = Field(min_length=1, max_length=56)
    version: int = Field(ge=1)
    artifact: ModelArtifact
    stage: Stage = Stage.NONE
    description: str | None = Field(default=None, max_length=4096)
    source: ModelSource = Field(default_factory=ModelSource)


class Model(ResourceModel):
    KIND: ClassVar[str] = "Model"
    spec: ModelSpec
    status: dict[str, Any] = Field(default_factory=dict)


def check_update(old: dict[str, Any], new: dict[str, Any], _status: dict[str, Any]) -> None:
    for key in sorted(set(old) | set(new)):
        if key not in ("stage", "description") and old.get(key) != new.get(key):
            raise ValueError(f"spec.{key}")


def model_labels(spec: dict[str, Any]) -> dict[str, str]:
    return {MODEL_LABEL: str(spec.get("model", ""))}
