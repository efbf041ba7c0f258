"""The pipeline planner: from a run's spec, parameters and node states to what happens next.

Pure logic (no store, no processes), so that the PipelineRun controller stays a thin loop:
read the run, ``plan()``, act on the plan (start steps, skip nodes), write the states.

Nodes are task instances, named by their path: ``train`` at the top, ``condition-1/eval``
inside a group, ``for-1[2]/train`` in the third iteration of a loop. Group nodes (If/Elif/
Else, ParallelFor, ExitHandler) have states too, aggregated from their children.

Rules (Kubeflow Pipelines'):

* a task starts once every task it depends on has ended and its arguments can be resolved;
  a task downstream of a failed one does not run (SKIPPED, saying why), while one after a
  skipped branch does;
* a condition group whose condition is false is SKIPPED with everything inside it;
* a ParallelFor runs its iterations with at most ``parallelism`` running at once (0: all);
* an ExitHandler's exit task runs once the group has ended, whatever its state;
* a run is SUCCEEDED when every node ended and none failed, FAILED when one failed (after
  its exit tasks ran), CANCELED when it was terminated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class NodeState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    def is_terminal(self) -> bool:
        return self in (NodeState.SUCCEEDED, NodeState.SKIPPED, NodeState.FAILED, NodeState.CANCELED)


class Unresolved(Exception):
    """An argument cannot be resolved yet (an output not produced, a loop not finished)."""


class PlanError(Exception):
    """The spec asks for something impossible at run time (items that are not a list, ...)."""


@dataclass
class Start:
    node: str
    task: str  # the task's name in its DAG
    component: str  # the component's key in the spec
    inputs: dict[str, Any]  # parameter values and artifact references ({"artifact": {...}})
    caching: bool
    retries: int
    resources: dict[str, Any]
    env: dict[str, str]
    display_name: str | None = None


@dataclass
class Plan:
    start: list[Start] = field(default_factory=list)
    #: node -> (state, message) for nodes decided without running (skipped, group states).
    settle: dict[str, tuple[NodeState, str]] = field(default_factory=dict)
    state: NodeState = NodeState.RUNNING
    message: str = ""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    return obj


@dataclass
class _Scope:
    """Where a DAG instance lives: its node prefix, the enclosing scope, loop items."""

    prefix: str
    dag: Any
    parent: _Scope | None
    loop_items: dict[str, Any]


class Planner:
    def __init__(
        self,
        spec: Any,
        parameters: Mapping[str, Any],
        nodes: Mapping[str, Mapping[str, Any]],
        *,
        cancel: bool = False,
    ) -> None:
        self.spec = spec
        self.parameters = dict(parameters)
        self.nodes = nodes
        self.cancel = cancel
        self.plan = Plan()

    # --- states ----------------------------------------------------------------------------

    def state(self, node: str) -> NodeState | None:
        if node in self.plan.settle:
            return self.plan.settle[node][0]
        raw = self.nodes.get(node)
        if raw is None:
            return None
        return NodeState(str(_get(raw, "state", "PENDING")))

    def outputs(self, node: str) -> Mapping[str, Any]:
        raw = self.nodes.get(node) or {}
        return _get(raw, "outputs", {}) or {}

    def _settle(self, node: str, state: NodeState, message: str = "") -> None:
        if self.state(node) != state:
            self.plan.settle[node] = (state, message)

    # --- arguments ---------------------------------------------------------------------------

    def _find(self, scope: _Scope, task: str) -> tuple[str, _Scope]:
        current: _Scope | None = scope
        while current is not None:
            if task in _get(current.dag, "tasks", {}):
                return current.prefix + task, current
            current = current.parent
        raise PlanError(f"task {task!r} is not in scope")

    def resolve(self, arg: Any, scope: _Scope) -> Any:
        arg = _dump(arg)
        if "constant" in arg:
            return arg["constant"]
        if "parameter" in arg:
            name = arg["parameter"]
            if name not in self.parameters:
                raise PlanError(f"pipeline parameter {name!r} has no value")
            return self.parameters[name]
        if "taskOutput" in arg:
            ref = arg["taskOutput"]
            node, _ = self._find(scope, ref["task"])
            if self.state(node) != NodeState.SUCCEEDED:
                raise Unresolved(node)
            outputs = self.outputs(node)
            if ref["output"] not in outputs:
                raise PlanError(f"step {node} did not produce output {ref['output']!r}")
            return outputs[ref["output"]]
        if "loopItem" in arg:
            ref = arg["loopItem"]
            current: _Scope | None = scope
            while current is not None:
                if ref["loop"] in current.loop_items:
                    item = current.loop_items[ref["loop"]]
                    field_name = ref.get("field")
                    if field_name:
                        if not isinstance(item, Mapping) or field_name not in item:
                            raise PlanError(f"loop item {item!r} has no field {field_name!r}")
                        return item[field_name]
                    return item
                current = current.parent
            raise PlanError(f"loop {ref['loop']!r} is not an enclosing loop")
        if "collected" in arg:
            ref = arg["collected"]
            return self._collected(scope, ref["task"], ref["output"])
        raise PlanError(f"unknown argument {arg!r}")

    def _collected(self, scope: _Scope, task: str, output: str) -> list[Any]:
        """The outputs of ``task`` in every iteration of the loop that holds it."""
        current: _Scope | None = scope
        while current is not None:
            for name, t in _get(current.dag, "tasks", {}).items():
                if _get(t, "iterator") is None or _get(t, "dag") is None:
                    continue
                if task not in _get(_get(t, "dag"), "tasks", {}):
                    continue
                loop_node = current.prefix + name
                if self.state(loop_node) not in (NodeState.SUCCEEDED,):
                    raise Unresolved(loop_node)
                count = int(_get(self.nodes.get(loop_node) or {}, "iterations", 0) or 0)
                values = []
                for i in range(count):
                    node = f"{loop_node}[{i}]/{task}"
                    if self.state(node) == NodeState.SUCCEEDED:
                        values.append(self.outputs(node).get(output))
                return values
            current = current.parent
        raise PlanError(f"no loop holds task {task!r}")

    def condition(self, expr: Any, scope: _Scope) -> bool:
        expr = _dump(expr)
        op = expr.get("op")
        if op == "and":
            return all(self.condition(a, scope) for a in expr.get("args", []))
        if op == "or":
            return any(self.condition(a, scope) for a in expr.get("args", []))
        if op == "not":
            return not self.condition(expr["arg"], scope)
        left, right = self.resolve(expr["left"], scope), self.resolve(expr["right"], scope)
        left, right = _comparable(left, right)
        try:
            return bool(
                {
                    "==": lambda: left == right,
                    "!=": lambda: left != right,
                    "<": lambda: left < right,
                    "<=": lambda: left <= right,
                    ">": lambda: left > right,
                    ">=": lambda: left >= right,
                }[op]()
            )
        except TypeError:
            raise PlanError(f"cannot compare {left!r} {op} {right!r}") from None
        except KeyError:
            raise PlanError(f"unknown condition operator {op!r}") from None

    # --- the walk ------------------------------------------------------------------------------

    def run(self) -> Plan:
        root = _get(self.spec, "root")
        state, message = self._dag(_Scope("", root, None, {}))
        self.plan.state, self.plan.message = state, message
        return self.plan

    def _dag(self, scope: _Scope) -> tuple[NodeState, str]:
        tasks: Mapping[str, Any] = _get(scope.dag, "tasks", {})
        exit_tasks = {
            _get(t, "exitTask"): name
            for name, t in tasks.items()
            if _get(t, "exitHandler") and _get(t, "exitTask")
        }
        for name in _order(tasks):
            task = tasks[name]
            node = scope.prefix + name
            current = self.state(node)
            if current is not None and current.is_terminal():
                continue
            if self.cancel:
                if _get(task, "dag") is not None and current is not None:
                    self._group(node, task, scope)  # cancels what is inside, then ends
                elif current in (None, NodeState.PENDING):
                    self._settle(node, NodeState.CANCELED, "the run was terminated")
                continue
            deps = list(_get(task, "dependsOn", []) or [])
            guarded = exit_tasks.get(name)
            if guarded is not None and guarded not in deps:
                deps.append(guarded)
            dep_states = {d: self.state(scope.prefix + d) for d in deps}
            if any(s is None or not s.is_terminal() for s in dep_states.values()):
                continue
            failed = [d for d, s in dep_states.items() if s in (NodeState.FAILED, NodeState.CANCELED)]
            if failed and guarded is None:
                self._settle(node, NodeState.SKIPPED, f"upstream {', '.join(failed)} did not succeed")
                continue
            if _get(task, "dag") is not None:
                self._group(node, task, scope)
            else:
                self._step(node, name, task, scope)
        states = [self.state(scope.prefix + n) for n in tasks]
        if any(s is None or not s.is_terminal() for s in states):
            return NodeState.RUNNING, ""
        bad = [n for n in tasks if self.state(scope.prefix + n) in (NodeState.FAILED,)]
        if bad:
            return NodeState.FAILED, f"{', '.join(scope.prefix + n for n in bad)} failed"
        if any(s == NodeState.CANCELED for s in states):
            return NodeState.CANCELED, "terminated"
        return NodeState.SUCCEEDED, ""

    def _step(self, node: str, name: str, task: Any, scope: _Scope) -> None:
        if self.state(node) in (NodeState.RUNNING, NodeState.CANCELING):
            return
        try:
            inputs = {k: self.resolve(v, scope) for k, v in (_get(task, "arguments", {}) or {}).items()}
        except Unresolved:
            return
        except PlanError as exc:
            self._settle(node, NodeState.FAILED, str(exc))
            return
        self.plan.start.append(
            Start(
                node=node,
                task=name,
                component=str(_get(task, "component")),
                inputs=inputs,
                caching=bool(_get(task, "caching", True)),
                retries=int(_get(task, "retries", 0) or 0),
                resources=dict(_dump(_get(task, "resources", {}) or {})),
                env=dict(_get(task, "env", {}) or {}),
                display_name=_get(task, "displayName"),
            )
        )

    def _group(self, node: str, task: Any, scope: _Scope) -> None:
        condition = _get(task, "condition")
        if condition is not None:
            try:
                holds = self.condition(condition, scope)
            except Unresolved:
                if self.cancel:
                    self._settle(node, NodeState.CANCELED, "the run was terminated")
                return
            except PlanError as exc:
                self._settle(node, NodeState.FAILED, str(exc))
                return
            if not holds:
                self._settle(node, NodeState.SKIPPED, "its condition is false")
                return
        iterator = _get(task, "iterator")
        if iterator is not None:
            self._loop(node, task, iterator, scope)
            return
        state, message = self._dag(_Scope(node + "/", _get(task, "dag"), scope, {}))
        self._settle(node, state, message)

    def _loop(self, node: str, task: Any, iterator: Any, scope: _Scope) -> None:
        iterator = _dump(iterator)
        try:
            items = self.resolve(iterator["items"], scope)
        except Unresolved:
            if self.cancel:
                self._settle(node, NodeState.CANCELED, "the run was terminated")
            return
        except PlanError as exc:
            self._settle(node, NodeState.FAILED, str(exc))
            return
        if isinstance(items, str):
            try:
                import json

                items = json.loads(items)
            except ValueError:
                pass
        if not isinstance(items, list):
            self._settle(node, NodeState.FAILED, f"ParallelFor items must be a list, got {items!r}")
            return
        parallelism = int(iterator.get("parallelism") or 0) or math.inf
        loop_name = node.rsplit("/", 1)[-1]
        self.plan.settle.setdefault(node, (NodeState.RUNNING, ""))
        self.iterations[node] = len(items)
        dag = _get(task, "dag")
        running = 0
        results = []
        for i, item in enumerate(items):
            prefix = f"{node}[{i}]/"
            started = any(k.startswith(prefix) for k in self.nodes) or any(
                s.node.startswith(prefix) for s in self.plan.start
            )
            if not started and (running >= parallelism or self.cancel):
                results.append((NodeState.CANCELED if self.cancel else NodeState.PENDING, ""))
                continue
            before = len(self.plan.start)
            state, message = self._dag(_Scope(prefix, dag, scope, {loop_name: item}))
            if not state.is_terminal() and (started or len(self.plan.start) > before):
                running += 1
            results.append((state, message))
        if all(s.is_terminal() for s, _ in results):
            failed = [f"{node}[{i}]" for i, (s, _) in enumerate(results) if s == NodeState.FAILED]
            if failed:
                self._settle(node, NodeState.FAILED, f"{', '.join(failed)} failed")
            elif any(s == NodeState.CANCELED for s, _ in results):
                self._settle(node, NodeState.CANCELED, "terminated")
            else:
                self._settle(node, NodeState.SUCCEEDED, "")
        else:
            self._settle(node, NodeState.RUNNING, "")

    @property
    def iterations(self) -> dict[str, int]:
        if not hasattr(self, "_iterations"):
            self._iterations: dict[str, int] = {}
        return self._iterations


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """Outputs travel as JSON: compare a number with a numeric string as numbers."""
    if isinstance(left, int | float) and isinstance(right, str):
        try:
            return left, float(right)
        except ValueError:
            return str(left), right
    if isinstance(right, int | float) and isinstance(left, str):
        try:
            return float(left), right
        except ValueError:
            return left, str(right)
    return left, right


def _order(tasks: Mapping[str, Any]) -> list[str]:
    """Tasks in dependency order (stable by name among equals); the spec has no cycles."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in tasks:
            return
        if name in path:
            raise PlanError(f"a cycle through {' -> '.join((*path, name))}")
        for dep in _get(tasks[name], "dependsOn", []) or []:
            visit(dep, (*path, name))
        seen.add(name)
        done.append(name)

    for name in sorted(tasks):
        visit(name, ())
    return done


def plan(
    spec: Any, parameters: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]], *, cancel: bool = False
) -> tuple[Plan, dict[str, int]]:
    """What to do next for a run; also the number of iterations of each loop node."""
    planner = Planner(spec, parameters, nodes, cancel=cancel)
    result = planner.run()
    return result, planner.iterations
