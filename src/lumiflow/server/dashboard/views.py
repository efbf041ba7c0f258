"""What the job and experiment pages show, computed from the API's objects: which metrics share
a chart, a tuning experiment's summary, its trials as table rows, and its charts.

Pure functions over what ``ResourceService`` returns (manifests as dicts, metric series), so
the pages' logic is tested without a server. Experiments and trials are read through their
pydantic models: the store only holds manifests those models accepted, and the models know
Katib's rules (which of a metric's min/max/latest is a trial's objective value).

Two choices worth knowing:

* Metrics named ``train_loss`` and ``val_loss`` (or ``loss`` and ``val/loss``) are drawn on one
  chart, unless their magnitudes differ tenfold, when each gets its own: lines on a shared
  axis are only comparable when the scales match.
* The objective chart and the parallel coordinates show the trials that succeeded, the same
  trials ``status.currentOptimalTrial`` is chosen from, so the chart's best point is the page's
  best trial; the trials table shows every trial with whatever value it reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from lumiflow.common.timeutil import parse_rfc3339, utcnow
from lumiflow.resources.experiment import (
    Distribution,
    Experiment,
    ObjectiveSpec,
    Observation,
    OptimalTrial,
    ParameterType,
    Trial,
    TrialPhase,
)
from lumiflow.server.dashboard.chart_svg import as_float
from lumiflow.server.dashboard.charts import Axis, line_chart, objective_chart, parallel_coordinates

#: Prefixes that name the same quantity measured on another split (``val_loss`` is a loss).
SPLIT_PREFIXES = ("train", "training", "val", "valid", "validation", "eval", "test")
#: Beyond this many charts a job page lists the remaining metric names instead.
MAX_METRIC_CHARTS = 12
#: Lines whose largest magnitudes differ by more than this factor get charts of their own.
SCALE_RATIO = 10.0

# --- a job's metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricCharts:
    charts: list[Markup]
    #: Metric names past MAX_METRIC_CHARTS charts, not drawn.
    not_drawn: list[str]

    @property
    def empty(self) -> bool:
        return not self.charts and not self.not_drawn


def metric_family(name: str) -> str:
    """The quantity a metric measures: ``val_loss``, ``train/loss`` and ``loss`` are all ``loss``."""
    for sep in ("_", "/", ".", "-"):
        head, found, tail = name.partition(sep)
        if found and tail and head.lower() in SPLIT_PREFIXES:
            return tail
    return name


def _magnitude(points: Sequence[tuple[float, float]]) -> float:
    return max((abs(y) for _, y in points), default=0.0)


def _same_scale(members: Mapping[str, Sequence[tuple[float, float]]]) -> bool:
    sizes = [m for m in (_magnitude(p) for p in members.values()) if m > 0]
    return not sizes or max(sizes) <= SCALE_RATIO * min(sizes)


def metric_charts(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> MetricCharts:
    """One line chart per metric family (see the module's notes), in name order; a family
    whose lines differ in scale is split into one chart per metric."""
    points = {
        name: [(float(p["step"]), float(p["value"])) for p in raw if p.get("value") is not None]
        for name, raw in series.items()
    }
    families: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name in sorted(points):
        if points[name]:
            families.setdefault(metric_family(name), {})[name] = points[name]
    groups: list[tuple[str, dict[str, list[tuple[float, float]]]]] = []
    for family in sorted(families):
        members = families[family]
        if len(members) > 1 and _same_scale(members):
            groups.append((family, members))
        else:
            groups += [(name, {name: pts}) for name, pts in members.items()]
    drawn, rest = groups[:MAX_METRIC_CHARTS], groups[MAX_METRIC_CHARTS:]
    charts = [line_chart(members, title=title, y_label=title) for title, members in drawn]
    return MetricCharts(charts, [name for _, members in rest for name in members])


# --- experiments -------------------------------------------------------------------------------


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    """``1m 05s`` from ``start`` to ``end`` (or to now while running); ``-`` before the start."""
    began = parse_rfc3339(start)
    if began is None:
        return "-"
    ended = parse_rfc3339(end) or now or utcnow()
    seconds = max(0, int((ended - began).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def objective_value(objective: ObjectiveSpec, observation: Observation | None, name: str) -> float | None:
    """The value of objective metric ``name`` in ``observation``, by the metric's strategy."""
    if observation is None:
        return None
    return observation.value(name, objective.strategy(name))


def counter(exp: Experiment, name: str) -> int:
    """One of Katib's status counters (``trialsSucceeded``...), 0 when not written yet."""
    extra = exp.status.model_extra or {}
    value = extra.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class ExperimentSummary:
    """What the experiments list shows of one experiment."""

    name: str
    profile: str
    phase: str
    algorithm: str
    succeeded: int
    trials: int
    max_trials: int | None
    metric: str
    best_value: float | None
    created: str | None


def summarize(doc: dict[str, Any]) -> ExperimentSummary:
    exp = Experiment.parse(doc)
    objective = exp.spec.objective
    best = exp.status.currentOptimalTrial
    return ExperimentSummary(
        name=exp.metadata.name or "",
        profile=exp.metadata.namespace or "",
        phase=exp.status.phase.value if exp.status.phase else "Created",
        algorithm=exp.spec.algorithm.algorithmName,
        succeeded=counter(exp, "trialsSucceeded"),
        trials=counter(exp, "trials"),
        max_trials=exp.spec.maxTrialCount,
        metric=objective.objectiveMetricName,
        best_value=objective_value(
            objective, best.observation if best else None, objective.objectiveMetricName
        ),
        created=exp.metadata.creationTimestamp,
    )


@dataclass(frozen=True)
class TrialRow:
    number: int
    name: str
    phase: str
    reason: str
    message: str
    parameters: dict[str, str]
    #: The parameters as the table shows them (doubles to six significant digits).
    shown: dict[str, str]
    #: One per objective, in the experiment's order (None: not reported).
    values: list[float | None]
    duration: str
    best: bool


@dataclass(frozen=True)
class OptimalRow:
    name: str
    parameters: dict[str, str]
    shown: dict[str, str]
    values: list[float | None]


@dataclass(frozen=True)
class ExperimentView:
    """Everything the experiment page shows besides the manifest's own fields."""

    exp: Experiment
    objectives: list[tuple[str, str]]
    parameters: list[str]
    trials: list[TrialRow]
    best: OptimalRow | None
    pareto: list[OptimalRow]
    objective_charts: list[Markup]
    parallel: Markup
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        return self.exp.status.phase.value if self.exp.status.phase else "Created"

    @property
    def final(self) -> bool:
        return self.exp.status.phase is not None and self.exp.status.phase.is_terminal()


COUNTERS = (
    ("trials", "total"),
    ("trialsPending", "pending"),
    ("trialsRunning", "running"),
    ("trialsSucceeded", "succeeded"),
    ("trialsFailed", "failed"),
    ("trialsEarlyStopped", "early stopped"),
    ("trialMetricsUnavailable", "metrics unavailable"),
    ("trialsKilled", "killed"),
)


def axes(exp: Experiment) -> list[Axis]:
    """A parallel-coordinates axis per parameter: numeric for int and double (log10 for the
    log distributions), categorical with the feasible list for categorical and discrete."""
    out = []
    for p in exp.spec.parameters:
        space = p.feasibleSpace
        if p.parameterType in (ParameterType.CATEGORICAL, ParameterType.DISCRETE):
            out.append(Axis(p.name, "categorical", values=list(space.list or ())))
        else:
            log = space.distribution in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL)
            out.append(Axis(p.name, "numeric", log=log))
    return out


def shown_values(exp: Experiment, values: Mapping[str, str]) -> dict[str, str]:
    """Parameter values for a table: a double's to six significant digits (samplers pick
    values like 0.036294229783964016), every other as assigned."""
    doubles = {p.name for p in exp.spec.parameters if p.parameterType is ParameterType.DOUBLE}
    out = {}
    for name, value in values.items():
        number = as_float(value) if name in doubles else None
        out[name] = f"{number:.6g}" if number is not None else value
    return out


def _optimal(exp: Experiment, optimal: OptimalTrial) -> OptimalRow:
    objective = exp.spec.objective
    parameters = {a.name: a.value for a in optimal.parameterAssignments}
    return OptimalRow(
        name=optimal.bestTrialName or "",
        parameters=parameters,
        shown=shown_values(exp, parameters),
        values=[objective_value(objective, optimal.observation, n) for n in objective.objective_names],
    )


def experiment_view(doc: dict[str, Any], trial_docs: Sequence[dict[str, Any]]) -> ExperimentView:
    exp = Experiment.parse(doc)
    objective = exp.spec.objective
    names = objective.objective_names
    directions = [d.value for d in objective.directions]
    best_name = exp.status.currentOptimalTrial.bestTrialName if exp.status.currentOptimalTrial else None
    trials = sorted(
        (Trial.parse(t) for t in trial_docs), key=lambda t: (t.spec.number, t.metadata.name or "")
    )
    rows = [
        TrialRow(
            number=t.spec.number,
            name=t.metadata.name or "",
            phase=t.status.phase.value if t.status.phase else "Created",
            reason=t.status.reason or "",
            message=t.status.message or "",
            parameters=t.spec.assignments,
            shown=shown_values(exp, t.spec.assignments),
            values=[objective_value(objective, t.status.observation, n) for n in names],
            duration=duration(t.status.startTime, t.status.completionTime),
            best=t.metadata.name == best_name,
        )
        for t in trials
    ]
    succeeded = [r for r in rows if r.phase == TrialPhase.SUCCEEDED.value]
    charts = [
        objective_chart(
            [(r.number, r.values[i], r.name) for r in succeeded],
            metric=name,
            direction="minimize" if direction == "minimize" else "maximize",
            goal=objective.goal if i == 0 else None,
        )
        for i, (name, direction) in enumerate(zip(names, directions, strict=True))
    ]
    # Further objectives are numeric axes beside the parameters; colour is the first objective.
    pc_axes = axes(exp) + [Axis(n, "numeric") for n in names[1:]]
    pc_rows = [
        {**r.parameters, **{n: v for n, v in zip(names, r.values, strict=True)}, "name": r.name}
        for r in succeeded
    ]
    parallel = parallel_coordinates(
        pc_axes,
        pc_rows,
        objective=names[0],
        direction="minimize" if directions[0] == "minimize" else "maximize",
    )
    optimal = exp.status.currentOptimalTrial
    return ExperimentView(
        exp=exp,
        objectives=list(zip(names, directions, strict=True)),
        parameters=[p.name for p in exp.spec.parameters],
        trials=rows,
        best=_optimal(exp, optimal) if optimal and optimal.bestTrialName else None,
        pareto=[_optimal(exp, o) for o in exp.status.paretoFront] if len(names) > 1 else [],
        objective_charts=charts,
        parallel=parallel,
        counters={label: counter(exp, key) for key, label in COUNTERS},
    )
