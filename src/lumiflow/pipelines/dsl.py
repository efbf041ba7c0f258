"""The pipeline DSL, in Kubeflow Pipelines v2's words: ``from lumiflow import dsl``.

A component is a typed Python function::

    @dsl.component(packages_to_install=["pandas"])
    def prepare(n: int, data: dsl.Output[dsl.Dataset]) -> float:
        import pandas as pd  # imports go inside: only the function's own source is shipped
        ...

What runs in the job is the function's **source alone** (decorators removed), as with KFP's
lightweight components: module-level imports and helpers are not shipped, so the function
imports what it needs in its body. The DSL's names (``Input``, ``Dataset``, ``dsl``, ...) are
available to its annotations. A warning names any module-level name the body uses.

Calling a component inside a ``@dsl.pipeline`` function creates a task; calling it anywhere
else runs the plain function (handy in unit tests). Tasks are wired by passing one task's
``.output``/``.outputs["name"]`` to another's argument; control flow is ``dsl.If``/``Elif``/
``Else``, ``dsl.ParallelFor`` (with ``dsl.Collected`` to gather a loop's outputs) and
``dsl.ExitHandler``. ``dsl.training_job``/``dsl.experiment`` add steps that launch a
TrainingJob or a tuning Experiment and wait for it. :func:`lumiflow.pipelines.compiler.compile`
turns a pipeline into a :class:`~lumiflow.pipelines.spec.PipelineSpec`.

Errors are :class:`CompileError` (422 at the API), naming the function, parameter or task.
Components take keyword arguments only inside a pipeline, as in KFP.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Literal, overload

from lumiflow.common.quantity import QuantityError, parse_count, parse_cpu, parse_memory
from lumiflow.pipelines.components import (
    BUILDER,
    IO,
    MARKER,
    Component,
    ComponentSourceWarning,
    LaunchComponent,
    PythonComponent,
    active,
    component,
    dns_name,
    fits,
    json_value,
    parameter_type,
    type_hints,
)
from lumiflow.pipelines.spec import PARAMETER_TYPES, CompileError
from lumiflow.runtime.types import (
    ARTIFACT_TYPES,
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    InputPath,
    Markdown,
    Metrics,
    Model,
    Output,
    OutputPath,
    artifact_annotation,
    artifact_class,
    component_namespace,
    path_annotation,
)

__all__ = [
    "ARTIFACT_TYPES",
    "HTML",
    "Artifact",
    "ClassificationMetrics",
    "Collected",
    "CompileError",
    "Component",
    "ComponentSourceWarning",
    "Condition",
    "ConditionExpr",
    "Dataset",
    "Elif",
    "Else",
    "ExitHandler",
    "If",
    "Input",
    "InputPath",
    "LaunchComponent",
    "LoopItem",
    "Markdown",
    "Metrics",
    "Model",
    "Output",
    "OutputPath",
    "ParallelFor",
    "Pipeline",
    "PipelineParameter",
    "PipelineTask",
    "PythonComponent",
    "TaskOutput",
    "artifact_annotation",
    "artifact_class",
    "component",
    "component_namespace",
    "experiment",
    "path_annotation",
    "pipeline",
    "register_model",
    "training_job",
]


def _launch(
    kind: Literal["TrainingJob", "Experiment"],
    manifest: dict[str, Any],
    name: str | None,
    arguments: dict[str, Any] | None,
) -> PipelineTask:
    what = "dsl.training_job" if kind == "TrainingJob" else "dsl.experiment"
    if kind == "TrainingJob":
        return _training_job(manifest, name, arguments)
    builder = active(what)
    if not isinstance(manifest, dict):
        raise CompileError(f"{what}: the manifest is a mapping (a parsed YAML document)")
    manifest_kind = manifest.get("kind")
    if not isinstance(manifest_kind, str) or not manifest_kind:
        raise CompileError(f"{what}: the manifest has no kind")
    if (kind == "Experiment") != (manifest_kind == "Experiment"):
        wanted = "an Experiment" if kind == "Experiment" else "a training job (TFJob, PyTorchJob, ...)"
        raise CompileError(f"{what}: the manifest's kind is {manifest_kind}; {what} takes {wanted}")
    manifest = copy.deepcopy(json_value(manifest, f"{what} manifest"))
    default = (manifest.get("metadata") or {}).get("name") or (
        "training-job" if kind == "TrainingJob" else "experiment"
    )
    launch = LaunchComponent(kind, manifest, dns_name(name or str(default), f"{what} name"))
    arguments = dict(arguments or {})
    for arg_name, value in arguments.items():
        if not isinstance(arg_name, str) or not arg_name.isidentifier():
            raise CompileError(f"{what}: argument name {arg_name!r} must be an identifier")
        launch.inputs[arg_name] = IO(
            arg_name, "parameter", type=builder.type_of(value, f"{what} argument {arg_name!r}")
        )
    return builder.add_task(launch, arguments)


def _training_job(
    manifest: dict[str, Any], name: str | None, arguments: dict[str, Any] | None
) -> PipelineTask:
    """A training job step: parameters and artifacts (their local path replaces the placeholder)."""
    what = "dsl.training_job"
    builder = active(what)
    if not isinstance(manifest, dict):
        raise CompileError(f"{what}: the manifest is a mapping (a parsed YAML document)")
    manifest_kind = manifest.get("kind")
    if not isinstance(manifest_kind, str) or not manifest_kind:
        raise CompileError(f"{what}: the manifest has no kind")
    if manifest_kind == "Experiment":
        raise CompileError(
            f"{what}: the manifest's kind is Experiment; {what} takes a training job (TFJob, PyTorchJob, ...)"
        )
    manifest = copy.deepcopy(json_value(manifest, f"{what} manifest"))
    default = (manifest.get("metadata") or {}).get("name") or "training-job"
    launch = LaunchComponent("TrainingJob", manifest, dns_name(name or str(default), f"{what} name"))
    arguments = dict(arguments or {})
    for arg_name, value in arguments.items():
        if not isinstance(arg_name, str) or not arg_name.isidentifier():
            raise CompileError(f"{what}: argument name {arg_name!r} must be an identifier")
        artifact = builder.artifact_of(value)
        if artifact is not None:
            launch.inputs[arg_name] = IO(arg_name, "artifact", artifact_type=artifact, mode="path")
        else:
            launch.inputs[arg_name] = IO(
                arg_name, "parameter", type=builder.type_of(value, f"{what} argument {arg_name!r}")
            )
    return builder.add_task(launch, arguments)


def register_model(
    model: Any, name: str, *, stage: str = "None", description: str = "", task_name: str | None = None
) -> PipelineTask:
    """A step that registers ``model`` (a task's Model artifact, e.g. a training job's
    ``checkpoints``) as the next version of the registered model ``name``, in ``stage``
    (None, Staging, Production, Archived); outputs ``model_name`` and ``version``. The version
    keeps its lineage back to the run that produced it."""
    what = "dsl.register_model"
    builder = active(what)
    if stage not in ("None", "Staging", "Production", "Archived"):
        raise CompileError(f"{what}: stage {stage!r} is not one of None, Staging, Production, Archived")
    registered = dns_name(name, f"{what} name")
    manifest = {"name": registered, "stage": stage, "description": description}
    launch = LaunchComponent(
        "Model", manifest, dns_name(task_name or f"register-{registered}", f"{what} task name")
    )
    artifact = builder.artifact_of(model)
    if artifact is None:
        raise CompileError(f"{what}: model must be a task's artifact output (task.outputs['model'])")
    launch.inputs["model"] = IO("model", "artifact", artifact_type=artifact, mode="object")
    return builder.add_task(launch, {"model": model})


def training_job(
    manifest: dict[str, Any], name: str | None = None, *, arguments: dict[str, Any] | None = None
) -> PipelineTask:
    """A step that creates a training job (TFJob, PyTorchJob, MPIJob, XGBoostJob, Job) from
    ``manifest`` and waits for it; outputs ``job_name`` and ``phase``.

    ``arguments`` maps names to values (constants, pipeline parameters, task outputs, loop
    items); ``${inputs.NAME}`` in the manifest's strings is replaced by the value at run time.
    ``name`` is the step's task name (default: the manifest's ``metadata.name``).
    """
    return _launch("TrainingJob", manifest, name, arguments)


def experiment(
    manifest: dict[str, Any], name: str | None = None, *, arguments: dict[str, Any] | None = None
) -> PipelineTask:
    """A step that runs a Katib ``Experiment`` to completion; outputs ``best_parameters`` (a
    dict of the best trial's parameter assignments) and ``best_value`` (its objective value).
    ``arguments`` and ``name`` as in :func:`training_job`."""
    return _launch("Experiment", manifest, name, arguments)


# --- values known when the pipeline runs --------------------------------------------------


class _Channel:
    """A value that exists only when the pipeline runs: compare it to build a condition."""

    _lumiflow_reference: ClassVar[bool] = True  # never a constant

    __hash__ = object.__hash__

    def argument(self) -> dict[str, Any]:
        raise NotImplementedError

    def _compare(self, op: str, other: Any) -> ConditionExpr:
        return ConditionExpr(op, self, other)

    def __eq__(self, other: object) -> ConditionExpr:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: object) -> ConditionExpr:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> ConditionExpr:
        return self._compare("<", other)

    def __le__(self, other: Any) -> ConditionExpr:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> ConditionExpr:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> ConditionExpr:
        return self._compare(">=", other)

    def __bool__(self) -> bool:
        raise CompileError(
            f"{self!r} has no value while the pipeline is compiled: branch with dsl.If(...), not Python's if"
        )

    def __iter__(self) -> Iterator[Any]:
        raise CompileError(f"{self!r} has no value while the pipeline is compiled: loop with dsl.ParallelFor")

    def __format__(self, spec: str) -> str:
        return MARKER

    def __str__(self) -> str:
        return MARKER


class PipelineParameter(_Channel):
    def __init__(self, name: str, type_name: str) -> None:
        self.name = name
        self.type = type_name

    def argument(self) -> dict[str, Any]:
        return {"parameter": self.name}

    def __repr__(self) -> str:
        return f"<pipeline parameter {self.name}>"


class TaskOutput(_Channel):
    def __init__(self, task: PipelineTask, name: str) -> None:
        self.task = task
        self.name = name
        self.io = task.component.outputs[name]

    def argument(self) -> dict[str, Any]:
        return {"taskOutput": {"task": self.task.name, "output": self.name}}

    def __repr__(self) -> str:
        return f"<output {self.name} of task {self.task.name}>"


class LoopItem(_Channel):
    """The item of a ``ParallelFor``; ``item.field`` (or ``item["field"]``) for lists of dicts."""

    def __init__(self, loop: ParallelFor, field: str | None = None) -> None:
        self._loop = loop
        self._field = field

    def __getattr__(self, name: str) -> LoopItem:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> LoopItem:
        if self._field is not None:
            raise CompileError(
                f"loop {self._loop.name}: one level of item fields is supported ({self._field}.{name})"
            )
        return LoopItem(self._loop, name)

    def argument(self) -> dict[str, Any]:
        return {"loopItem": {"loop": self._loop.name, "field": self._field}}

    def __repr__(self) -> str:
        suffix = f".{self._field}" if self._field else ""
        return f"<item of {self._loop.name}{suffix}>"


class Collected:
    """``dsl.Collected(task.output)``: every iteration's value of a task inside a ParallelFor, as a
    list, for a task after the loop. Parameter outputs only."""

    _lumiflow_reference: ClassVar[bool] = True  # never a constant

    def __init__(self, output: TaskOutput | PipelineTask) -> None:
        if isinstance(output, PipelineTask):
            output = output.output
        if not isinstance(output, TaskOutput):
            raise CompileError(f"dsl.Collected takes a task's output, not {output!r}")
        if output.io.kind != "parameter":
            raise CompileError(f"dsl.Collected gathers parameter outputs; {output!r} is an artifact")
        self.output = output

    def argument(self) -> dict[str, Any]:
        return {"collected": {"task": self.output.task.name, "output": self.output.name}}


class ConditionExpr:
    """``task.output == "x"`` and the like: the condition of ``dsl.If``/``dsl.Elif``."""

    _lumiflow_reference: ClassVar[bool] = True  # never a constant

    def __init__(self, op: str, left: Any, right: Any) -> None:
        self.op = op
        self.left = left
        self.right = right

    def __bool__(self) -> bool:
        raise CompileError(
            "a comparison of pipeline values is decided when the pipeline runs: use dsl.If(...), not Python's "
            "if, and, or"
        )

    def spec(self, builder: Builder) -> dict[str, Any]:
        return {
            "op": self.op,
            "left": builder.argument(self.left, "condition"),
            "right": builder.argument(self.right, "condition"),
        }


# --- tasks --------------------------------------------------------------------------------


class _Outputs(Mapping[str, TaskOutput]):
    def __init__(self, task: PipelineTask) -> None:
        self._task = task

    def __getitem__(self, name: str) -> TaskOutput:
        if name not in self._task.component.outputs:
            raise CompileError(
                f"task {self._task.name} ({self._task.component.name}) has no output {name!r} "
                f"(outputs: {', '.join(self._task.component.outputs) or 'none'})"
            )
        return TaskOutput(self._task, name)

    def __contains__(self, name: object) -> bool:
        return name in self._task.component.outputs

    def __iter__(self) -> Iterator[str]:
        return iter(self._task.component.outputs)

    def __len__(self) -> int:
        return len(self._task.component.outputs)


class PipelineTask:
    """One step of a pipeline; the setters return the task so they chain."""

    _lumiflow_reference: ClassVar[bool] = True  # never a constant

    def __init__(self, component: Component, name: str, group: _Group) -> None:
        self.component = component
        self.name = name
        self.group = group
        self.arguments: dict[str, dict[str, Any]] = {}
        self.after_tasks: list[PipelineTask] = []
        self.caching = True
        self.retries = 0
        self.display_name: str | None = None
        self.resources: dict[str, Any] = {}
        self.env: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<task {self.name} ({self.component.name})>"

    @property
    def output(self) -> TaskOutput:
        """The task's only output."""
        names = list(self.component.outputs)
        if len(names) != 1:
            which = (
                f"{len(names)} outputs ({', '.join(names)}): use .outputs[name]" if names else "no outputs"
            )
            raise CompileError(f"task {self.name} ({self.component.name}) has {which}")
        return TaskOutput(self, names[0])

    @property
    def outputs(self) -> Mapping[str, TaskOutput]:
        return _Outputs(self)

    def after(self, *tasks: PipelineTask) -> PipelineTask:
        for task in tasks:
            if not isinstance(task, PipelineTask):
                raise CompileError(f"task {self.name}: .after() takes tasks, not {task!r}")
            if task is self:
                raise CompileError(f"task {self.name} cannot run after itself")
            if task not in self.after_tasks:
                self.after_tasks.append(task)
        return self

    def set_caching_options(self, enable_caching: bool) -> PipelineTask:
        self.caching = bool(enable_caching)
        return self

    def set_retry(self, num_retries: int) -> PipelineTask:
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise CompileError(f"task {self.name}: num_retries is a whole number >= 0, not {num_retries!r}")
        self.retries = num_retries
        return self

    def set_display_name(self, name: str) -> PipelineTask:
        if not isinstance(name, str) or not name or MARKER in name:
            raise CompileError(
                f"task {self.name}: the display name is a non-empty string known before the run"
            )
        self.display_name = name
        return self

    def set_env_variable(self, name: str, value: str) -> PipelineTask:
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise CompileError(f"task {self.name}: {name!r} is not an environment variable name")
        if not isinstance(value, str) or MARKER in value:
            raise CompileError(
                f"task {self.name}: environment variable {name} must be a string known before the run, "
                f"not {value!r}"
            )
        self.env[name] = value
        return self

    def _quantity(self, key: str, value: Any, parse: Callable[[Any], Any]) -> PipelineTask:
        try:
            parse(value)
        except (QuantityError, TypeError, ValueError) as exc:
            raise CompileError(f"task {self.name}: {key} {value!r}: {exc}") from None
        self.resources[key] = str(value)
        return self

    def set_cpu_limit(self, cpu: str) -> PipelineTask:
        """lumiflow has one resource request per step: limits and requests both set it."""
        return self._quantity("cpu", cpu, parse_cpu)

    def set_cpu_request(self, cpu: str) -> PipelineTask:
        return self._quantity("cpu", cpu, parse_cpu)

    def set_memory_limit(self, memory: str) -> PipelineTask:
        return self._quantity("memory", memory, parse_memory)

    def set_memory_request(self, memory: str) -> PipelineTask:
        return self._quantity("memory", memory, parse_memory)

    def set_gpu_limit(self, gpu: int | str) -> PipelineTask:
        try:
            count = parse_count(gpu)
        except (QuantityError, TypeError, ValueError) as exc:
            raise CompileError(f"task {self.name}: gpu {gpu!r}: {exc}") from None
        self.resources["gpu"] = count
        return self

    set_accelerator_limit = set_gpu_limit  # KFP 2's newer name


# --- groups -------------------------------------------------------------------------------


class _Group:
    """A block of tasks run under a condition, a loop or an exit handler (a sub-DAG)."""

    prefix: ClassVar[str] = "group"

    def __init__(self, name: str | None = None) -> None:
        self._wanted_name = name
        self.name = ""
        self.children: list[PipelineTask | _Group] = []
        self.parent: _Group | None = None
        self.data: dict[str, Any] = {}  # the group's spec fields, made when the block is entered

    def __enter__(self) -> Any:
        builder = active(f"dsl.{type(self).__name__}")
        builder.open(self)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        builder = BUILDER.get()
        if builder is None:
            return
        if exc_type is not None:  # let the user's error through
            if builder.stack[-1] is self:
                builder.stack.pop()
            return
        builder.close(self)

    def spec(self, builder: Builder) -> dict[str, Any]:
        return {}


class _Root(_Group):
    pass


class If(_Group):
    """``with dsl.If(task.output == "heads"):`` — the tasks inside run when the condition holds.

    The condition compares a task output, pipeline parameter or loop item with a constant or
    another of those (``== != < <= > >=``). It is typed ``ConditionExpr | bool`` so that
    ``dsl.If(n > 1)`` on a parameter annotated ``n: int`` type-checks.
    """

    prefix = "condition"

    def __init__(self, condition: ConditionExpr | bool, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(condition, _Channel):
            raise CompileError(f"dsl.{type(self).__name__} needs a comparison such as {condition!r} == True")
        if not isinstance(condition, ConditionExpr):
            raise CompileError(f"dsl.{type(self).__name__} needs a comparison of a task output or parameter")
        self.condition: ConditionExpr | None = condition
        self.earlier: list[ConditionExpr] = []  # the conditions of the branches before this one

    def spec(self, builder: Builder) -> dict[str, Any]:
        own = [self.condition.spec(builder)] if self.condition is not None else []
        negated = [{"op": "not", "arg": c.spec(builder)} for c in self.earlier]
        parts = negated + own
        return {"condition": parts[0] if len(parts) == 1 else {"op": "and", "args": parts}}


Condition = If  # KFP's older name


class Elif(If):
    """Runs when no earlier branch's condition held and this one does."""

    def __enter__(self) -> Any:
        builder = active(f"dsl.{type(self).__name__}")
        siblings = builder.stack[-1].children
        last = siblings[-1] if siblings else None
        if not isinstance(last, If) or isinstance(last, Else):
            raise CompileError(f"dsl.{type(self).__name__} must follow a dsl.If or dsl.Elif block directly")
        assert last.condition is not None
        self.earlier = [*last.earlier, last.condition]
        builder.open(self)
        return self


class Else(Elif):
    """Runs when no earlier branch's condition held."""

    def __init__(self, name: str | None = None) -> None:
        _Group.__init__(self, name)
        self.condition = None
        self.earlier = []


class ParallelFor(_Group):
    """``with dsl.ParallelFor(items, parallelism=2) as item:`` — the tasks inside run once per item.

    ``items``: a constant list, a list pipeline parameter, a task's list output, or an outer
    loop's item. ``parallelism`` 0 means no limit.
    """

    prefix = "for"

    def __init__(self, items: Any, parallelism: int = 0, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(parallelism, bool) or not isinstance(parallelism, int) or parallelism < 0:
            raise CompileError(f"dsl.ParallelFor: parallelism is a whole number >= 0, not {parallelism!r}")
        if not isinstance(items, list | tuple | _Channel | PipelineTask):
            raise CompileError(
                f"dsl.ParallelFor iterates over a list, a parameter or a task output, not {items!r}"
            )
        self.items = items
        self.parallelism = parallelism

    def __enter__(self) -> LoopItem:
        super().__enter__()
        return LoopItem(self)

    def spec(self, builder: Builder) -> dict[str, Any]:
        items = builder.argument(self.items, f"loop {self.name} items")
        return {"iterator": {"items": items, "parallelism": self.parallelism}}


class ExitHandler(_Group):
    """``with dsl.ExitHandler(cleanup_task):`` — ``cleanup_task`` (created before the block) runs
    after everything inside, whether it succeeded or not."""

    prefix = "exit-handler"

    def __init__(self, exit_task: PipelineTask, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(exit_task, PipelineTask):
            raise CompileError(f"dsl.ExitHandler takes the exit task, not {exit_task!r}")
        self.exit_task = exit_task

    def __enter__(self) -> Any:
        builder = active("dsl.ExitHandler")
        if self.exit_task.group is not builder.stack[-1]:
            raise CompileError(
                f"dsl.ExitHandler: the exit task {self.exit_task.name} must be created just before the block, "
                "in the same block"
            )
        builder.open(self)
        return self

    def spec(self, builder: Builder) -> dict[str, Any]:
        return {"exitHandler": True, "exitTask": self.exit_task.name}


# --- pipelines ----------------------------------------------------------------------------


class Pipeline:
    """A ``@dsl.pipeline`` function; compile it with :func:`lumiflow.pipelines.compiler.compile`."""

    def __init__(self, func: Callable[..., Any], *, name: str | None, description: str | None) -> None:
        if not inspect.isfunction(func):
            raise CompileError(f"@dsl.pipeline decorates a function, not {type(func).__name__}")
        self.python_func = func
        self.name = dns_name(name or func.__name__, "pipeline name")
        doc = inspect.getdoc(func) or ""
        self.description = description if description is not None else (doc.split("\n\n")[0].strip() or None)
        self.parameters = self._parameters(func)
        functools.update_wrapper(self, func)

    @staticmethod
    def _parameters(func: Callable[..., Any]) -> dict[str, IO]:
        hints = type_hints(func, f"pipeline {func.__name__}")
        out: dict[str, IO] = {}
        for p in inspect.signature(func).parameters.values():
            where = f"pipeline {func.__name__}, parameter {p.name!r}"
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise CompileError(f"{where}: *args and **kwargs are not supported")
            if p.name not in hints:
                raise CompileError(f"{where} has no type annotation: use int, float, str, bool, list or dict")
            found = parameter_type(hints[p.name])
            if found is None:
                raise CompileError(
                    f"{where}: type {hints[p.name]!r} is not supported; pipeline parameters are int, float, "
                    "str, bool, list or dict"
                )
            has_default = p.default is not inspect.Parameter.empty
            if has_default and p.default is not None:
                if not fits(found[0], p.default):
                    raise CompileError(f"{where}: default {p.default!r} is not a {found[0]}")
                json_value(p.default, where)
            out[p.name] = IO(p.name, "parameter", type=found[0], default=p.default, optional=has_default)
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise CompileError(
            f"pipeline {self.name} is compiled, not called (lumiflow.pipelines.compiler.compile); "
            "pipelines inside pipelines are not supported"
        )

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"


@overload
def pipeline(func: Callable[..., Any], /) -> Pipeline: ...
@overload
def pipeline(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Pipeline]: ...
def pipeline(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """``@dsl.pipeline(name=..., description=...)``: the function's typed parameters are the
    pipeline's parameters (with defaults, or required when a run is created)."""
    if func is not None:
        return Pipeline(func, name=None, description=None)

    def decorate(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name, description=description)

    return decorate


# --- building -----------------------------------------------------------------------------


class Builder:
    """Collects the tasks and groups while a pipeline function runs under the compiler."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.root = _Root()
        self.stack: list[_Group] = [self.root]
        self.names: set[str] = set()
        self.counters: dict[str, int] = {}
        self.keys: dict[int, str] = {}  # id(component) → component key
        self.components: dict[str, Component] = {}
        self.tasks: list[PipelineTask] = []

    def run(self) -> None:
        params = {n: PipelineParameter(n, io.type or "str") for n, io in self.pipeline.parameters.items()}
        token = BUILDER.set(self)
        try:
            self.pipeline.python_func(**params)
        except CompileError:
            raise
        except Exception as exc:
            raise CompileError(
                f"pipeline {self.pipeline.name}: the pipeline function raised {type(exc).__name__}: {exc}"
            ) from None
        finally:
            BUILDER.reset(token)
        if len(self.stack) != 1:
            raise CompileError(f"pipeline {self.pipeline.name}: a group was not closed")

    def _unique(self, base: str) -> str:
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}-{n}"
        self.names.add(name)
        return name

    def key(self, component: Component) -> str:
        if id(component) not in self.keys:
            base = dns_name(component.name, "component name")
            key, n = base, 1
            while key in self.components:
                n += 1
                key = f"{base}-{n}"
            self.keys[id(component)] = key
            self.components[key] = component
        return self.keys[id(component)]

    def open(self, group: _Group) -> None:
        if group.name:
            raise CompileError(f"a dsl.{type(group).__name__} block is entered once")
        if group._wanted_name:
            group.name = self._unique(dns_name(group._wanted_name, "group name"))
        else:
            n = self.counters.get(group.prefix, 0)
            while True:
                n += 1
                if f"{group.prefix}-{n}" not in self.names:
                    break
            self.counters[group.prefix] = n
            group.name = self._unique(f"{group.prefix}-{n}")
        group.data = group.spec(self)  # references resolve where the block starts
        group.parent = self.stack[-1]
        group.parent.children.append(group)
        self.stack.append(group)

    def close(self, group: _Group) -> None:
        if self.stack[-1] is not group:
            raise CompileError(f"group {group.name} closed out of order")
        self.stack.pop()

    def add_task(self, component: Component, kwargs: dict[str, Any]) -> PipelineTask:
        key = self.key(component)
        task = PipelineTask(component, self._unique(key), self.stack[-1])
        for arg_name, value in kwargs.items():
            where = f"task {task.name} ({component.name}), argument {arg_name!r}"
            if arg_name in component.outputs and arg_name not in component.inputs:
                raise CompileError(f"{where}: {arg_name!r} is an output, made by the task; do not pass it")
            if arg_name not in component.inputs:
                raise CompileError(
                    f"{where}: no such input (inputs: {', '.join(component.inputs) or 'none'})"
                )
            task.arguments[arg_name] = self.argument(value, where)
        for input_name, io in component.inputs.items():
            if input_name not in kwargs and not io.optional:
                raise CompileError(
                    f"task {task.name} ({component.name}): required input {input_name!r} has no argument"
                )
        self.stack[-1].children.append(task)
        self.tasks.append(task)
        return task

    def argument(self, value: Any, where: str) -> dict[str, Any]:
        """The spec form of an argument value."""
        if isinstance(value, PipelineTask):
            value = value.output
        if isinstance(value, ConditionExpr):
            raise CompileError(f"{where}: a comparison is not a value (use it in dsl.If)")
        if isinstance(value, TaskOutput) and value.task not in self.tasks:
            raise CompileError(f"{where}: {value!r} belongs to another pipeline")
        if isinstance(value, LoopItem):
            loop = value._loop
            if loop not in self.stack:
                raise CompileError(
                    f"{where}: the item of {loop.name or 'a loop'} is used outside its dsl.ParallelFor"
                )
        if isinstance(value, _Channel | Collected):
            return value.argument()
        return {"constant": json_value(value, where)}

    def artifact_of(self, value: Any) -> str | None:
        """The artifact type of a task's artifact output passed to a launch step, else None."""
        if isinstance(value, TaskOutput) and value.io.kind == "artifact":
            return value.io.artifact_type or "Artifact"
        return None

    def type_of(self, value: Any, where: str) -> str:
        """A parameter type for a launch step's input (str where not known before the run)."""
        if isinstance(value, PipelineTask):
            value = value.output
        if isinstance(value, PipelineParameter):
            return value.type
        if isinstance(value, TaskOutput):
            if value.io.kind != "parameter" or value.io.type is None:
                raise CompileError(f"{where}: a launch step takes parameters, not artifacts")
            return value.io.type
        if isinstance(value, Collected):
            return "list"
        if isinstance(value, LoopItem):
            items = value._loop.items
            if isinstance(items, list | tuple) and items:
                values = (
                    [v.get(value._field) if isinstance(v, dict) else v for v in items]
                    if value._field
                    else items
                )
                kinds = {type(v).__name__ for v in values}
                if len(kinds) == 1 and kinds <= set(PARAMETER_TYPES):
                    return kinds.pop()
            return "str"
        if value is None:
            raise CompileError(f"{where}: None is not an argument of a launch step")
        kind = type(json_value(value, where)).__name__
        return kind if kind in PARAMETER_TYPES else "str"


def build(pipeline: Pipeline) -> Builder:
    """Run the pipeline function under a builder (used by the compiler)."""
    builder = Builder(pipeline)
    builder.run()
    return builder
