"""Object metadata, the base of every kind, and turning pydantic's errors into ours.

Names follow Kubernetes: DNS-1123 labels (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most 63
characters) for objects and profiles; label keys and values as Kubernetes validates them.
Server-set fields (uid, resourceVersion, creationTimestamp, ...) are accepted on input so
that ``lumi get -o yaml`` output can be applied again, and then ignored.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, ClassVar, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lumiflow.common.errors import ValidationFailed

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_ANNOTATIONS_BYTES = 256 * 1024


def check_name(value: str, *, what: str = "name", max_length: int = 63) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} is required")
    if len(value) > max_length:
        raise ValueError(f"{what} {value[:80]!r} is longer than {max_length} characters")
    if not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{what} {value[:80]!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key {key[:80]!r}: prefix must be a DNS subdomain")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"label key {key[:80]!r} must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )


def check_label_value(key: str, value: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"label {key[:80]!r}: value {value[:80]!r} must be at most 63 letters, digits, '-', '_' or '.'"
        )


class Strict(BaseModel):
    """Base for lumiflow's own schemas: unknown fields are errors (a typo is never ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=False)


class Lenient(BaseModel):
    """Base for Kubernetes structures lumiflow keeps but does not interpret."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OwnerReference(Lenient):
    apiVersion: str = ""
    kind: str
    name: str
    uid: str = ""
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(Strict):
    name: str | None = None
    generateName: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the server; accepted on input and ignored (so `get -o yaml` can be re-applied).
    uid: str | None = None
    resourceVersion: str | int | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    ownerReferences: list[OwnerReference] = Field(default_factory=list)
    finalizers: list[str] = Field(default_factory=list)
    managedFields: list[dict[str, Any]] | None = None
    selfLink: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("generateName")
    @classmethod
    def _generate_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 57 or not re.match(r"^[a-z0-9]([-a-z0-9]*)?$", value):
            raise ValueError("generateName must be a DNS-1123 prefix of at most 57 characters")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, what="namespace (profile)")

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            if len(value) > 64:
                raise ValueError("at most 64 labels")
            out: dict[str, str] = {}
            for key, item in value.items():
                check_label_key(str(key))
                text = item if isinstance(item, str) else _scalar_to_str(item, f"label {key}")
                check_label_value(str(key), text)
                out[str(key)] = text
            return out
        return value

    @field_validator("annotations", mode="before")
    @classmethod
    def _annotations(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                check_label_key(str(key))
                out[str(key)] = item if isinstance(item, str) else _scalar_to_str(item, f"annotation {key}")
            size = sum(len(k) + len(v) for k, v in out.items())
            if size > MAX_ANNOTATIONS_BYTES:
                raise ValueError(f"annotations take {size} bytes, more than {MAX_ANNOTATIONS_BYTES}")
            return out
        return value

    @field_validator("resourceVersion", mode="after")
    @classmethod
    def _rv(cls, value: str | int | None) -> str | int | None:
        if value is None or value == "":
            return None
        try:
            if int(value) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"resourceVersion {value!r} is not a non-negative integer") from None
        return value

    @property
    def resource_version(self) -> int | None:
        return int(self.resourceVersion) if self.resourceVersion not in (None, "") else None


def _scalar_to_str(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"{what}: value must be a string")


class Condition(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    status: str = "True"
    reason: str | None = None
    message: str | None = None
    lastUpdateTime: str | None = None
    lastTransitionTime: str | None = None


class ResourceModel(Strict):
    """``apiVersion/kind/metadata/spec/status``; subclasses narrow spec and status."""

    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = ""

    apiVersion: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def parse(cls, doc: dict[str, Any], *, root: str = "") -> Self:
        """Validates ``doc``; raises ValidationFailed naming the first wrong field."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise validation_failed(exc, cls, root=root) from None


# --- errors -------------------------------------------------------------------------------


def _inner_types(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(annotation):
            out.extend(_inner_types(arg))
        return out
    if origin is typing.Annotated:
        return _inner_types(get_args(annotation)[0])
    return [annotation]


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class whose field is named by the last element of ``loc``."""
    current: list[Any] = [root]
    for part in loc[:-1]:
        nxt: list[Any] = []
        for ann in current:
            for t in _inner_types(ann):
                origin = get_origin(t)
                if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(part, str):
                    field = t.model_fields.get(part)
                    if field is not None:
                        nxt.append(field.annotation)
                elif origin in (list, tuple) and isinstance(part, int):
                    nxt.extend(get_args(t)[:1])
                elif origin is dict and isinstance(part, str):
                    args = get_args(t)
                    if len(args) == 2:
                        nxt.append(args[1])
        current = nxt
    for ann in current:
        for t in _inner_types(ann):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return t
    return None


def format_loc(loc: tuple[Any, ...], root: str = "") -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith(("function-", "union[", "tagged-union")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_failed(exc: ValidationError, model: type[BaseModel], *, root: str = "") -> ValidationFailed:
    messages: list[dict[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p and p.endswith("]")))
        cause = (error.get("ctx") or {}).get("error")
        inner = getattr(cause, "field", None)
        if isinstance(inner, str) and inner:
            # A model-level rule that knows which field it is about (FieldError).
            loc = (*loc, *inner.split("."))
        field = format_loc(loc, root)
        if error["type"] == "extra_forbidden":
            parent = _model_at(model, loc)
            name = str(loc[-1]) if loc else "?"
            msg = f"unknown field {name!r}"
            if parent is not None:
                allowed = sorted(parent.model_fields)
                close = difflib.get_close_matches(name, allowed, n=1)
                msg += f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
        elif error["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = str(error["msg"])
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            given = error.get("input")
            if error["type"] in (
                "int_parsing",
                "int_type",
                "float_parsing",
                "bool_parsing",
                "string_type",
                "list_type",
                "dict_type",
                "model_type",
                "enum",
                "literal_error",
                "int_from_float",
            ):
                shown = repr(given)
                if len(shown) > 60:
                    shown = shown[:57] + "..."
                msg = f"{msg}, got {shown}"
        messages.append({"field": field, "message": msg})
    first = messages[0] if messages else {"field": root, "message": "invalid"}
    text = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(messages) > 1:
        text += f" (and {len(messages) - 1} more error{'s' if len(messages) > 2 else ''})"
    return ValidationFailed(text, field=first["field"] or None, details=messages)
