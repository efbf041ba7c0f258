"""``Experiment`` and ``Trial``: Katib's hyperparameter search, as Katib's manifests write it.

A ``kubeflow.org/v1beta1`` Experiment is accepted as it is (Katib writes numbers as
strings: ``min: "0.01"``); it is stored as ``lumiflow.dev/v1`` Experiment with the same
fields. Each trial is a ``Trial`` owning one TrainingJob rendered from ``trialTemplate``
(``${trialParameters.NAME}`` replaced by the trial's values).

lumiflow's additions, all optional: ``objective.additionalObjectives`` (more metrics to
optimise at once — Katib has no multi-objective search; status then carries the Pareto
front), the ``Push`` collector and JSON-lines files, and early stopping by Hyperband or
successive halving beside Katib's median stopping.
"""

from __future__ import annotations

import builtins
import math
import re
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from lumiflow.common.errors import ValidationFailed
from lumiflow.resources.frameworks import FieldError
from lumiflow.resources.meta import Condition, Lenient, ResourceModel, Strict
from lumiflow.resources.tuning_catalog import (
    ALGORITHMS,
    EARLY_STOPPING,
    UNSUPPORTED,
    canonical_algorithm,
    parse_settings,
)

MAX_PARAMETERS = 64
MAX_LIST = 10_000
MAX_TRIALS = 100_000
PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")
#: What a trialParameter's ``reference`` may name besides a parameter (Katib's meta-references).
META_REFERENCES = (
    "${trialSpec.Name}",
    "${trialSpec.Namespace}",
    "${trialSpec.Kind}",
    "${trialSpec.APIVersion}",
)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


class ObjectiveType(StrEnum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return x


class MetricStrategy(Strict):
    name: str
    value: Literal["min", "max", "latest"]


class AdditionalObjective(Strict):
    objectiveMetricName: str = Field(min_length=1, max_length=256)
    type: ObjectiveType


class ObjectiveSpec(Strict):
    type: ObjectiveType
    goal: float | None = None
    objectiveMetricName: str = Field(min_length=1, max_length=256)
    additionalMetricNames: list[str] = Field(default_factory=list, max_length=64)
    metricStrategies: list[MetricStrategy] = Field(default_factory=list, max_length=64)
    additionalObjectives: list[AdditionalObjective] = Field(default_factory=list, max_length=16)

    @field_validator("goal", mode="before")
    @classmethod
    def _goal(cls, value: Any) -> Any:
        return None if value is None else _number(value, "goal")

    @model_validator(mode="after")
    def _rules(self) -> ObjectiveSpec:
        if self.additionalObjectives and self.goal is not None:
            raise FieldError("goal", "a goal applies to one objective; remove it or the additionalObjectives")
        names = self.objective_names
        if len(set(names)) != len(names):
            raise FieldError("additionalObjectives", "an objective metric is named twice")
        return self

    @property
    def objective_names(self) -> list[str]:
        return [self.objectiveMetricName, *(o.objectiveMetricName for o in self.additionalObjectives)]

    @property
    def directions(self) -> list[ObjectiveType]:
        return [self.type, *(o.type for o in self.additionalObjectives)]

    @property
    def metric_names(self) -> list[str]:
        """Every metric to collect: objectives first, then the additional metrics."""
        out = self.objective_names
        return out + [m for m in self.additionalMetricNames if m not in out]

    def strategy(self, name: str) -> str:
        for s in self.metricStrategies:
            if s.name == name:
                return s.value
        for metric, direction in zip(self.objective_names, self.directions, strict=True):
            if metric == name:
                return "min" if direction is ObjectiveType.MINIMIZE else "max"
        return "latest"


class AlgorithmSetting(Strict):
    name: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=1024)

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, int | float) else value


class AlgorithmSpec(Strict):
    algorithmName: str = Field(min_length=1, max_length=64)
    algorithmSettings: list[AlgorithmSetting] = Field(default_factory=list, max_length=64)

    @property
    def settings(self) -> dict[str, str]:
        return {s.name: s.value for s in self.algorithmSettings}


class EarlyStoppingSpec(Strict):
    algorithmName: str = Field(min_length=1, max_length=64)
    algorithmSettings: list[AlgorithmSetting] = Field(default_factory=list, max_length=64)

    @property
    def settings(self) -> dict[str, str]:
        return {s.name: s.value for s in self.algorithmSettings}


class ParameterType(StrEnum):
    INT = "int"
    DOUBLE = "double"
    DISCRETE = "discrete"
    CATEGORICAL = "categorical"


class Distribution(StrEnum):
    UNIFORM = "uniform"
    LOG_UNIFORM = "logUniform"
    NORMAL = "normal"
    LOG_NORMAL = "logNormal"


class FeasibleSpace(Strict):
    min: str | None = None
    max: str | None = None
    step: str | None = None
    list: builtins.list[str] | None = Field(default=None, max_length=MAX_LIST)
    distribution: Distribution | None = None

    @field_validator("min", "max", "step", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        return str(value) if isinstance(value, int | float) else value

    @field_validator("list", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
                for v in value
            ]
        return value


class ParameterSpec(Strict):
    name: str = Field(min_length=1, max_length=63)
    parameterType: ParameterType
    feasibleSpace: FeasibleSpace

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _PARAM_NAME.match(value):
            raise ValueError(
                f"parameter name {value!r} must start with a letter or '_' and hold letters, digits, '_', '-', '.'"
            )
        return value

    @model_validator(mode="after")
    def _space(self) -> ParameterSpec:
        fs = self.feasibleSpace
        kind = self.parameterType
        if kind in (ParameterType.DISCRETE, ParameterType.CATEGORICAL):
            if fs.list is None or not fs.list:
                raise FieldError("feasibleSpace.list", f"a {kind.value} parameter needs a non-empty list")
            if len(set(fs.list)) != len(fs.list):
                raise FieldError("feasibleSpace.list", "a value is listed twice")
            if kind is ParameterType.DISCRETE:
                for item in fs.list:
                    _number(item, f"feasibleSpace.list item {item!r}")
            return self
        if fs.min is None or fs.max is None:
            raise FieldError("feasibleSpace", f"a {kind.value} parameter needs min and max")
        lo: float
        hi: float
        step: float | None
        if kind is ParameterType.INT:
            lo, hi = self._int(fs.min, "min"), self._int(fs.max, "max")
            step = self._int(fs.step, "step") if fs.step is not None else None
        else:
            lo, hi = _number(fs.min, "feasibleSpace.min"), _number(fs.max, "feasibleSpace.max")
            step = _number(fs.step, "feasibleSpace.step") if fs.step is not None else None
        if lo > hi:
            raise FieldError("feasibleSpace", f"min {fs.min} is greater than max {fs.max}")
        if step is not None and step <= 0:
            raise FieldError("feasibleSpace.step", f"must be greater than 0, got {fs.step}")
        dist = fs.distribution or Distribution.UNIFORM
        if dist in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL) and lo <= 0:
            raise FieldError("feasibleSpace", f"{dist.value} needs min > 0, got {fs.min}")
        if dist is Distribution.LOG_UNIFORM and step is not None:
            raise FieldError("feasibleSpace.step", "cannot be used with logUniform")
        return self

    @staticmethod
    def _int(value: str, what: str) -> int:
        try:
            x = float(value)
        except ValueError:
            raise FieldError(f"feasibleSpace.{what}", f"must be an integer, got {value!r}") from None
        if not math.isfinite(x) or x != int(x):
            raise FieldError(f"feasibleSpace.{what}", f"must be an integer, got {value!r}")
        return int(x)

    def bounds(self) -> tuple[float, float]:
        assert self.feasibleSpace.min is not None
        assert self.feasibleSpace.max is not None
        return float(self.feasibleSpace.min), float(self.feasibleSpace.max)

    def sample_value(self) -> str:
        """A value inside the space (to check the trial template at apply time)."""
        if self.feasibleSpace.list:
            return self.feasibleSpace.list[0]
        lo, _ = self.bounds()
        return str(int(lo)) if self.parameterType is ParameterType.INT else str(lo)


class TrialParameter(Strict):
    name: str = Field(min_length=1, max_length=63)
    reference: str | None = None
    description: str | None = None


class FileSystemPath(Strict):
    path: str = Field(min_length=1, max_length=4096)
    kind: Literal["File", "Directory"] = "File"
    format: Literal["TEXT", "JSON"] = "TEXT"


class MetricsFilter(Strict):
    metricsFormat: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("metricsFormat")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if len(pattern) > 1024:
                raise ValueError("a metricsFormat pattern is at most 1024 characters")
            try:
                groups = re.compile(pattern, re.ASCII).groups
            except re.error as exc:
                raise ValueError(f"metricsFormat {pattern!r} is not a regular expression: {exc}") from None
            if groups < 2:
                raise ValueError(
                    f"metricsFormat {pattern!r} needs two groups: the metric's name, then its value"
                )
        return value


class CollectorSource(Lenient):
    fileSystemPath: FileSystemPath | None = None
    filter: MetricsFilter | None = None


class Collector(Strict):
    kind: Literal["StdOut", "File", "TensorFlowEvent", "Push", "None"] = "StdOut"


class MetricsCollectorSpec(Strict):
    collector: Collector = Field(default_factory=Collector)
    source: CollectorSource | None = None

    @model_validator(mode="after")
    def _paths(self) -> MetricsCollectorSpec:
        kind = self.collector.kind
        path = self.source.fileSystemPath if self.source else None
        if kind in ("File", "TensorFlowEvent") and path is None:
            raise FieldError("source.fileSystemPath", f"the {kind} collector needs a path")
        if kind == "TensorFlowEvent" and path is not None and path.kind != "Directory":
            raise FieldError("source.fileSystemPath.kind", "the TensorFlowEvent collector reads a Directory")
        return self


class TrialTemplate(Strict):
    trialSpec: dict[str, Any]
    trialParameters: list[TrialParameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)
    primaryContainerName: str | None = None
    primaryPodLabels: dict[str, str] | None = None
    successCondition: str | None = None
    failureCondition: str | None = None
    retain: bool = False
    configMap: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _rules(self) -> TrialTemplate:
        if self.configMap is not None:
            raise FieldError(
                "configMap", "trial templates from ConfigMaps are not supported; inline trialSpec"
            )
        names = [p.name for p in self.trialParameters]
        if len(set(names)) != len(names):
            raise FieldError("trialParameters", "a name is used twice")
        for what in ("successCondition", "failureCondition"):
            expr = getattr(self, what)
            if expr is not None:
                parse_condition(expr, what=what)
        return self


class ResumePolicy(StrEnum):
    NEVER = "Never"
    LONG_RUNNING = "LongRunning"
    FROM_VOLUME = "FromVolume"


class ExperimentSpec(Strict):
    objective: ObjectiveSpec
    algorithm: AlgorithmSpec = Field(default_factory=lambda: AlgorithmSpec(algorithmName="random"))
    earlyStopping: EarlyStoppingSpec | None = None
    parameters: list[ParameterSpec] = Field(min_length=1, max_length=MAX_PARAMETERS)
    parallelTrialCount: int = Field(3, ge=1, le=1000)
    maxTrialCount: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    maxFailedTrialCount: int | None = Field(default=None, ge=0, le=MAX_TRIALS)
    resumePolicy: ResumePolicy = ResumePolicy.NEVER
    metricsCollectorSpec: MetricsCollectorSpec = Field(default_factory=MetricsCollectorSpec)
    trialTemplate: TrialTemplate
    #: lumiflow's: the cluster the trials run on (default: the profile's home cluster).
    cluster: str | None = None

    @model_validator(mode="after")
    def _rules(self) -> ExperimentSpec:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise FieldError("parameters", "a parameter name is used twice")
        name = canonical_algorithm(self.algorithm.algorithmName)
        if name in UNSUPPORTED:
            raise FieldError(
                "algorithm.algorithmName", f"{UNSUPPORTED[name]} (choose: {', '.join(ALGORITHMS)})"
            )
        info = ALGORITHMS.get(name)
        if info is None:
            raise FieldError(
                "algorithm.algorithmName",
                f"unknown algorithm {self.algorithm.algorithmName!r} (choose: {', '.join(ALGORITHMS)})",
            )
        parse_settings(info, self.algorithm.settings, where="algorithm.algorithmSettings")
        if len(self.objective.objective_names) > 1 and not info.multi_objective:
            multi = ", ".join(a.name for a in ALGORITHMS.values() if a.multi_objective)
            raise FieldError(
                "algorithm.algorithmName",
                f"{name} optimises one objective; with additionalObjectives use {multi}",
            )
        if info.needs_finite_space:
            for p in self.parameters:
                if p.parameterType is ParameterType.DOUBLE and p.feasibleSpace.step is None:
                    raise FieldError(
                        "parameters", f"grid needs a finite space; give double parameter {p.name!r} a step"
                    )
        if self.earlyStopping is not None:
            es = EARLY_STOPPING.get(self.earlyStopping.algorithmName.lower())
            if es is None:
                raise FieldError(
                    "earlyStopping.algorithmName",
                    f"unknown {self.earlyStopping.algorithmName!r} (choose: {', '.join(EARLY_STOPPING)})",
                )
            parse_settings(es, self.earlyStopping.settings, where="earlyStopping.algorithmSettings")
            if name == "hyperband":
                raise FieldError(
                    "earlyStopping", "the hyperband algorithm stops trials itself; remove earlyStopping"
                )
            if len(self.objective.objective_names) > 1:
                raise FieldError("earlyStopping", "early stopping needs a single objective")
        self._check_template()
        return self

    def _check_template(self) -> None:
        params = {p.name for p in self.parameters}
        declared = {p.name: p for p in self.trialTemplate.trialParameters}
        for tp in self.trialTemplate.trialParameters:
            ref = tp.reference or tp.name
            if ref not in params and ref not in META_REFERENCES:
                raise FieldError(
                    "trialTemplate.trialParameters",
                    f"{tp.name!r} refers to {ref!r}, which is not a parameter "
                    f"(parameters: {', '.join(sorted(params))})",
                )
        for used in sorted(placeholders(self.trialTemplate.trialSpec)):
            if used not in declared and (self.trialTemplate.trialParameters or used not in params):
                known = sorted(declared) if self.trialTemplate.trialParameters else sorted(params)
                raise FieldError(
                    "trialTemplate.trialSpec",
                    f"${{trialParameters.{used}}} is not defined "
                    f"(trialParameters: {', '.join(known) or 'none'})",
                )


class TrialPhase(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    KILLED = "Killed"
    EARLY_STOPPED = "EarlyStopped"
    METRICS_UNAVAILABLE = "MetricsUnavailable"

    def is_terminal(self) -> bool:
        return self not in (TrialPhase.CREATED, TrialPhase.RUNNING)

    def counts_as_failed(self) -> bool:
        """Toward maxFailedTrialCount (Katib counts trials without metrics too)."""
        return self in (TrialPhase.FAILED, TrialPhase.METRICS_UNAVAILABLE)


class ParameterAssignment(Strict):
    name: str
    value: str


class MetricObservation(Strict):
    name: str
    min: str | None = None
    max: str | None = None
    latest: str | None = None


class Observation(Strict):
    metrics: list[MetricObservation] = Field(default_factory=list)

    def value(self, name: str, strategy: str) -> float | None:
        for m in self.metrics:
            if m.name == name:
                raw = {"min": m.min, "max": m.max}.get(strategy, m.latest)
                try:
                    return float(raw) if raw is not None else None
                except ValueError:
                    return None
        return None


class StopRequest(Strict):
    reason: Literal["EarlyStopped", "Killed"]
    message: str = ""


class TrialSpec(Strict):
    objective: ObjectiveSpec
    parameterAssignments: list[ParameterAssignment]
    runSpec: dict[str, Any]
    metricsCollector: MetricsCollectorSpec = Field(default_factory=MetricsCollectorSpec)
    primaryContainerName: str | None = None
    successCondition: str | None = None
    failureCondition: str | None = None
    earlyStopping: EarlyStoppingSpec | None = None
    #: The trial's number in its experiment (0, 1, ...), and the sampler's notes about it.
    number: int = Field(0, ge=0)
    samplerAttrs: dict[str, Any] = Field(default_factory=dict)
    #: Set by the experiment: stop this trial's job (early stopping, experiment finished).
    stop: StopRequest | None = None
    retain: bool = False

    @property
    def assignments(self) -> dict[str, str]:
        return {a.name: a.value for a in self.parameterAssignments}


class TrialStatus(Strict):
    phase: TrialPhase | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    startTime: str | None = None
    completionTime: str | None = None
    observation: Observation | None = None


class Trial(ResourceModel):
    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = "Trial"
    spec: TrialSpec
    status: TrialStatus = Field(default_factory=TrialStatus)


class OptimalTrial(Strict):
    bestTrialName: str | None = None
    parameterAssignments: list[ParameterAssignment] = Field(default_factory=list)
    observation: Observation = Field(default_factory=Observation)


class ExperimentPhase(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    def is_terminal(self) -> bool:
        return self in (ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED)


class ExperimentStatus(Lenient):
    phase: ExperimentPhase | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    startTime: str | None = None
    completionTime: str | None = None
    currentOptimalTrial: OptimalTrial | None = None
    paretoFront: list[OptimalTrial] = Field(default_factory=list)


class Experiment(ResourceModel):
    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = "Experiment"
    spec: ExperimentSpec
    status: ExperimentStatus = Field(default_factory=ExperimentStatus)


# --- the trial template ----------------------------------------------------------------------


def placeholders(value: Any) -> set[str]:
    """Names used as ``${trialParameters.NAME}`` anywhere in ``value``'s strings."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for v in value.values():
            found |= placeholders(v)
    elif isinstance(value, list):
        for v in value:
            found |= placeholders(v)
    return found


def trial_values(
    template: TrialTemplate,
    assignments: dict[str, str],
    *,
    trial_name: str,
    namespace: str,
) -> dict[str, str]:
    """What each ``${trialParameters.NAME}`` becomes for one trial."""
    spec = template.trialSpec
    meta = {
        "${trialSpec.Name}": trial_name,
        "${trialSpec.Namespace}": namespace,
        "${trialSpec.Kind}": str(spec.get("kind", "")),
        "${trialSpec.APIVersion}": str(spec.get("apiVersion", "")),
    }
    if not template.trialParameters:
        return dict(assignments)
    out = {}
    for tp in template.trialParameters:
        ref = tp.reference or tp.name
        out[tp.name] = meta[ref] if ref in meta else assignments.get(ref, "")
    return out


def render(value: Any, values: dict[str, str]) -> Any:
    """``value`` with every ``${trialParameters.NAME}`` replaced (strings only, recursively)."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, values) for v in value]
    return value


# --- success and failure conditions ------------------------------------------------------------

_CONDITION = re.compile(
    r'^\s*status\.conditions\.#\(type\s*==\s*"(?P<type>[A-Za-z]+)"\)#\|#\(status\s*==\s*"(?P<status>True|False)"\)#\s*$'
)
#: A batch Job says Complete where a TrainingJob says Succeeded.
CONDITION_SYNONYMS = {"Complete": "Succeeded"}


def parse_condition(expr: str, *, what: str) -> tuple[str, str]:
    """Katib's GJSON condition on the job's status, in the form its examples use:
    ``status.conditions.#(type=="Succeeded")#|#(status=="True")#`` → (type, status)."""
    match = _CONDITION.match(expr)
    if match is None:
        raise FieldError(
            what,
            f'only the form status.conditions.#(type=="T")#|#(status=="True")# is supported, got {expr!r}',
        )
    kind = match.group("type")
    return CONDITION_SYNONYMS.get(kind, kind), match.group("status")


#: Katib's reason for an experiment that ran its maxTrialCount trials: the one ending that a
#: resumePolicy other than Never lets a user restart (by raising maxTrialCount).
MAX_TRIALS_REACHED = "ExperimentMaxTrialsReached"


def restartable(spec: dict[str, Any], status: dict[str, Any]) -> bool:
    """Katib's rule: an experiment that succeeded by reaching maxTrialCount, and whose
    resumePolicy is LongRunning or FromVolume, may be restarted with a larger budget."""
    policy = spec.get("resumePolicy") or ResumePolicy.NEVER.value
    return (
        status.get("phase") == "Succeeded"
        and status.get("reason") == MAX_TRIALS_REACHED
        and policy != ResumePolicy.NEVER.value
    )


def check_update(old: dict[str, Any], new: dict[str, Any], status: dict[str, Any]) -> None:
    """What may change: in a running experiment the trial budget and parallelism (as in
    Katib), never the search itself (objective, space, algorithm, template, resumePolicy);
    in an ended one nothing, unless it is ``restartable`` and the new maxTrialCount leaves
    room for more trials than it has run."""
    mutable = ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")
    for key in sorted(set(old) | set(new)):
        if key in mutable:
            continue
        if old.get(key) != new.get(key):
            raise ValueError(f"spec.{key}")
    if status.get("phase") not in ("Succeeded", "Failed") or old == new:
        return
    changed = next(f"spec.{key}" for key in mutable if old.get(key) != new.get(key))
    if not restartable(old, status):
        policy = old.get("resumePolicy") or ResumePolicy.NEVER.value
        raise ValidationFailed(
            f"the experiment has ended ({status.get('reason') or status.get('phase')}) and cannot be "
            f"restarted: only one that succeeded by reaching maxTrialCount, with resumePolicy "
            f"LongRunning or FromVolume, can be (its resumePolicy is {policy})",
            field=changed,
        )
    ran = int(status.get("trials") or 0)
    budget = new.get("maxTrialCount")
    if budget is not None and budget <= ran:
        raise ValidationFailed(
            f"to restart the experiment, maxTrialCount must be more than the {ran} trials it has run",
            field="spec.maxTrialCount",
        )
