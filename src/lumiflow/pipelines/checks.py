"""Checks the API applies when a pipeline version or a run is written."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from lumiflow.common.errors import ValidationFailed

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
