"""Katib's search space as Optuna distributions, and Optuna's values as Katib's strings.

``normal`` and ``logNormal`` (Katib's, which Optuna has no distribution for) are searched
in quantile space: the sampler sees a uniform ``u`` in (0, 1), the trial gets the normal
(or log-normal) quantile of ``u`` with mean at the middle of [min, max] and 3 standard
deviations to either end, clipped to [min, max]. The transform is monotone, so a model-based
sampler (TPE, Gaussian process) models the parameter faithfully.

A grid search sees every parameter as the finite list of its values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from lumiflow.resources.experiment import Distribution, ParameterSpec, ParameterType

QUANTILE_EPS = 1e-6
MAX_GRID_VALUES = 10_000


def _as_spec(p: ParameterSpec | dict[str, Any]) -> ParameterSpec:
    return p if isinstance(p, ParameterSpec) else ParameterSpec.model_validate(p)


def _is_normal(p: ParameterSpec) -> bool:
    return p.feasibleSpace.distribution in (Distribution.NORMAL, Distribution.LOG_NORMAL)


def distribution(p: ParameterSpec) -> BaseDistribution:
    fs = p.feasibleSpace
    if p.parameterType in (ParameterType.CATEGORICAL, ParameterType.DISCRETE):
        assert fs.list is not None
        return CategoricalDistribution(tuple(fs.list))
    if _is_normal(p):
        return FloatDistribution(QUANTILE_EPS, 1.0 - QUANTILE_EPS)
    lo, hi = p.bounds()
    log = fs.distribution is Distribution.LOG_UNIFORM
    if p.parameterType is ParameterType.INT:
        step = int(float(fs.step)) if fs.step is not None else 1
        high = int(lo) + (int(hi) - int(lo)) // step * step
        return IntDistribution(int(lo), high, log=log, step=1 if log else step)
    step_f = float(fs.step) if fs.step is not None else None
    if step_f is not None:
        hi = lo + math.floor((hi - lo) / step_f + 1e-9) * step_f
    return FloatDistribution(lo, hi, log=log, step=step_f)


def grid_values(p: ParameterSpec) -> list[str]:
    """Every value of a finite parameter, as Katib strings."""
    fs = p.feasibleSpace
    if fs.list is not None:
        return list(fs.list)
    lo, hi = p.bounds()
    if p.parameterType is ParameterType.INT:
        step = int(float(fs.step)) if fs.step is not None else 1
        values = [str(v) for v in range(int(lo), int(hi) + 1, step)]
    else:
        if fs.step is None:
            raise ValueError(f"parameter {p.name!r}: a grid needs a step for a double")
        step_f = float(fs.step)
        n = math.floor((hi - lo) / step_f + 1e-9) + 1
        if n > MAX_GRID_VALUES:
            raise ValueError(f"parameter {p.name!r}: {n} grid values is too many (at most {MAX_GRID_VALUES})")
        values = [format_float(lo + i * step_f) for i in range(n)]
    if len(values) > MAX_GRID_VALUES:
        raise ValueError(f"parameter {p.name!r}: {len(values)} grid values is too many")
    return values


def search_space(
    parameters: Sequence[ParameterSpec | dict[str, Any]], *, grid: bool = False
) -> dict[str, BaseDistribution]:
    specs = [_as_spec(p) for p in parameters]
    if grid:
        return {p.name: CategoricalDistribution(tuple(grid_values(p))) for p in specs}
    return {p.name: distribution(p) for p in specs}


def format_float(x: float) -> str:
    """Shortest text that reads back as the same float (``0.1``, not ``0.1000000000000001``)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") and "e" not in text else text


def to_value(p: ParameterSpec, internal: Any, *, grid: bool = False) -> str:
    """Optuna's value of ``p`` as the string the trial receives."""
    if grid or p.parameterType in (ParameterType.CATEGORICAL, ParameterType.DISCRETE):
        return str(internal)
    if _is_normal(p):
        lo, hi = p.bounds()
        log = p.feasibleSpace.distribution is Distribution.LOG_NORMAL
        a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
        mu, sigma = (a + b) / 2, (b - a) / 6 or 1e-12
        x = NormalDist(mu, sigma).inv_cdf(min(max(float(internal), QUANTILE_EPS), 1 - QUANTILE_EPS))
        x = min(max(x, a), b)
        x = math.exp(x) if log else x
        x = min(max(x, lo), hi)
        if p.parameterType is ParameterType.INT:
            return str(round(x))
        return format_float(x)
    if p.parameterType is ParameterType.INT:
        return str(int(internal))
    return format_float(float(internal))


def assignments(
    parameters: Sequence[ParameterSpec], params: dict[str, Any], *, grid: bool = False
) -> list[tuple[str, str]]:
    """(name, value) for every parameter, in the experiment's order."""
    return [(p.name, to_value(p, params[p.name], grid=grid)) for p in parameters]
