"""Components: what a pipeline step runs, read from a typed Python function (or a launch step).

The function's signature is the component's interface: parameters typed ``int``, ``float``,
``str``, ``bool``, ``list``, ``dict`` (optionally with defaults), artifacts as ``Input[T]``,
``Output[T]``, ``InputPath("T")``, ``OutputPath("T")``; the return value is one parameter
output (``Output``) or a NamedTuple of them. The source shipped to the job is the function
alone, decorators removed, like KFP's lightweight components: module-level imports and
helpers do not travel, so the function imports what it needs in its body (a
:class:`ComponentSourceWarning` names module-level names the body uses).

How a runner calls it: execute ``source`` in :func:`lumiflow.runtime.types.component_namespace`,
compiled with ``__future__.annotations.compiler_flag`` so that annotations (a module-level
NamedTuple class, say) are never evaluated; call ``function`` with keyword arguments —
parameters as values, ``mode: object`` artifacts as :class:`~lumiflow.runtime.types.Artifact`
objects, ``mode: path`` artifacts as path strings. The parameter outputs are the return
value: ``Output`` is the value itself, otherwise each output is the returned tuple's field of
that name (or its position among the parameter outputs, for a plain tuple).
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import math
import re
import symtable
import textwrap
import types
import typing
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union, overload

from lumiflow.pipelines.spec import (
    LAUNCH_ARTIFACTS,
    LAUNCH_OUTPUTS,
    PARAMETER_TYPES,
    CompileError,
    manifest_sha256,
    source_sha256,
)
from lumiflow.runtime.types import artifact_annotation, component_namespace, path_annotation

if TYPE_CHECKING:
    from lumiflow.pipelines.dsl import Builder, PipelineTask

SINGLE_OUTPUT = "Output"  # KFP's name for a component's return value
MARKER = "{{lumiflow.channel}}"
BUILDER: ContextVar[Builder | None] = ContextVar("lumiflow_pipeline_builder", default=None)


class ComponentSourceWarning(UserWarning):
    """A component's body uses a module-level name that will not exist where it runs."""


def dns_name(value: str, what: str) -> str:
    """``Generate_Data`` → ``generate-data``: a DNS-1123 label, or CompileError."""
    text = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:63].strip("-")
    if not text:
        raise CompileError(f"{what} {value!r} gives no usable name (use letters or digits)")
    return text


# --- component signatures -----------------------------------------------------------------


@dataclass(frozen=True)
class IO:
    """One input or output of a component, as the spec records it."""

    name: str
    kind: Literal["parameter", "artifact"]
    type: str | None = None
    artifact_type: str | None = None
    mode: Literal["object", "path"] | None = None
    default: Any = None
    optional: bool = False

    def to_spec(self, *, with_default: bool = False) -> dict[str, Any]:
        if self.kind == "parameter":
            out: dict[str, Any] = {"kind": "parameter", "type": self.type}
        else:
            out = {"kind": "artifact", "artifactType": self.artifact_type, "mode": self.mode}
        if with_default and self.optional:
            out["default"] = self.default
        return out


def parameter_type(ann: Any) -> tuple[str, bool] | None:
    """``("int", optional)`` for ``int``, ``list[int]``, ``Optional[dict]``...; None if unsupported."""
    optional = False
    if typing.get_origin(ann) in (Union, types.UnionType):
        members = typing.get_args(ann)
        rest = [m for m in members if m is not type(None)]
        if len(rest) != 1 or len(members) != 2:
            return None
        ann, optional = rest[0], True
    base = typing.get_origin(ann) or ann
    for name, py_type in PARAMETER_TYPES.items():
        if base is py_type:
            return name, optional
    return None


def fits(type_name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return type_name == "bool"
    if isinstance(value, int):
        return type_name in ("int", "float")
    return isinstance(value, PARAMETER_TYPES[type_name])


_TYPES_HELP = "int, float, str, bool, list, dict, Input[...], Output[...], InputPath(...) or OutputPath(...)"


def type_hints(func: Callable[..., Any], what: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise CompileError(f"{what}: cannot read its annotations: {type(exc).__name__}: {exc}") from None


def _strip_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (Union, types.UnionType):
        rest = [m for m in typing.get_args(ann) if m is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return ann


def _interface(func: Callable[..., Any]) -> tuple[dict[str, IO], dict[str, IO]]:
    """The inputs and outputs of a component function, in signature order."""
    fname = func.__name__
    hints = type_hints(func, f"component {fname}")
    inputs: dict[str, IO] = {}
    outputs: dict[str, IO] = {}
    for p in inspect.signature(func).parameters.values():
        where = f"component {fname}, parameter {p.name!r}"
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise CompileError(f"{where}: *args and **kwargs are not supported", field=f"{fname}.{p.name}")
        if p.name not in hints:
            raise CompileError(
                f"{where} has no type annotation: annotate it with {_TYPES_HELP}", field=f"{fname}.{p.name}"
            )
        ann = hints[p.name]
        has_default = p.default is not inspect.Parameter.empty
        found = artifact_annotation(_strip_optional(ann)) or path_annotation(_strip_optional(ann))
        if found is not None:
            direction, cls = found
            mode: Literal["object", "path"] = (
                "object" if artifact_annotation(_strip_optional(ann)) else "path"
            )
            if direction == "output":
                if has_default:
                    raise CompileError(f"{where}: an output cannot have a default", field=f"{fname}.{p.name}")
                if p.name == SINGLE_OUTPUT:
                    raise CompileError(f"{where}: {SINGLE_OUTPUT!r} is reserved for the return value")
                outputs[p.name] = IO(p.name, "artifact", artifact_type=cls.type_name(), mode=mode)
            else:
                if has_default and p.default is not None:
                    raise CompileError(f"{where}: an artifact input's default can only be None")
                inputs[p.name] = IO(
                    p.name, "artifact", artifact_type=cls.type_name(), mode=mode, optional=has_default
                )
            continue
        found_type = parameter_type(ann)
        if found_type is None:
            raise CompileError(
                f"{where}: type {ann!r} is not supported; use {_TYPES_HELP}", field=f"{fname}.{p.name}"
            )
        type_name, _ = found_type
        if has_default and p.default is not None:
            if not fits(type_name, p.default):
                raise CompileError(
                    f"{where}: default {p.default!r} is not a {type_name}", field=f"{fname}.{p.name}"
                )
            json_value(p.default, where)
        inputs[p.name] = IO(p.name, "parameter", type=type_name, default=p.default, optional=has_default)
    for name, io in _return_outputs(func, hints).items():
        if name in outputs:
            raise CompileError(f"component {fname}: output {name!r} is both a parameter and a return field")
        outputs[name] = io
    return inputs, outputs


def _return_outputs(func: Callable[..., Any], hints: dict[str, Any]) -> dict[str, IO]:
    fname = func.__name__
    ann = hints.get("return")
    if ann is None or ann is type(None):
        return {}
    if isinstance(ann, type) and issubclass(ann, tuple) and hasattr(ann, "_fields"):
        fields = typing.get_type_hints(ann)
        out: dict[str, IO] = {}
        for field_name in ann._fields:
            found = parameter_type(fields.get(field_name))
            if found is None:
                raise CompileError(
                    f"component {fname}: return field {field_name!r} has type {fields.get(field_name)!r}; "
                    "return fields are int, float, str, bool, list or dict"
                )
            if field_name == SINGLE_OUTPUT:
                raise CompileError(f"component {fname}: a return field cannot be named {SINGLE_OUTPUT!r}")
            out[field_name] = IO(field_name, "parameter", type=found[0])
        return out
    found = parameter_type(ann)
    if found is None:
        raise CompileError(
            f"component {fname}: return type {ann!r} is not supported; return int, float, str, bool, "
            "list, dict, None or a NamedTuple of those (write artifacts through Output[...] parameters)"
        )
    return {SINGLE_OUTPUT: IO(SINGLE_OUTPUT, "parameter", type=found[0])}


def _source(func: Callable[..., Any]) -> str:
    """The function's source, dedented, without its decorators."""
    try:
        lines, _ = inspect.getsourcelines(func)
    except (OSError, TypeError) as exc:
        raise CompileError(
            f"component {func.__name__}: its source is not available ({exc}); define it in a .py file"
        ) from None
    text = textwrap.dedent("".join(lines))
    try:
        node = ast.parse(text).body[0]
    except (SyntaxError, IndexError) as exc:
        raise CompileError(f"component {func.__name__}: cannot parse its source: {exc}") from None
    if not isinstance(node, ast.FunctionDef):
        raise CompileError(f"component {func.__name__}: a component is a plain (not async) def function")
    return "".join(text.splitlines(keepends=True)[node.lineno - 1 :])


def _module_names_used(func: Callable[..., Any], source: str) -> list[str]:
    """Module-level names the body uses that will not exist where the component runs."""
    try:
        table = symtable.symtable(source, "<component>", "exec")
    except SyntaxError:
        return []
    used: set[str] = set()

    def collect(t: symtable.SymbolTable) -> None:
        for sym in t.get_symbols():
            if sym.is_global() and sym.is_referenced():
                used.add(sym.get_name())
        for child in t.get_children():
            collect(child)

    for child in table.get_children():
        if child.get_name() == func.__name__:
            collect(child)
    provided = set(component_namespace()) | set(vars(builtins)) | {func.__name__}
    return sorted(n for n in used - provided if n in func.__globals__)


# --- components ---------------------------------------------------------------------------


class Component:
    """What a task runs; subclasses say how (Python function or launched job)."""

    name: str
    inputs: dict[str, IO]
    outputs: dict[str, IO]

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    def _task(self, kwargs: dict[str, Any], args: tuple[Any, ...] = ()) -> PipelineTask:
        builder = active(f"component {self.name}")
        if args:
            raise CompileError(
                f"component {self.name}: pass arguments by keyword inside a pipeline "
                f"({len(args)} positional given; inputs: {', '.join(self.inputs) or 'none'})"
            )
        return builder.add_task(self, kwargs)


class PythonComponent(Component):
    """A typed Python function run as a pipeline step (see the module docstring)."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        packages_to_install: list[str] | None = None,
        base_image: str | None = None,
    ) -> None:
        if not inspect.isfunction(func):
            raise CompileError(f"@dsl.component decorates a function, not {type(func).__name__}")
        if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func):
            raise CompileError(
                f"component {func.__name__}: a component is a plain function (not async, no yield)"
            )
        packages = list(packages_to_install or [])
        if not all(isinstance(p, str) and p.strip() for p in packages):
            raise CompileError(
                f"component {func.__name__}: packages_to_install is a list of requirement strings"
            )
        if base_image is not None and (not isinstance(base_image, str) or not base_image.strip()):
            raise CompileError(f"component {func.__name__}: base_image is an image name")
        self.python_func = func
        self.name = func.__name__
        self.packages_to_install = packages
        self.base_image = base_image
        self.inputs, self.outputs = _interface(func)
        self.source = _source(func)
        self.source_sha256 = source_sha256(self.source)
        functools.update_wrapper(self, func)
        missing = _module_names_used(func, self.source)
        if missing:
            warnings.warn(
                f"component {self.name} uses module-level {', '.join(missing)}, which will not exist when "
                "it runs as a pipeline step: import or define them inside the function",
                ComponentSourceWarning,
                stacklevel=3,
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A task inside a pipeline; the plain function anywhere else."""
        if BUILDER.get() is None:
            return self.python_func(*args, **kwargs)
        return self._task(kwargs, args)

    def spec(self) -> dict[str, Any]:
        return {
            "function": self.python_func.__name__,
            "source": self.source,
            "sourceSha256": self.source_sha256,
            "packagesToInstall": list(self.packages_to_install),
            "baseImage": self.base_image,
            "inputs": {n: io.to_spec(with_default=True) for n, io in self.inputs.items()},
            "outputs": {n: io.to_spec() for n, io in self.outputs.items()},
            "launch": None,
        }

    def __repr__(self) -> str:
        return f"<component {self.name}>"


@overload
def component(func: Callable[..., Any], /) -> PythonComponent: ...
@overload
def component(
    *, packages_to_install: list[str] | None = None, base_image: str | None = None
) -> Callable[[Callable[..., Any]], PythonComponent]: ...
def component(
    func: Callable[..., Any] | None = None,
    /,
    *,
    packages_to_install: list[str] | None = None,
    base_image: str | None = None,
) -> PythonComponent | Callable[[Callable[..., Any]], PythonComponent]:
    """``@dsl.component`` or ``@dsl.component(packages_to_install=[...], base_image=...)``."""
    if func is not None:
        return PythonComponent(func)

    def decorate(f: Callable[..., Any]) -> PythonComponent:
        return PythonComponent(f, packages_to_install=packages_to_install, base_image=base_image)

    return decorate


class LaunchComponent(Component):
    """A step that creates a TrainingJob or an Experiment and waits for it to finish, or
    registers a model version."""

    def __init__(
        self, kind: Literal["TrainingJob", "Experiment", "Model"], manifest: dict[str, Any], name: str
    ) -> None:
        self.kind = kind
        self.name = name
        self.manifest = manifest
        self.inputs = {}
        self.outputs = {n: IO(n, "parameter", type=t) for n, t in LAUNCH_OUTPUTS[kind].items()}
        for n, artifact_type in LAUNCH_ARTIFACTS.get(kind, {}).items():
            self.outputs[n] = IO(n, "artifact", artifact_type=artifact_type, mode="object")

    def spec(self) -> dict[str, Any]:
        launch = {"kind": self.kind, "manifest": self.manifest}
        return {
            "function": None,
            "source": None,
            "sourceSha256": manifest_sha256(launch),
            "packagesToInstall": [],
            "baseImage": None,
            "inputs": {n: io.to_spec() for n, io in self.inputs.items()},
            "outputs": {n: io.to_spec() for n, io in self.outputs.items()},
            "launch": launch,
        }


def json_value(value: Any, where: str) -> Any:
    """``value`` with tuples as lists; CompileError if it is not plain JSON."""
    if getattr(type(value), "_lumiflow_reference", False):
        raise CompileError(
            f"{where}: a task output or parameter inside a list or dict; pass it as its own argument"
        )
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CompileError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        if MARKER in value:
            raise CompileError(
                f"{where}: a task output or pipeline parameter is formatted into a string; pass it as its "
                "own argument and build the string inside the component"
            )
        return value
    if isinstance(value, list | tuple):
        return [json_value(v, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CompileError(f"{where}: dict keys must be strings, not {key!r}")
            out[key] = json_value(item, where)
        return out
    raise CompileError(f"{where}: {type(value).__name__} {value!r:.60} is not a JSON value")


def active(what: str) -> Builder:
    builder = BUILDER.get()
    if builder is None:
        raise CompileError(f"{what} is used inside a @dsl.pipeline function")
    return builder
