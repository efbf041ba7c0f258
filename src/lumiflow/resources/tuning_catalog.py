"""The tuning algorithms lumiflow offers under Katib's names, and the settings each accepts.

This is the contract checked at apply time (an unknown algorithm or setting is an error that
names it); :mod:`lumiflow.tuning.algorithms` maps each entry onto an Optuna sampler or
pruner, and a test checks that every entry here builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lumiflow.resources.frameworks import FieldError


def _int(value: str) -> int:
    return int(value)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise ValueError("must be 1 or more")
    return n


def _non_negative_int(value: str) -> int:
    n = int(value)
    if n < 0:
        raise ValueError("must be 0 or more")
    return n


def _float(value: str) -> float:
    return float(value)


def _fraction(value: str) -> float:
    x = float(value)
    if not 0.0 < x <= 1.0:
        raise ValueError("must be in (0, 1]")
    return x


def _probability(value: str) -> float:
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise ValueError("must be in [0, 1]")
    return x


def _positive_float(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise ValueError("must be greater than 0")
    return x


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _eta(value: str) -> int:
    n = int(value)
    if n < 2:
        raise ValueError("must be 2 or more")
    return n


def _choice(*allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return check


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


Setting = Callable[[str], object]


@dataclass(frozen=True)
class AlgorithmInfo:
    name: str
    description: str
    settings: Mapping[str, Setting]
    multi_objective: bool = False
    #: Needs every parameter to have a finite list of values (grid).
    needs_finite_space: bool = False


_TPE = {
    "random_state": _int,
    "n_startup_trials": _non_negative_int,
    "n_EI_candidates": _positive_int,
    "n_ei_candidates": _positive_int,
    "gamma": _fraction,
    "prior_weight": _positive_float,
    "consider_endpoints": _bool,
    "constant_liar": _bool,
}
_HYPERBAND = {
    "resource_name": _name,
    "eta": _eta,
    "r_l": _positive_int,
    "max_resource": _positive_int,
    "min_resource": _positive_int,
}

ALGORITHMS: dict[str, AlgorithmInfo] = {
    a.name: a
    for a in (
        AlgorithmInfo("random", "uniform random search", {"random_state": _int}, multi_objective=True),
        AlgorithmInfo(
            "grid", "every combination, in a random order", {"random_state": _int}, needs_finite_space=True
        ),
        AlgorithmInfo("tpe", "tree-structured Parzen estimator", _TPE, multi_objective=True),
        AlgorithmInfo(
            "multivariate-tpe",
            "TPE modelling the parameters jointly",
            {**_TPE, "group": _bool},
            multi_objective=True,
        ),
        AlgorithmInfo(
            "cmaes",
            "covariance matrix adaptation evolution strategy",
            {
                "random_state": _int,
                "sigma": _positive_float,
                "restart_strategy": _choice("none", "ipop", "bipop"),
                "popsize": _positive_int,
                "use_separable_cma": _bool,
                "with_margin": _bool,
                "n_startup_trials": _non_negative_int,
            },
        ),
        AlgorithmInfo(
            "sobol",
            "Sobol quasi-Monte Carlo sequence",
            {"random_state": _int, "scramble": _bool, "qmc_type": _choice("sobol", "halton")},
            multi_objective=True,
        ),
        AlgorithmInfo(
            "bayesianoptimization",
            "Gaussian-process Bayesian optimisation",
            {
                "random_state": _int,
                "n_initial_points": _non_negative_int,
                "n_startup_trials": _non_negative_int,
                "base_estimator": _choice("GP"),
                "deterministic_objective": _bool,
            },
            multi_objective=True,
        ),
        AlgorithmInfo(
            "nsga2",
            "NSGA-II genetic algorithm (multi-objective)",
            {
                "random_state": _int,
                "population_size": _positive_int,
                "mutation_prob": _probability,
                "crossover_prob": _probability,
                "swapping_prob": _probability,
            },
            multi_objective=True,
        ),
        AlgorithmInfo(
            "hyperband",
            "random search with Hyperband early stopping over a resource (Katib's hyperband)",
            {**_HYPERBAND, "random_state": _int},
        ),
    )
}
#: Other spellings users write.
ALGORITHM_ALIASES = {"nsgaii": "nsga2", "nsga-ii": "nsga2", "bayesian-optimization": "bayesianoptimization"}
#: Katib's algorithms that lumiflow does not offer, with the reason (said at apply time).
UNSUPPORTED = {
    "enas": "neural architecture search (ENAS) is not offered",
    "darts": "neural architecture search (DARTS) is not offered",
    "pbt": "population-based training is not offered",
}

EARLY_STOPPING: dict[str, AlgorithmInfo] = {
    a.name: a
    for a in (
        AlgorithmInfo(
            "medianstop",
            "stop a trial whose best value by step S is worse than the median of the others at S",
            {"min_trials_required": _positive_int, "start_step": _non_negative_int},
        ),
        AlgorithmInfo("hyperband", "Hyperband (brackets of successive halving), ASHA-style", _HYPERBAND),
        AlgorithmInfo(
            "successivehalving",
            "asynchronous successive halving (ASHA)",
            {**_HYPERBAND, "min_early_stopping_rate": _non_negative_int},
        ),
    )
}


def canonical_algorithm(name: str) -> str:
    return ALGORITHM_ALIASES.get(name.lower(), name.lower())


def parse_settings(info: AlgorithmInfo, settings: Mapping[str, str], *, where: str) -> dict[str, object]:
    """Each setting converted; FieldError naming the setting and what it accepts."""
    out: dict[str, object] = {}
    for key, value in settings.items():
        convert = info.settings.get(key)
        if convert is None:
            allowed = ", ".join(sorted(info.settings)) or "none"
            raise FieldError(where, f"{info.name} has no setting {key!r} (settings: {allowed})")
        try:
            out[key] = convert(value)
        except ValueError as exc:
            reason = str(exc)
            if reason.startswith(("invalid literal", "could not convert")):
                reason = "is not a number of the right kind"
            raise FieldError(where, f"setting {key!r} of {info.name}: {value!r} {reason}") from None
    return out
