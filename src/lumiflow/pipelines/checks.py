"""Checks the API applies when a pipeline version or a run is written, and the resolution of
a run's pipeline and version into the spec it runs (shared by the API and the recurring-run
controller, so that a scheduled run is made exactly like one a user creates)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from lumiflow.common.errors import ValidationFailed
from lumiflow.store.base import ResourceStore
from lumiflow.store.selectors import parse_selector

PIPELINE_LABEL = "pipelines.lumiflow.dev/pipeline"
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def checked_pipeline_spec(raw: Any, field: str) -> dict[str, Any]:
    """The compiled spec, validated (cycles, references, types) and normalised."""
    from lumiflow.pipelines.spec import PipelineSpec

    if not isinstance(raw, dict):
        raise ValidationFailed(f"{field} must be a compiled pipeline (lumi pipeline compile)", field=field)
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationFailed as exc:
        inner = f"{field}.{exc.field}" if exc.field else field
        raise ValidationFailed(f"{field}: {exc.message}", field=inner) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ValidationFailed(
            f"{field}.{loc}: {msg}" if loc else f"{field}: {msg}", field=f"{field}.{loc}" if loc else field
        ) from None
    return spec.model_dump(mode="json", exclude_none=True)


def _coerce(value: Any, wanted: str) -> Any:
    """A value given as text (``lumi run create --param n=5``) read as its declared type."""
    if not isinstance(value, str) or wanted == "str":
        return value
    try:
        if wanted == "int":
            return int(value)
        if wanted == "float":
            return float(value)
        if wanted == "bool" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if wanted in ("list", "dict"):
            return json.loads(value)
    except ValueError:
        return value
    return value


def check_run_parameters(spec: dict[str, Any], given: dict[str, Any]) -> None:
    """Every parameter known, of its type (text read as the type); every one without a
    default given. ``given`` is updated with the typed values."""
    declared: dict[str, Any] = spec.get("parameters") or {}
    for name in list(given):
        if name in declared:
            given[name] = _coerce(given[name], str((declared[name] or {}).get("type", "str")))
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ValidationFailed(
                f"spec.parameters.{name}: the pipeline has no parameter {name!r} (parameters: {known})",
                field=f"spec.parameters.{name}",
            )
        wanted = str((declared[name] or {}).get("type", "str"))
        allowed = _TYPES.get(wanted)
        ok = allowed is None or (
            isinstance(value, allowed) and not (wanted != "bool" and isinstance(value, bool))
        )
        if not ok:
            raise ValidationFailed(
                f"spec.parameters.{name}: expected {wanted}, got {value!r}", field=f"spec.parameters.{name}"
            )
    for name, p in declared.items():
        if name not in given and "default" not in (p or {}):
            raise ValidationFailed(
                f"spec.parameters.{name}: required (the pipeline gives it no default)",
                field=f"spec.parameters.{name}",
            )


def resolve_run_spec(store: ResourceStore, profile: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a run will run: ``pipeline`` (and ``version``, the latest when not given)
    resolved into a copy of that version's ``pipelineSpec``, or the inline ``pipelineSpec``
    checked; the parameters checked and read as their declared types.

    ``spec`` is not changed; the resolved copy is returned. Raises ValidationFailed naming
    the field (``spec.pipeline``, ``spec.version``, ``spec.parameters.NAME``, ...).
    """
    spec = {**spec, "parameters": dict(spec.get("parameters") or {})}
    if spec.get("pipelineSpec") is None:
        pipeline = spec.get("pipeline")
        if not pipeline:
            raise ValidationFailed(
                "a run needs spec.pipeline (a pipeline's name) or spec.pipelineSpec", field="spec.pipeline"
            )
        versions = store.list(
            "PipelineVersion", profile=profile, selector=parse_selector(f"{PIPELINE_LABEL}={pipeline}")
        ).items
        if not versions:
            raise ValidationFailed(
                f"spec.pipeline: no pipeline {pipeline!r} in profile {profile!r} (lumi pipeline upload)",
                field="spec.pipeline",
            )
        wanted = spec.get("version")
        chosen = max(versions, key=lambda v: int(v.spec.get("version", 0)))
        if wanted is not None:
            match = [v for v in versions if int(v.spec.get("version", 0)) == int(wanted)]
            if not match:
                have = ", ".join(str(v.spec.get("version")) for v in versions)
                raise ValidationFailed(
                    f"spec.version: pipeline {pipeline!r} has no version {wanted} (versions: {have})",
                    field="spec.version",
                )
            chosen = match[0]
        spec["version"] = int(chosen.spec.get("version", 0))
        spec["pipelineSpec"] = chosen.spec["pipelineSpec"]
    else:
        spec["pipelineSpec"] = checked_pipeline_spec(spec["pipelineSpec"], "spec.pipelineSpec")
    check_run_parameters(spec["pipelineSpec"], spec["parameters"])
    return spec
