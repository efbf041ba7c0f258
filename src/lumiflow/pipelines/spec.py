"""The pipeline's intermediate spec: what the compiler writes and the PipelineRun controller runs.

A :class:`PipelineSpec` is plain data (YAML/JSON through pydantic, never pickled): the pipeline's
parameters, its components (each one's function source and typed inputs/outputs, or the
manifest of a training job or experiment it launches) and a DAG of tasks whose groups
(``If``/``Elif``/``Else``, ``ParallelFor``, ``ExitHandler``) hold sub-DAGs.

Validation is the same whether the spec came from the compiler or from a hand-written file:
the graph rules (every reference resolves, types match, required inputs are given, no cycle)
run in :class:`PipelineSpec`'s model validator. That validator also *completes* ``dependsOn``:
a task depends on every task whose output it consumes in its own DAG, and a group depends on
every task outside it that something inside it consumes, so the planner can order a DAG from
``dependsOn`` alone. References resolve by name from the task's own DAG outwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator as _Iter
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from lumiflow.common.errors import ValidationFailed
from lumiflow.common.quantity import QuantityError, parse_cpu, parse_memory
from lumiflow.pipelines.graph import PARAMETER_TYPES, SpecError, check_dns, check_graph, value_type
from lumiflow.runtime.types import ARTIFACT_TYPES

__all__ = [
    "ARGUMENT_KINDS",
    "LAUNCH_OUTPUTS",
    "PARAMETER_TYPES",
    "SCHEMA_VERSION",
    "Argument",
    "CompileError",
    "ComponentSpec",
    "Condition",
    "DagSpec",
    "InputSpec",
    "IteratorSpec",
    "LaunchSpec",
    "LoopItemRef",
    "OutputSpec",
    "ParameterSpec",
    "PipelineSpec",
    "ResourcesSpec",
    "SpecError",
    "TaskOutputRef",
    "TaskSpec",
    "dump_yaml",
    "load",
    "manifest_sha256",
    "source_sha256",
]

SCHEMA_VERSION: Final = "lumiflow.dev/pipeline/v1"
ParamType = Literal["int", "float", "str", "bool", "list", "dict"]
ARGUMENT_KINDS = ("parameter", "constant", "taskOutput", "loopItem", "collected")
LAUNCH_OUTPUTS: dict[str, dict[str, ParamType]] = {
    "TrainingJob": {"job_name": "str", "phase": "str"},
    "Experiment": {"best_parameters": "dict", "best_value": "float"},
    "Model": {"model_name": "str", "version": "int"},
}
#: Artifacts a launch step produces: a training job's checkpoint directory, stored once it
#: succeeded (what a later step validates or registers).
LAUNCH_ARTIFACTS: dict[str, dict[str, str]] = {"TrainingJob": {"checkpoints": "Model"}}
PLACEHOLDER = re.compile(r"\$\{inputs\.([A-Za-z_][A-Za-z0-9_]*)\}")


class CompileError(ValidationFailed):
    """A pipeline, component or spec is wrong; the message names the function, task or field."""

    code = "invalid_pipeline"


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def manifest_sha256(launch: dict[str, Any]) -> str:
    """The identity of a launch step's code: its kind and manifest, canonical JSON."""
    return source_sha256(json.dumps(launch, sort_keys=True, separators=(",", ":"), default=str))


def _check_identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise ValueError(f"{what} {value!r} must be a Python identifier")
    return value


def _fits(param_type: str, value: Any) -> bool:
    actual = value_type(value)
    return actual == param_type or (param_type == "float" and actual == "int")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- parameters, inputs and outputs -------------------------------------------------------


class _Optional(_Model):
    """A default given means the value may be left out (``isOptional``)."""

    @model_validator(mode="before")
    @classmethod
    def _optional(cls, data: Any) -> Any:
        if isinstance(data, dict) and "default" in data and "isOptional" not in data:
            return {**data, "isOptional": True}
        return data


class ParameterSpec(_Optional):
    """A pipeline parameter. ``isOptional`` (KFP's word) is true when it has a default, which may
    be null; only ``default`` is written out and its presence sets ``isOptional`` again on load."""

    type: ParamType
    default: Any = None
    isOptional: bool = False

    @model_validator(mode="after")
    def _default_fits(self) -> ParameterSpec:
        if self.isOptional and self.default is not None and not _fits(self.type, self.default):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.isOptional:
            out["default"] = self.default
        return out


class InputSpec(_Optional):
    """One input of a component, in signature order.

    ``kind: parameter`` has ``type``; ``kind: artifact`` has ``artifactType`` (a name of
    :data:`lumiflow.runtime.types.ARTIFACT_TYPES`) and ``mode``: ``object`` (the function gets an
    artifact object, ``Input[T]``) or ``path`` (a ``str`` path, ``InputPath``). ``isOptional`` as
    in :class:`ParameterSpec`; an optional artifact input's default is always null.
    """

    kind: Literal["parameter", "artifact"]
    type: ParamType | None = None
    artifactType: str | None = None
    mode: Literal["object", "path"] | None = None
    default: Any = None
    isOptional: bool = False

    @model_validator(mode="after")
    def _shape(self) -> InputSpec:
        _check_io_shape(self)
        if self.isOptional and self.default is not None:
            if self.kind == "artifact":
                raise ValueError("an artifact input's default can only be null")
            if self.type is not None and not _fits(self.type, self.default):
                raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        out = _dump_io(self)
        if self.isOptional:
            out["default"] = self.default
        return out


class OutputSpec(_Model):
    """One output: an artifact (``Output[T]``/``OutputPath``, in signature order) or a parameter.

    Parameter outputs are the function's return value: ``Output`` for a single value, else the
    fields of the returned NamedTuple (by name, in order).
    """

    kind: Literal["parameter", "artifact"]
    type: ParamType | None = None
    artifactType: str | None = None
    mode: Literal["object", "path"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> OutputSpec:
        _check_io_shape(self)
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return _dump_io(self)


def _check_io_shape(io: InputSpec | OutputSpec) -> None:
    if io.kind == "parameter":
        if io.type is None:
            raise ValueError("a parameter needs a type (int, float, str, bool, list or dict)")
        if io.artifactType is not None or io.mode is not None:
            raise ValueError("artifactType and mode are for artifacts, not parameters")
    else:
        if io.type is not None:
            raise ValueError("an artifact has artifactType, not type")
        if io.artifactType is None:
            raise ValueError(f"an artifact needs artifactType (one of {', '.join(ARTIFACT_TYPES)})")
        short = io.artifactType.removeprefix("system.")
        if short not in ARTIFACT_TYPES:
            raise ValueError(
                f"unknown artifactType {io.artifactType!r}: use one of {', '.join(ARTIFACT_TYPES)}"
            )
        io.artifactType = short
        if io.mode is None:
            io.mode = "object"


def _dump_io(io: InputSpec | OutputSpec) -> dict[str, Any]:
    if io.kind == "parameter":
        return {"kind": "parameter", "type": io.type}
    return {"kind": "artifact", "artifactType": io.artifactType, "mode": io.mode}


class LaunchSpec(_Model):
    """A step that creates a TrainingJob or an Experiment from ``manifest`` and waits for it.

    String values in the manifest may hold ``${inputs.NAME}`` placeholders, NAME being one of
    the component's inputs; the runner replaces them with the argument's value at run time (a
    string that is exactly one placeholder becomes the value itself, keeping its type).
    """

    kind: Literal["TrainingJob", "Experiment", "Model"]
    manifest: dict[str, Any]


def placeholders(value: Any) -> _Iter[str]:
    """The input names of every ``${inputs.NAME}`` in a manifest, in order."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield match.group(1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from placeholders(key)
            yield from placeholders(item)
    elif isinstance(value, list):
        for item in value:
            yield from placeholders(item)


class ComponentSpec(_Model):
    """A component: a Python function (``source``) or a launch step (``launch``).

    ``sourceSha256`` identifies the code for caching; for a launch step it is the hash of the
    launch kind and manifest (see :func:`manifest_sha256`). It is computed when absent and must
    match when given.
    """

    function: str | None = None
    source: str | None = None
    sourceSha256: str | None = None
    packagesToInstall: list[str] = Field(default_factory=list)
    baseImage: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    launch: LaunchSpec | None = None

    @model_validator(mode="after")
    def _rules(self) -> ComponentSpec:
        for name in self.inputs:
            _check_identifier(name, "input name")
        for name in self.outputs:
            _check_identifier(name, "output name")
        if self.launch is None:
            if not self.function or not self.source:
                raise ValueError("a component needs function and source (or launch)")
            _check_identifier(self.function, "function")
            expected = source_sha256(self.source)
        else:
            if self.source is not None or self.function is not None:
                raise ValueError("a launch component has no function or source")
            wanted = LAUNCH_OUTPUTS[self.launch.kind]
            made = LAUNCH_ARTIFACTS.get(self.launch.kind, {})
            if not self.outputs:
                self.outputs = {name: OutputSpec(kind="parameter", type=t) for name, t in wanted.items()}
                for name, artifact_type in made.items():
                    self.outputs[name] = OutputSpec(kind="artifact", artifactType=artifact_type)
            got = {name: out.type for name, out in self.outputs.items() if out.kind == "parameter"}
            got_artifacts = {n: o.artifactType for n, o in self.outputs.items() if o.kind == "artifact"}
            if got != wanted or (got_artifacts and got_artifacts != made):
                raise ValueError(f"a {self.launch.kind} step's outputs are {wanted} and {made}, not {got}")
            if self.launch.kind == "Model":
                artifacts = [n for n, io in self.inputs.items() if io.kind == "artifact"]
                if artifacts != ["model"]:
                    raise ValueError("a model registration takes one artifact input, 'model'")
            for name in placeholders(self.launch.manifest):
                if name not in self.inputs:
                    raise ValueError(
                        f"the manifest uses ${{inputs.{name}}} but there is no input {name!r} "
                        f"(inputs: {', '.join(self.inputs) or 'none'})"
                    )
            expected = manifest_sha256(self.launch.model_dump())
        if self.sourceSha256 is None:
            self.sourceSha256 = expected
        elif self.sourceSha256 != expected:
            raise ValueError("sourceSha256 does not match the source (remove it to have it computed)")
        return self


# --- arguments and conditions -------------------------------------------------------------


class TaskOutputRef(_Model):
    task: str
    output: str


class LoopItemRef(_Model):
    loop: str
    field: str | None = None


class Argument(_Model):
    """Where an input's value comes from: exactly one of ``parameter`` (a pipeline parameter's
    name), ``constant``, ``taskOutput``, ``loopItem`` or ``collected``. ``kind`` says which;
    it is not written out (the key is)."""

    kind: Literal["parameter", "constant", "taskOutput", "loopItem", "collected"]
    parameter: str | None = None
    constant: Any = None
    taskOutput: TaskOutputRef | None = None
    loopItem: LoopItemRef | None = None
    collected: TaskOutputRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data:
            keys = [k for k in data if k in ARGUMENT_KINDS]
            if len(keys) != 1 or len(data) != 1:
                raise ValueError(
                    f"an argument has exactly one of {', '.join(ARGUMENT_KINDS)}; got {sorted(map(str, data))}"
                )
            return {"kind": keys[0], **data}
        if not isinstance(data, dict) and not isinstance(data, Argument):
            raise ValueError(f"an argument is a mapping with one of {', '.join(ARGUMENT_KINDS)}")
        return data

    @model_validator(mode="after")
    def _present(self) -> Argument:
        if self.kind != "constant" and getattr(self, self.kind) is None:
            raise ValueError(f"{self.kind} needs a value")
        if self.kind == "constant" and value_type(self.constant) == "?":
            raise ValueError(f"constant {self.constant!r} is not a JSON value")
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return {self.kind: getattr(self, self.kind)}


class Condition(_Model):
    """``{op: "==", left, right}`` (ops ``== != < <= > >=``), ``{op: and, args: [...]}`` or
    ``{op: not, arg: ...}``. Elif and Else compile to ``and`` of the negated earlier branches."""

    op: Literal["==", "!=", "<", "<=", ">", ">=", "and", "not"]
    left: Argument | None = None
    right: Argument | None = None
    args: list[Condition] | None = None
    arg: Condition | None = None

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        if self.op == "and":
            ok = bool(self.args) and self.left is None and self.right is None and self.arg is None
            need = "args (a non-empty list)"
        elif self.op == "not":
            ok = self.arg is not None and self.left is None and self.right is None and self.args is None
            need = "arg"
        else:
            ok = self.left is not None and self.right is not None and self.args is None and self.arg is None
            need = "left and right"
        if not ok:
            raise ValueError(f"a condition with op {self.op!r} has exactly {need}")
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        if self.op == "and":
            return {"op": "and", "args": self.args}
        if self.op == "not":
            return {"op": "not", "arg": self.arg}
        return {"op": self.op, "left": self.left, "right": self.right}


class IteratorSpec(_Model):
    items: Argument
    parallelism: int = Field(default=0, ge=0)


class ResourcesSpec(_Model):
    """What a step asks for; only what was set is written. KFP's requests and limits both land
    here (lumiflow has one resource request per replica)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _strings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("cpu", "memory"):
                if isinstance(data.get(key), int | float) and not isinstance(data.get(key), bool):
                    data[key] = str(data[key])
        return data

    @model_validator(mode="after")
    def _quantities(self) -> ResourcesSpec:
        try:
            if self.cpu is not None:
                parse_cpu(self.cpu)
            if self.memory is not None:
                parse_memory(self.memory)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return {
            k: v for k, v in (("cpu", self.cpu), ("memory", self.memory), ("gpu", self.gpu)) if v is not None
        }


class TaskSpec(_Model):
    """A task: a component's step (``component``) or a group holding a sub-DAG (``dag``) with
    exactly one of ``condition``, ``iterator`` or ``exitHandler``."""

    component: str | None = None
    dag: DagSpec | None = None
    arguments: dict[str, Argument] = Field(default_factory=dict)
    dependsOn: list[str] = Field(default_factory=list)
    condition: Condition | None = None
    iterator: IteratorSpec | None = None
    exitHandler: bool = False
    exitTask: str | None = None
    caching: bool = True
    retries: int = Field(default=0, ge=0)
    displayName: str | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    env: dict[str, str] = Field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return self.dag is not None


class DagSpec(_Model):
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)


class PipelineSpec(_Model):
    schemaVersion: Literal["lumiflow.dev/pipeline/v1"] = SCHEMA_VERSION
    name: str
    description: str | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    components: dict[str, ComponentSpec] = Field(default_factory=dict)
    root: DagSpec = Field(default_factory=DagSpec)

    @model_validator(mode="after")
    def _graph(self) -> PipelineSpec:
        check_dns(self.name, "pipeline name")
        for name in self.parameters:
            _check_identifier(name, "parameter name")
        for key in self.components:
            check_dns(key, "component key")
        try:
            check_graph(self)
        except SpecError as exc:
            # Not a ValueError: pydantic lets it through, so callers get the field path as is.
            raise CompileError(f"{exc.field}: {exc.message}", field=exc.field) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return dump_yaml(self)

    def walk(self) -> _Iter[tuple[list[str], str, TaskSpec]]:
        """Every task, depth first: (the names of its enclosing groups, its name, the task)."""
        yield from _walk(self.root, [])


Condition.model_rebuild()
TaskSpec.model_rebuild()


def _walk(dag: DagSpec, groups: list[str]) -> _Iter[tuple[list[str], str, TaskSpec]]:
    for name, task in dag.tasks.items():
        yield groups, name, task
        if task.dag is not None:
            yield from _walk(task.dag, [*groups, name])


# --- YAML ---------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (component sources) as literal blocks, readable in the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(spec: PipelineSpec) -> str:
    return yaml.dump(spec.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def compile_error(exc: ValidationError, *, where: str = "") -> CompileError:
    """The first problem of a pydantic error as :class:`CompileError` (``field`` set)."""
    problems: list[dict[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error["loc"]]
        path = ".".join(loc).replace(".[", "[")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, SpecError):
            path = f"{path}.{cause.field}" if path else cause.field
            message = cause.message
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "required field is missing"
            elif error["type"] == "extra_forbidden":
                message = "unknown field"
        problems.append({"field": path, "message": message})
    first = problems[0] if problems else {"field": "", "message": "invalid pipeline spec"}
    text = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return CompileError(f"{where}{text}", field=first["field"] or None, details=problems)


def validate(data: Any, *, where: str = "") -> PipelineSpec:
    """``PipelineSpec.model_validate`` with every problem raised as :class:`CompileError`."""
    if not isinstance(data, dict):
        raise CompileError(f"{where}a pipeline spec is a mapping, not {type(data).__name__}")
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise compile_error(exc, where=where) from None
    except CompileError as exc:
        raise CompileError(f"{where}{exc.message}", field=exc.field) from None


def load(source: str | Path | dict[str, Any]) -> PipelineSpec:
    """A spec from YAML text, a file path, or an already parsed mapping; checked in full."""
    where = ""
    if isinstance(source, dict):
        return validate(source)
    if isinstance(source, Path) or ("\n" not in source and source.endswith((".yaml", ".yml", ".json"))):
        path = Path(source)
        where = f"{path}: "
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CompileError(f"cannot read {path}: {exc.strerror or exc}") from None
    else:
        text = source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CompileError(f"{where}not valid YAML: {exc}") from None
    return validate(data, where=where)
