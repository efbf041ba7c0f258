"""The graph rules of a pipeline spec, run by :class:`~lumiflow.pipelines.spec.PipelineSpec`'s validator.

Every reference resolves (tasks by name from the referring task's DAG outwards, pipeline
parameters, enclosing loops), types match (parameter types exactly, int into float; artifact
types exactly or into the base ``Artifact``), required inputs have arguments, the groups are
well formed, and no DAG has a cycle. Along the way ``dependsOn`` is completed: a consumer
depends on each producer in its own DAG, and the group that holds a consumer depends on a
producer outside it, so a planner can order every DAG from ``dependsOn`` alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from lumiflow.pipelines.spec import (
        Argument,
        ComponentSpec,
        Condition,
        DagSpec,
        InputSpec,
        IteratorSpec,
        LoopItemRef,
        OutputSpec,
        PipelineSpec,
        TaskOutputRef,
        TaskSpec,
    )

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PARAMETER_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


class SpecError(ValueError):
    """A graph rule broken at ``field`` (a dotted path in the spec). Pydantic reports it as a
    value error; :func:`load` and the compiler turn it into :class:`CompileError` with ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def value_type(value: Any) -> str:
    """The parameter type name of a Python value (``"null"`` for None, ``"?"`` if none fits)."""
    if value is None:
        return "null"
    for name in ("bool", "int", "float", "str", "list", "dict"):
        if isinstance(value, PARAMETER_TYPES[name]):
            return name
    return "?"


def check_dns(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123.match(value):
        raise ValueError(
            f"{what} {value!r} must be a DNS-1123 label (lower-case letters, digits and '-', "
            "at most 63 characters)"
        )
    return value


def check_graph(spec: PipelineSpec) -> None:
    """Raise :class:`SpecError` for the first broken rule; complete ``dependsOn`` in place."""
    _Checker(spec).run()


@dataclass(frozen=True)
class _Type:
    """What a reference carries: a parameter (type None when unknown), an artifact, or null."""

    kind: Literal["parameter", "artifact", "null"]
    name: str | None = None

    def describe(self) -> str:
        if self.kind == "null":
            return "null"
        if self.kind == "artifact":
            return f"artifact {self.name}"
        return self.name or "a value of unknown type"


@dataclass
class _Scope:
    dags: list[DagSpec]  # root first
    members: list[str]  # members[d]: the name, in dags[d], of the task or group that holds the consumer
    loops: dict[str, TaskSpec]  # enclosing ParallelFor groups by name
    path: str  # the field path of the consumer


@dataclass
class _Checker:
    spec: PipelineSpec
    edges: list[tuple[DagSpec, str, str]] = field(default_factory=list)  # (dag, consumer, producer)

    def run(self) -> None:
        self._dag(self.spec.root, [], [], {}, "root")
        for dag, consumer, producer in self.edges:
            deps = dag.tasks[consumer].dependsOn
            if producer not in deps:
                deps.append(producer)
                deps.sort()
        self._cycles(self.spec.root, "root")

    # Structure ----------------------------------------------------------------------------

    def _dag(
        self, dag: DagSpec, dags: list[DagSpec], members: list[str], loops: dict[str, TaskSpec], path: str
    ) -> None:
        dags = [*dags, dag]
        exit_tasks: dict[str, str] = {}
        for name, task in dag.tasks.items():
            where = f"{path}.tasks.{name}"
            try:
                check_dns(name, "task name")
            except ValueError as exc:
                raise SpecError(where, str(exc)) from None
            scope = _Scope(dags, [*members, name], loops, where)
            for dep in task.dependsOn:
                if dep == name:
                    raise SpecError(f"{where}.dependsOn", f"task {name!r} depends on itself")
                if dep not in dag.tasks:
                    raise SpecError(
                        f"{where}.dependsOn",
                        f"unknown task {dep!r} (dependsOn names tasks of the same DAG: {', '.join(dag.tasks)})",
                    )
            if task.dag is None:
                self._component_task(name, task, scope)
                continue
            if task.component is not None:
                raise SpecError(where, "a task has either component or dag, not both")
            if task.arguments:
                raise SpecError(f"{where}.arguments", "a group takes no arguments")
            kinds = [task.condition is not None, task.iterator is not None, task.exitHandler]
            if sum(kinds) != 1:
                raise SpecError(where, "a group has exactly one of condition, iterator or exitHandler: true")
            if task.condition is not None:
                self._condition(task.condition, scope, f"{where}.condition")
            inner_loops = loops
            if task.iterator is not None:
                self._iterator(task.iterator, scope, f"{where}.iterator")
                inner_loops = {**loops, name: task}
            if task.exitHandler:
                self._exit_task(name, task, dag, where)
                assert task.exitTask is not None
                if task.exitTask in exit_tasks:
                    raise SpecError(
                        f"{where}.exitTask",
                        f"task {task.exitTask!r} is already the exit task of {exit_tasks[task.exitTask]!r}",
                    )
                exit_tasks[task.exitTask] = name
            elif task.exitTask is not None:
                raise SpecError(f"{where}.exitTask", "exitTask is set only on a group with exitHandler: true")
            self._dag(task.dag, dags, [*members, name], inner_loops, f"{where}.dag")

    def _exit_task(self, name: str, task: TaskSpec, dag: DagSpec, where: str) -> None:
        exit_name = task.exitTask
        if exit_name is None:
            raise SpecError(f"{where}.exitTask", "an exit handler group names its exitTask")
        exit_task = dag.tasks.get(exit_name)
        if exit_task is None or exit_name == name:
            raise SpecError(
                f"{where}.exitTask",
                f"exit task {exit_name!r} must be another task of the same DAG as the group",
            )
        if exit_task.dag is not None:
            raise SpecError(
                f"{where}.exitTask", f"exit task {exit_name!r} must be a component's task, not a group"
            )

    def _component_task(self, name: str, task: TaskSpec, scope: _Scope) -> None:
        where = scope.path
        for key, value in (
            ("condition", task.condition),
            ("iterator", task.iterator),
            ("exitTask", task.exitTask),
        ):
            if value is not None:
                raise SpecError(f"{where}.{key}", f"only a group (a task with dag) has {key}")
        if task.exitHandler:
            raise SpecError(f"{where}.exitHandler", "only a group (a task with dag) is an exit handler")
        if task.component is None:
            raise SpecError(where, "a task needs component (or dag for a group)")
        component = self.spec.components.get(task.component)
        if component is None:
            raise SpecError(
                f"{where}.component",
                f"unknown component {task.component!r} (components: {', '.join(self.spec.components) or 'none'})",
            )
        what = _describe(name, task.component, component)
        for arg_name, argument in task.arguments.items():
            spot = f"{where}.arguments.{arg_name}"
            io = component.inputs.get(arg_name)
            if io is None:
                raise SpecError(
                    spot,
                    f"{what} has no input {arg_name!r} (inputs: {', '.join(component.inputs) or 'none'})",
                )
            source = self._resolve(argument, scope, spot)
            _compatible(io, source, argument, f"{what}: input {arg_name!r}", spot)
        for input_name, io in component.inputs.items():
            if input_name not in task.arguments and not io.isOptional:
                raise SpecError(
                    f"{where}.arguments", f"{what}: required input {input_name!r} has no argument"
                )

    def _condition(self, condition: Condition, scope: _Scope, spot: str) -> None:
        if condition.op == "and":
            for i, part in enumerate(condition.args or []):
                self._condition(part, scope, f"{spot}.args[{i}]")
            return
        if condition.op == "not":
            assert condition.arg is not None
            self._condition(condition.arg, scope, f"{spot}.arg")
            return
        assert condition.left is not None
        assert condition.right is not None
        left = self._resolve(condition.left, scope, f"{spot}.left")
        right = self._resolve(condition.right, scope, f"{spot}.right")
        for side in (left, right):
            if side.kind == "artifact":
                raise SpecError(spot, f"a condition compares parameters, not {side.describe()}")
        known = [t.name for t in (left, right) if t.kind == "parameter" and t.name is not None]
        numeric = {"int", "float"}
        if len(known) == 2 and known[0] != known[1] and not set(known) <= numeric:
            raise SpecError(spot, f"cannot compare {known[0]} with {known[1]}")
        if condition.op not in ("==", "!="):
            if "null" in (left.kind, right.kind):
                raise SpecError(spot, f"cannot order null with {condition.op}")
            for t in known:
                if t not in ("int", "float", "str"):
                    raise SpecError(spot, f"{condition.op} needs numbers or strings, not {t}")

    def _iterator(self, iterator: IteratorSpec, scope: _Scope, spot: str) -> None:
        items = self._resolve(iterator.items, scope, f"{spot}.items")
        if items.kind != "parameter" or items.name not in (None, "list"):
            raise SpecError(f"{spot}.items", f"a loop iterates over a list, not {items.describe()}")

    # References ---------------------------------------------------------------------------

    def _resolve(self, argument: Argument, scope: _Scope, spot: str) -> _Type:
        """The type the argument carries; records the dependency it implies."""
        if argument.kind == "constant":
            kind = value_type(argument.constant)
            return _Type("null") if kind == "null" else _Type("parameter", kind)
        if argument.kind == "parameter":
            assert argument.parameter is not None
            param = self.spec.parameters.get(argument.parameter)
            if param is None:
                raise SpecError(
                    spot,
                    f"unknown pipeline parameter {argument.parameter!r} "
                    f"(parameters: {', '.join(self.spec.parameters) or 'none'})",
                )
            return _Type("parameter", param.type)
        if argument.kind == "loopItem":
            assert argument.loopItem is not None
            return self._loop_item(argument.loopItem, scope, spot)
        if argument.kind == "taskOutput":
            assert argument.taskOutput is not None
            ref = argument.taskOutput
            depth, producer = self._visible(ref.task, scope, spot)
            out = self._output(ref, producer, spot)
            self._depend(scope, depth, ref.task)
            if out.kind == "artifact":
                return _Type("artifact", out.artifactType)
            return _Type("parameter", out.type)
        assert argument.collected is not None
        ref = argument.collected
        depth, loop_name, producer = self._collected(ref.task, scope, spot)
        out = self._output(ref, producer, spot)
        if out.kind == "artifact":
            raise SpecError(spot, "dsl.Collected gathers parameter outputs only, not artifacts")
        self._depend(scope, depth, loop_name)
        return _Type("parameter", "list")

    def _depend(self, scope: _Scope, depth: int, producer: str) -> None:
        consumer = scope.members[depth]
        if consumer != producer:
            self.edges.append((scope.dags[depth], consumer, producer))

    def _visible(self, task_name: str, scope: _Scope, spot: str) -> tuple[int, TaskSpec]:
        for depth in range(len(scope.dags) - 1, -1, -1):
            producer = scope.dags[depth].tasks.get(task_name)
            if producer is None:
                continue
            if task_name == scope.members[depth]:
                if depth == len(scope.dags) - 1:
                    raise SpecError(spot, f"task {task_name!r} refers to its own output")
                raise SpecError(spot, f"{task_name!r} is a group that holds this task and has no outputs")
            return depth, producer
        elsewhere = [groups for groups, name, _ in self.spec.walk() if name == task_name]
        if elsewhere:
            inside = elsewhere[0][-1] if elsewhere[0] else "root"
            raise SpecError(
                spot,
                f"task {task_name!r} is inside group {inside!r} and its outputs are not visible here "
                "(only tasks of this DAG and of enclosing DAGs are; gather a loop's outputs with dsl.Collected)",
            )
        raise SpecError(spot, f"unknown task {task_name!r}")

    def _collected(self, task_name: str, scope: _Scope, spot: str) -> tuple[int, str, TaskSpec]:
        for depth in range(len(scope.dags) - 1, -1, -1):
            for member, group in scope.dags[depth].tasks.items():
                if group.iterator is None or group.dag is None or member == scope.members[depth]:
                    continue
                producer = group.dag.tasks.get(task_name)
                if producer is not None:
                    return depth, member, producer
        raise SpecError(
            spot,
            f"dsl.Collected gathers the outputs of a task directly inside a ParallelFor that is beside this "
            f"task (or beside a group holding it); {task_name!r} is not one",
        )

    def _output(self, ref: TaskOutputRef, producer: TaskSpec, spot: str) -> OutputSpec:
        if producer.component is None:
            raise SpecError(spot, f"{ref.task!r} is a group and has no outputs")
        component = self.spec.components.get(producer.component)
        if component is None:  # reported where that task is checked
            raise SpecError(spot, f"task {ref.task!r} has an unknown component {producer.component!r}")
        out = component.outputs.get(ref.output)
        if out is None:
            raise SpecError(
                spot,
                f"{_describe(ref.task, producer.component, component)} has no output {ref.output!r} "
                f"(outputs: {', '.join(component.outputs) or 'none'})",
            )
        return out

    def _loop_item(self, ref: LoopItemRef, scope: _Scope, spot: str) -> _Type:
        loop = scope.loops.get(ref.loop)
        if loop is None or loop.iterator is None:
            raise SpecError(
                spot,
                f"{ref.loop!r} is not a ParallelFor around this task (loops: {', '.join(scope.loops) or 'none'})",
            )
        items = loop.iterator.items
        if items.kind != "constant":
            return _Type("parameter")
        values = items.constant
        if not isinstance(values, list):  # reported where the loop is checked
            return _Type("parameter")
        if ref.field is not None:
            if not all(isinstance(v, dict) and ref.field in v for v in values):
                raise SpecError(
                    spot, f"not every item of loop {ref.loop!r} is a mapping with field {ref.field!r}"
                )
            values = [v[ref.field] for v in values]
        kinds = {value_type(v) for v in values}
        if kinds == {"int", "float"}:
            kinds = {"float"}
        return _Type("parameter", kinds.pop()) if len(kinds) == 1 else _Type("parameter")

    # Order --------------------------------------------------------------------------------

    def _cycles(self, dag: DagSpec, path: str) -> None:
        after: dict[str, list[str]] = {name: list(task.dependsOn) for name, task in dag.tasks.items()}
        for name, task in dag.tasks.items():
            if task.exitHandler and task.exitTask is not None:
                if _reaches(after, task.exitTask, name):
                    raise SpecError(
                        f"{path}.tasks.{task.exitTask}.dependsOn",
                        f"exit task {task.exitTask!r} must not depend on the group {name!r} it handles "
                        "(it runs after the group whatever happened)",
                    )
                after[task.exitTask].append(name)
        cycle = _find_cycle(after)
        if cycle:
            raise SpecError(f"{path}.tasks", f"the tasks form a cycle: {' → '.join(cycle)}")
        for name, task in dag.tasks.items():
            if task.dag is not None:
                self._cycles(task.dag, f"{path}.tasks.{name}.dag")


def _describe(task: str, key: str, component: ComponentSpec) -> str:
    if component.function:
        return f"task {task!r} ({component.function})"
    if component.launch is not None:
        return f"task {task!r} ({component.launch.kind} step)"
    return f"task {task!r} (component {key!r})"


def _origin(argument: Argument) -> str:
    if argument.kind == "constant":
        return f"constant {argument.constant!r}"
    if argument.kind == "parameter":
        return f"pipeline parameter {argument.parameter!r}"
    if argument.kind == "taskOutput" and argument.taskOutput is not None:
        return f"output {argument.taskOutput.output!r} of task {argument.taskOutput.task!r}"
    if argument.kind == "collected":
        return "the collected outputs"
    return "the loop item"


def _compatible(io: InputSpec, source: _Type, argument: Argument, what: str, spot: str) -> None:
    origin = _origin(argument)
    if source.kind == "null":
        if not io.isOptional:
            raise SpecError(spot, f"{what} is required and cannot be null")
        return
    if io.kind == "artifact":
        if source.kind != "artifact":
            raise SpecError(
                spot, f"{what} is an artifact ({io.artifactType}) and needs a task's artifact output"
            )
        if io.artifactType not in ("Artifact", source.name):
            raise SpecError(spot, f"{what} expects {io.artifactType} but {origin} is a {source.name}")
        return
    if source.kind == "artifact":
        raise SpecError(spot, f"{what} is a parameter ({io.type}) but {origin} is an {source.describe()}")
    if source.name is None or source.name == io.type or (source.name == "int" and io.type == "float"):
        return
    raise SpecError(spot, f"{what} is {io.type} but {origin} is {source.name}")


def _reaches(after: dict[str, list[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(after.get(node, []))
    return False


def _find_cycle(after: dict[str, list[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] in 'a runs after b' order, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in after.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in after:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None
