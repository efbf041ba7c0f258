"""Katib's algorithm names onto Optuna's samplers and pruners (well-kept implementations,
not hand-written ones). Settings were checked at apply time against
:mod:`lumiflow.resources.tuning_catalog`; here they become the samplers' arguments.

| Katib name | Optuna |
| --- | --- |
| random | RandomSampler |
| grid | GridSampler over every parameter's finite values |
| tpe / multivariate-tpe | TPESampler (``multivariate=True``) |
| cmaes | CmaEsSampler |
| sobol | QMCSampler (``qmc_type="sobol"``) |
| bayesianoptimization | GPSampler (Gaussian process, log expected improvement) |
| nsga2 | NSGAIISampler (multi-objective) |
| hyperband | RandomSampler + HyperbandPruner |

Early stopping: ``medianstop`` → MedianPruner (``min_trials_required`` → n_startup_trials,
``start_step`` → n_warmup_steps); ``hyperband`` → HyperbandPruner; ``successivehalving`` →
SuccessiveHalvingPruner (``eta`` → reduction_factor, ``min_resource``, ``max_resource`` /
``r_l``). The resource is the metrics' step (``resource_name``, default ``step``: a trial
printing ``epoch=3 loss=0.2`` with ``resource_name: epoch`` reports loss at step 3).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import (
    BaseSampler,
    CmaEsSampler,
    GPSampler,
    GridSampler,
    NSGAIISampler,
    QMCSampler,
    RandomSampler,
    TPESampler,
)

from lumiflow.resources.experiment import EarlyStoppingSpec, ParameterSpec
from lumiflow.resources.tuning_catalog import (
    ALGORITHMS,
    EARLY_STOPPING,
    canonical_algorithm,
    parse_settings,
)
from lumiflow.tuning.space import grid_values

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_RESOURCE = "step"


def _gamma(fraction: float) -> Any:
    def gamma(n: int) -> int:
        return min(math.ceil(fraction * n), 25)

    return gamma


def build_sampler(
    algorithm_name: str,
    settings: Mapping[str, str],
    *,
    seed: int | None,
    multi_objective: bool = False,
    parameters: Sequence[ParameterSpec | dict[str, Any]] = (),
) -> BaseSampler:
    """The sampler for an algorithm. ``seed`` is used unless ``random_state`` is set
    (then ``random_state`` plus ``seed``'s offset, see :func:`seed_for`)."""
    name = canonical_algorithm(algorithm_name)
    info = ALGORITHMS.get(name)
    if info is None:
        raise ValueError(f"unknown algorithm {algorithm_name!r}")
    s = parse_settings(info, settings, where="algorithm.algorithmSettings")
    if name in ("random", "hyperband"):
        return RandomSampler(seed=seed)
    if name == "grid":
        specs = [p if isinstance(p, ParameterSpec) else ParameterSpec.model_validate(p) for p in parameters]
        return GridSampler({p.name: grid_values(p) for p in specs}, seed=seed)
    if name in ("tpe", "multivariate-tpe"):
        kwargs: dict[str, Any] = {"seed": seed}
        if "n_startup_trials" in s:
            kwargs["n_startup_trials"] = s["n_startup_trials"]
        n_ei = s.get("n_ei_candidates", s.get("n_EI_candidates"))
        if n_ei is not None:
            kwargs["n_ei_candidates"] = n_ei
        if "gamma" in s:
            kwargs["gamma"] = _gamma(float(s["gamma"]))  # type: ignore[arg-type]
        for key in ("prior_weight", "consider_endpoints", "constant_liar"):
            if key in s:
                kwargs[key] = s[key]
        if name == "multivariate-tpe":
            kwargs["multivariate"] = True
            if s.get("group"):
                kwargs["group"] = True
        with warnings.catch_warnings():
            # Katib's tpe has a gamma setting; Optuna deprecated its argument in 4.9 (kept to 6).
            warnings.simplefilter("ignore", FutureWarning)
            return TPESampler(**kwargs)
    if name == "cmaes":
        kwargs = {"seed": seed}
        if "sigma" in s:
            kwargs["sigma0"] = s["sigma"]
        strategy = s.get("restart_strategy")
        if strategy and strategy != "none":
            kwargs["restart_strategy"] = strategy
        for key in ("popsize", "use_separable_cma", "with_margin", "n_startup_trials"):
            if key in s:
                kwargs[key] = s[key]
        return CmaEsSampler(**kwargs)
    if name == "sobol":
        return QMCSampler(
            qmc_type=str(s.get("qmc_type", "sobol")),
            scramble=bool(s.get("scramble", seed is not None)),
            seed=seed,
            warn_asynchronous_seeding=False,
            warn_independent_sampling=False,
        )
    if name == "bayesianoptimization":
        kwargs = {"seed": seed}
        startup = s.get("n_startup_trials", s.get("n_initial_points"))
        if startup is not None:
            kwargs["n_startup_trials"] = startup
        if "deterministic_objective" in s:
            kwargs["deterministic_objective"] = s["deterministic_objective"]
        return GPSampler(**kwargs)
    if name == "nsga2":
        kwargs = {"seed": seed}
        for key in ("population_size", "mutation_prob", "crossover_prob", "swapping_prob"):
            if key in s:
                kwargs[key] = s[key]
        return NSGAIISampler(**kwargs)
    raise ValueError(f"algorithm {name!r} has no sampler")  # pragma: no cover - catalog and code in step


def seed_for(settings: Mapping[str, str], *, offset: int, uid: str) -> int:
    """The sampler's seed: ``random_state`` when set, else one derived from the experiment;
    ``offset`` (trials that exist already) moves it on after a restart, so a random search
    resumed by a new server does not repeat the values it drew before."""
    base = settings.get("random_state")
    start = int(base) if base is not None else int(uid.replace("-", "")[:8] or "0", 16)
    return (start + offset * 7919) % (2**32)


def build_pruner(
    algorithm_name: str, algorithm_settings: Mapping[str, str], early: EarlyStoppingSpec | None
) -> BasePruner:
    name = canonical_algorithm(algorithm_name)
    if name == "hyperband":
        return _hyperband(parse_settings(ALGORITHMS["hyperband"], algorithm_settings, where="algorithm"))
    if early is None:
        return NopPruner()
    es_name = early.algorithmName.lower()
    s = parse_settings(EARLY_STOPPING[es_name], early.settings, where="earlyStopping")
    if es_name == "medianstop":
        return MedianPruner(
            n_startup_trials=int(s.get("min_trials_required", 3)),  # type: ignore[call-overload]
            n_warmup_steps=int(s.get("start_step", 4)),  # type: ignore[call-overload]
        )
    if es_name == "hyperband":
        return _hyperband(s)
    return SuccessiveHalvingPruner(
        min_resource=int(s.get("min_resource", 1)),  # type: ignore[call-overload]
        reduction_factor=int(s.get("eta", 3)),  # type: ignore[call-overload]
        min_early_stopping_rate=int(s.get("min_early_stopping_rate", 0)),  # type: ignore[call-overload]
    )


def _hyperband(s: Mapping[str, object]) -> HyperbandPruner:
    max_resource = s.get("max_resource", s.get("r_l"))
    return HyperbandPruner(
        min_resource=int(s.get("min_resource", 1)),  # type: ignore[call-overload]
        max_resource=int(max_resource) if max_resource is not None else "auto",  # type: ignore[call-overload]
        reduction_factor=int(s.get("eta", 3)),  # type: ignore[call-overload]
    )


def resource_name(
    algorithm_name: str, algorithm_settings: Mapping[str, str], early: EarlyStoppingSpec | None
) -> str:
    """The metrics' step key: the resource Hyperband and successive halving count."""
    if canonical_algorithm(algorithm_name) == "hyperband":
        return algorithm_settings.get("resource_name", DEFAULT_RESOURCE)
    if early is not None:
        return early.settings.get("resource_name", DEFAULT_RESOURCE)
    return DEFAULT_RESOURCE
