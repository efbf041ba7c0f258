"""What the pipeline pages show, computed from the API's objects: a run's summary for the list,
its graph (from the spec it runs and the nodes in its status), its steps as table rows, one
step's inputs and outputs, and an artifact's lineage as boxes and edges.

Pure functions over manifests and the lineage graph ``ResourceService`` returns, so the pages'
logic is tested without a server. Choices worth knowing:

* The graph comes from the **spec**, not from the status alone: tasks that have not started
  yet are drawn too (pending), and a skipped branch's steps, which never get a node of their
  own, are drawn skipped like their group. In a run that has ended, a step that never got a
  node did not run and is drawn skipped.
* Edges come from ``dependsOn`` and from the arguments (a task output read, a loop's outputs
  collected, a condition's or a loop's items' references), resolved the way the planner
  resolves them (the task's own DAG first, then the enclosing ones); an arrow into a box
  whose group already has an arrow from the same source is left out.
* A ParallelFor of up to :data:`MAX_ITERATIONS_DRAWN` iterations is drawn with each
  iteration's steps; a longer one (or one not started) once, with "×N" and the iterations'
  states counted. The steps table lists every iteration either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lumiflow.resources.pipeline import RunState
from lumiflow.server.dashboard.dag_svg import GraphEdge, GraphNode, LineageBox, LineageEdge
from lumiflow.server.dashboard.views import duration

MAX_ITERATIONS_DRAWN = 4
#: Worst first: a compact loop box shows the worst state of its iterations.
STATE_RANK = ("FAILED", "CANCELING", "RUNNING", "PENDING", "CANCELED", "SKIPPED", "SUCCEEDED")
#: A parameter value longer than this is cut in tables (the full value is in the manifest).
MAX_VALUE_CHARS = 2000


def is_final(state: str | None) -> bool:
    return state is not None and state in RunState.__members__ and RunState(state).is_terminal()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tasks(dag: Any) -> dict[str, Any]:
    return {str(k): _dict(v) for k, v in _dict(_dict(dag).get("tasks")).items()}


def show_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A parameter value as text: strings as they are, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_size(size: Any) -> str:
    if not isinstance(size, int) or isinstance(size, bool):
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


# --- conditions as text --------------------------------------------------------------------------


def argument_text(arg: Any) -> str:
    a = _dict(arg)
    if "constant" in a:
        return json.dumps(a["constant"], default=str)
    if "parameter" in a:
        return f"parameters.{a['parameter']}"
    if "taskOutput" in a:
        ref = _dict(a["taskOutput"])
        return f"{ref.get('task')}.{ref.get('output')}"
    if "loopItem" in a:
        ref = _dict(a["loopItem"])
        return f"{ref.get('loop')}.item" + (f".{ref['field']}" if ref.get("field") else "")
    if "collected" in a:
        ref = _dict(a["collected"])
        return f"collected({ref.get('task')}.{ref.get('output')})"
    return "?"


def condition_text(expr: Any) -> str:
    e = _dict(expr)
    op = e.get("op")
    if op == "and":
        return " and ".join(f"({condition_text(a)})" for a in e.get("args") or [])
    if op == "not":
        return f"not ({condition_text(e.get('arg'))})"
    return f"{argument_text(e.get('left'))} {op} {argument_text(e.get('right'))}"


# --- a run's graph -------------------------------------------------------------------------------


@dataclass
class RunGraph:
    roots: list[GraphNode]
    edges: list[GraphEdge]

    def steps(self) -> list[GraphNode]:
        out: list[GraphNode] = []
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            if not node.is_group:
                out.append(node)
            stack += list(reversed(node.children))
        return out


@dataclass
class _Scope:
    prefix: str
    tasks: dict[str, dict[str, Any]]
    parent: _Scope | None

    def find(self, task: str) -> str | None:
        current: _Scope | None = self
        while current is not None:
            if task in current.tasks:
                return current.prefix + task
            current = current.parent
        return None

    def loop_of(self, task: str) -> str | None:
        """The loop node (in this scope or an enclosing one) whose body holds ``task``."""
        current: _Scope | None = self
        while current is not None:
            for name, t in current.tasks.items():
                if t.get("iterator") is not None and task in _tasks(t.get("dag")):
                    return current.prefix + name
            current = current.parent
        return None


def _references(value: Any) -> Iterator[dict[str, Any]]:
    """Every argument inside an argument or a condition."""
    v = _dict(value)
    if "op" in v:
        for key in ("left", "right", "arg"):
            if key in v:
                yield from _references(v[key])
        for a in v.get("args") or []:
            yield from _references(a)
    elif v:
        yield v


class _Builder:
    def __init__(
        self, spec: Mapping[str, Any], nodes: Mapping[str, Any], *, final: bool, compact: bool
    ) -> None:
        self.nodes = {str(k): _dict(v) for k, v in nodes.items()}
        self.root = _tasks(_dict(spec).get("root"))
        self.final = final
        self.compact = compact
        self.edges: list[GraphEdge] = []

    def instances(self, node_id: str) -> list[tuple[str, dict[str, Any]]]:
        if "[*]" not in node_id:
            found = self.nodes.get(node_id)
            return [(node_id, found)] if found is not None else []
        pattern = re.compile(re.escape(node_id).replace(re.escape("[*]"), r"\[\d+\]"))
        return [(k, v) for k, v in self.nodes.items() if pattern.fullmatch(k)]

    def state_of(self, node_id: str, inherited: str | None) -> tuple[str, dict[str, Any], str | None]:
        """(state, the node's status, the node to link to)."""
        found = self.instances(node_id)
        if not found:
            state = inherited or ("SKIPPED" if self.final else "PENDING")
            return state, {}, None
        if len(found) == 1 and "[*]" not in node_id:
            return str(found[0][1].get("state") or "PENDING"), found[0][1], found[0][0]
        worst = min(found, key=lambda kv: _rank(str(kv[1].get("state") or "PENDING")))
        return str(worst[1].get("state") or "PENDING"), worst[1], worst[0]

    def build(self) -> RunGraph:
        roots = self.expand(_Scope("", self.root, None), None)
        return RunGraph(roots, _dedupe(self.edges, roots))

    def expand(self, scope: _Scope, inherited: str | None) -> list[GraphNode]:
        out = []
        for name, task in scope.tasks.items():
            node_id = scope.prefix + name
            self.link(scope, name, task)
            state, status, link = self.state_of(node_id, inherited)
            # What a skipped or canceled group holds did not run either.
            passed = state if state in ("SKIPPED", "CANCELED") else inherited
            label = str(task.get("displayName") or name)
            if task.get("dag") is None:
                out.append(self.step(node_id, label, state, status, link))
                continue
            kind = (
                "loop"
                if task.get("iterator") is not None
                else "condition"
                if task.get("condition") is not None
                else "exit-handler"
                if task.get("exitHandler")
                else "group"
            )
            group = GraphNode(
                id=node_id, label=label, kind=kind, state=state, message=str(status.get("message") or "")
            )
            if kind == "condition":
                group.detail = condition_text(task.get("condition"))
            elif kind == "exit-handler" and task.get("exitTask"):
                group.detail = f"then {task['exitTask']}"
            inner = _tasks(task.get("dag"))
            if kind == "loop":
                count = status.get("iterations")
                count = count if isinstance(count, int) and not isinstance(count, bool) else None
                group.count = count
                if count and (count <= MAX_ITERATIONS_DRAWN or not self.compact):
                    for i in range(count):
                        prefix = f"{node_id}[{i}]/"
                        frame = GraphNode(
                            id=f"{node_id}[{i}]", label=f"iteration {i}", kind="iteration", state=""
                        )
                        frame.children = self.expand(_Scope(prefix, inner, scope), passed)
                        group.children.append(frame)
                else:
                    group.children = self.expand(_Scope(f"{node_id}[*]/", inner, scope), passed)
            else:
                group.children = self.expand(_Scope(node_id + "/", inner, scope), passed)
            out.append(group)
        return out

    def step(
        self, node_id: str, label: str, state: str, status: dict[str, Any], link: str | None
    ) -> GraphNode:
        node = GraphNode(
            id=node_id,
            label=label,
            state=state,
            cached=bool(status.get("cached")),
            attempts=int(status.get("attempts") or 0),
            message=str(status.get("message") or ""),
            link=link,
        )
        if "[*]" in node_id:
            found = self.instances(node_id)
            counts: dict[str, int] = {}
            for _, s in found:
                st = str(s.get("state") or "PENDING")
                counts[st] = counts.get(st, 0) + 1
            node.count = len(found)
            node.cached = bool(found) and all(s.get("cached") for _, s in found)
            node.link = link or node_id.replace("[*]", "[0]")
            node.summary = (
                ", ".join(
                    f"{counts[st]} {'ok' if st == 'SUCCEEDED' else st.lower()}"
                    for st in sorted(counts, key=_rank)
                )
                or state.lower()
            )
        return node

    def link(self, scope: _Scope, name: str, task: dict[str, Any]) -> None:
        target = scope.prefix + name
        for dep in task.get("dependsOn") or []:
            self.edges.append(GraphEdge(scope.prefix + str(dep), target, "after"))
        refs = [*(_dict(task.get("arguments")).values())]
        refs.append(_dict(task.get("iterator")).get("items"))
        refs.append(task.get("condition"))
        for ref in refs:
            for arg in _references(ref):
                source = None
                if "taskOutput" in arg:
                    source = scope.find(str(_dict(arg["taskOutput"]).get("task")))
                elif "collected" in arg:
                    source = scope.loop_of(str(_dict(arg["collected"]).get("task")))
                if source is not None:
                    self.edges.append(GraphEdge(source, target, "data"))
        if task.get("exitHandler") and task.get("exitTask"):
            self.edges.append(GraphEdge(target, scope.prefix + str(task["exitTask"]), "exit"))


def _rank(state: str) -> int:
    return STATE_RANK.index(state) if state in STATE_RANK else len(STATE_RANK)


def _dedupe(edges: list[GraphEdge], roots: list[GraphNode]) -> list[GraphEdge]:
    parent: dict[str, str | None] = {}
    stack: list[tuple[GraphNode, str | None]] = [(n, None) for n in roots]
    while stack:
        node, up = stack.pop()
        parent[node.id] = up
        stack += [(c, node.id) for c in node.children]
    pairs: dict[tuple[str, str], GraphEdge] = {}
    for e in edges:
        if e.source not in parent or e.target not in parent:
            continue
        key = (e.source, e.target)
        if key not in pairs or (pairs[key].kind == "after" and e.kind != "after"):
            pairs[key] = e
    out = []
    for (source, target), e in pairs.items():
        up = parent[target]
        covered = False
        while up is not None:
            if (source, up) in pairs:
                covered = True
                break
            up = parent[up]
        if not covered:
            out.append(e)
    return out


def run_graph(
    spec: Mapping[str, Any], nodes: Mapping[str, Any], *, final: bool, compact: bool = True
) -> RunGraph:
    """The run's tasks as boxes and groups (see the module's notes)."""
    return _Builder(spec, nodes, final=final, compact=compact).build()


# --- a run, summed up and in rows ------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    name: str
    profile: str
    pipeline: str
    version: int | None
    inline: bool
    state: str
    message: str
    done: int
    total: int
    started: str | None
    finished: str | None
    duration: str
    created: str | None
    terminate: bool

    @property
    def final(self) -> bool:
        return is_final(self.state)


def summarize_run(doc: Mapping[str, Any]) -> RunSummary:
    meta, spec, status = _dict(doc.get("metadata")), _dict(doc.get("spec")), _dict(doc.get("status"))
    pipeline_spec = _dict(spec.get("pipelineSpec"))
    state = str(status.get("state") or "PENDING")
    steps = run_graph(pipeline_spec, _dict(status.get("nodes")), final=is_final(state), compact=False).steps()
    version = spec.get("version")
    return RunSummary(
        name=str(meta.get("name") or ""),
        profile=str(meta.get("namespace") or ""),
        pipeline=str(spec.get("pipeline") or pipeline_spec.get("name") or ""),
        version=version if isinstance(version, int) else None,
        inline=not spec.get("pipeline"),
        state=state,
        message=str(status.get("message") or ""),
        done=sum(1 for s in steps if is_final(s.state)),
        total=len(steps),
        started=status.get("startTime"),
        finished=status.get("finishTime"),
        duration=duration(status.get("startTime"), status.get("finishTime")),
        created=meta.get("creationTimestamp"),
        terminate=bool(spec.get("terminate")),
    )


@dataclass(frozen=True)
class StepRow:
    id: str
    label: str
    component: str
    state: str
    started: str | None
    duration: str
    attempts: int
    cached: bool
    message: str


def step_rows(doc: Mapping[str, Any]) -> list[StepRow]:
    """Every step of the run, in the graph's order, every loop iteration included."""
    spec, status = _dict(doc.get("spec")), _dict(doc.get("status"))
    nodes = _dict(status.get("nodes"))
    state = str(status.get("state") or "PENDING")
    graph = run_graph(_dict(spec.get("pipelineSpec")), nodes, final=is_final(state), compact=False)
    rows = []
    for step in graph.steps():
        raw = _dict(nodes.get(step.id))
        rows.append(
            StepRow(
                id=step.id,
                label=step.label,
                component=str(raw.get("component") or ""),
                state=step.state,
                started=raw.get("startTime"),
                duration=duration(raw.get("startTime"), raw.get("finishTime")) if raw else "-",
                attempts=step.attempts,
                cached=step.cached,
                message=step.message,
            )
        )
    return rows


def find_task(spec: Mapping[str, Any], node_id: str) -> dict[str, Any] | None:
    """The task a node runs (``for-1[2]/square`` is the loop body's ``square``)."""
    tasks = _tasks(_dict(spec).get("root"))
    task: dict[str, Any] | None = None
    for part in node_id.split("/"):
        name = part.split("[", 1)[0]
        task = tasks.get(name)
        if task is None:
            return None
        tasks = _tasks(task.get("dag"))
    return task


@dataclass(frozen=True)
class Value:
    """One input or output: a parameter's value, or an artifact."""

    name: str
    text: str = ""
    artifact: dict[str, Any] | None = None

    @property
    def metadata(self) -> list[tuple[str, str]]:
        meta = _dict((self.artifact or {}).get("metadata"))
        return [(str(k), show_value(v, 300)) for k, v in sorted(meta.items())]


def values(raw: Any) -> list[Value]:
    out = []
    for name, value in sorted(_dict(raw).items()):
        if isinstance(value, dict) and isinstance(value.get("artifact"), dict):
            out.append(Value(str(name), artifact=value["artifact"]))
        else:
            out.append(Value(str(name), text=show_value(value)))
    return out


@dataclass(frozen=True)
class StepView:
    id: str
    label: str
    task: str
    component: str
    state: str
    message: str
    started: str | None
    finished: str | None
    duration: str
    attempts: int
    cached: bool
    #: A Workload's name (its log is the step's), or ``Kind/name`` of a launched job or experiment.
    workload: str | None
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return is_final(self.state)

    @property
    def launched(self) -> tuple[str, str] | None:
        if self.workload and "/" in self.workload:
            kind, name = self.workload.split("/", 1)
            return kind, name
        return None


def step_view(doc: Mapping[str, Any], node_id: str) -> StepView | None:
    """One step of the run, or None when the run has no such step (yet)."""
    spec, status = _dict(doc.get("spec")), _dict(doc.get("status"))
    pipeline_spec = _dict(spec.get("pipelineSpec"))
    task = find_task(pipeline_spec, node_id)
    if task is None or task.get("dag") is not None:
        return None
    raw = _dict(_dict(status.get("nodes")).get(node_id))
    run_state = str(status.get("state") or "PENDING")
    state = str(raw.get("state") or ("SKIPPED" if is_final(run_state) else "PENDING"))
    name = node_id.rsplit("/", 1)[-1]
    return StepView(
        id=node_id,
        label=str(task.get("displayName") or name),
        task=name,
        component=str(raw.get("component") or task.get("component") or ""),
        state=state,
        message=str(raw.get("message") or ""),
        started=raw.get("startTime"),
        finished=raw.get("finishTime"),
        duration=duration(raw.get("startTime"), raw.get("finishTime")) if raw else "-",
        attempts=int(raw.get("attempts") or 0),
        cached=bool(raw.get("cached")),
        workload=str(raw["workload"]) if raw.get("workload") else None,
        inputs=values(raw.get("inputs")),
        outputs=values(raw.get("outputs")),
    )


def default_step(doc: Mapping[str, Any]) -> str | None:
    """The step a run page opens on: the first that failed, else the first running."""
    nodes = _dict(_dict(doc.get("status")).get("nodes"))
    rows = step_rows(doc)
    for wanted in ("FAILED", "RUNNING"):
        for row in rows:
            if row.state == wanted and row.id in nodes:
                return row.id
    return None


def pipeline_steps(spec: Mapping[str, Any]) -> int:
    """The number of steps a pipeline's spec declares (a loop's body counted once)."""

    def count(tasks: dict[str, dict[str, Any]]) -> int:
        return sum(count(_tasks(t.get("dag"))) if t.get("dag") is not None else 1 for t in tasks.values())

    return count(_tasks(_dict(spec).get("root")))


# --- lineage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageView:
    boxes: list[LineageBox]
    edges: list[LineageEdge]
    artifacts: list[dict[str, Any]]
    executions: list[dict[str, Any]]


def short_digest(digest: Any) -> str:
    text = str(digest or "")
    algo, _, hexa = text.partition(":")
    return f"{algo}:{hexa[:12]}" if hexa else text[:19]


def lineage_view(
    graph: Mapping[str, Any],
    *,
    focus: str,
    artifact_href: Callable[[str], str | None],
    execution_href: Callable[[dict[str, Any]], str | None],
) -> LineageView:
    """Boxes for the graph's executions and artifacts (each in the order they were recorded),
    edges INPUT (artifact -> execution) and OUTPUT (execution -> artifact)."""
    artifacts = [_dict(a) for a in graph.get("artifacts") or []]
    executions = [_dict(x) for x in graph.get("executions") or []]
    boxes: list[LineageBox] = []
    for x in sorted(executions, key=lambda x: int(x.get("id") or 0)):
        props = _dict(x.get("properties"))
        lines = [f"{x.get('type')} · {str(x.get('state') or '').lower()}"]
        if props.get("run"):
            lines.append(f"run {props['run']}")
        if props.get("component"):
            lines.append(f"component {props['component']}")
        params = _dict(props.get("parameters"))
        for k, v in sorted(params.items())[:4]:
            lines.append(f"{k}={show_value(v, 60)}")
        if len(params) > 4:
            lines.append(f"+{len(params) - 4} more parameters")
        name = str(x.get("name") or "")
        boxes.append(
            LineageBox(
                id=f"x{x.get('id')}",
                kind="execution",
                title=str(props.get("step") or name),
                lines=lines,
                href=execution_href(x),
                state=str(x.get("state") or ""),
                tooltip=name,
            )
        )
    for a in sorted(artifacts, key=lambda a: int(a.get("id") or 0)):
        uri = str(a.get("uri") or "")
        lines = [
            f"{a.get('type')} · {human_size(a.get('size'))}",
            short_digest(a.get("digest")) or "no digest",
        ]
        boxes.append(
            LineageBox(
                id=f"a{a.get('id')}",
                kind="artifact",
                title=str(a.get("name") or uri.rsplit("/", 1)[-1]),
                lines=lines,
                href=artifact_href(uri),
                focus=uri == focus,
                tooltip=uri,
            )
        )
    edges = []
    for e in graph.get("events") or []:
        ev = _dict(e)
        artifact, execution = f"a{ev.get('artifact')}", f"x{ev.get('execution')}"
        kind = str(ev.get("type") or "")
        source, target = (artifact, execution) if kind == "INPUT" else (execution, artifact)
        edges.append(LineageEdge(source, target, kind, str(ev.get("name") or "")))
    known = {b.id for b in boxes}
    edges = [e for e in edges if e.source in known and e.target in known]
    return LineageView(boxes, edges, artifacts, executions)
