"""An experiment's search, rebuilt from its Trials: the store is the only state.

Each reconcile builds an in-memory Optuna study holding every trial the store has (its
parameters, state, objective values, intermediate values, and the sampler's own notes, kept
in ``spec.samplerAttrs``) and asks it for new parameters. The sampler and pruner objects are
kept between reconciles (their random state moves on); after a server restart they are made
again with a seed moved on by the number of trials (see ``seed_for``), and the study is the
same as before the restart. So a search resumes where it stopped; no trial is repeated or
lost, because trials are named by their number and created in the store before they run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from lumiflow.resources.experiment import Experiment, ObjectiveType, Trial, TrialPhase
from lumiflow.resources.tuning_catalog import canonical_algorithm
from lumiflow.tuning.algorithms import build_pruner, build_sampler, seed_for
from lumiflow.tuning.space import search_space

#: Where the sampler's internal value of each parameter is kept in samplerAttrs (the
#: trial's own values are Katib strings; a normal parameter's internal value is a quantile).
PARAMS_KEY = "lumiflow:params"


@dataclass
class Observed:
    """What the experiment knows of one trial."""

    trial: Trial
    name: str
    #: Objective values, one per objective (None: not known).
    values: list[float] | None = None
    #: Intermediate values of the first objective, by step.
    intermediate: dict[int, float] = field(default_factory=dict)

    @property
    def phase(self) -> TrialPhase:
        return self.trial.status.phase or TrialPhase.CREATED


@dataclass
class Search:
    """The sampler and pruner of one experiment, and the space they search."""

    sampler: BaseSampler
    pruner: BasePruner
    space: dict[str, BaseDistribution]
    directions: list[StudyDirection]
    grid: bool
    uid: str
    #: The study's name: Hyperband puts a trial in a bracket by a hash of it and the trial's
    #: number, so it is the experiment's (profile/name), the same after a restart.
    study_name: str = ""
    #: Optuna's number of each trial in the study last built, by trial name.
    numbers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(cls, exp: Experiment, *, uid: str, existing_trials: int, study_name: str = "") -> Search:
        spec = exp.spec
        settings = spec.algorithm.settings
        name = canonical_algorithm(spec.algorithm.algorithmName)
        grid = name == "grid"
        seed = seed_for(settings, offset=existing_trials, uid=uid)
        sampler = build_sampler(
            name,
            settings,
            seed=seed,
            multi_objective=len(spec.objective.objective_names) > 1,
            parameters=spec.parameters,
        )
        pruner = build_pruner(name, settings, spec.earlyStopping)
        directions = [
            StudyDirection.MINIMIZE if d is ObjectiveType.MINIMIZE else StudyDirection.MAXIMIZE
            for d in spec.objective.directions
        ]
        space = search_space(spec.parameters, grid=grid)
        return cls(sampler, pruner, space, directions, grid, uid, study_name=study_name or uid)

    def study(self, observed: Sequence[Observed], *, to_prune: bool = True) -> optuna.Study:
        """The Optuna study of the experiment's trials. A random sampler draws without looking
        at them: when nothing is to be pruned, its study is left empty (building one costs
        ~4 ms per 100 trials, on every trial's end)."""
        if not to_prune and type(self.sampler) is optuna.samplers.RandomSampler:
            self.numbers = {}
            return optuna.create_study(
                storage=InMemoryStorage(),
                sampler=self.sampler,
                pruner=self.pruner,
                study_name=self.study_name,
                directions=self.directions,
            )
        study = optuna.create_study(
            storage=InMemoryStorage(),
            sampler=self.sampler,
            pruner=self.pruner,
            study_name=self.study_name,
            directions=self.directions,
        )
        frozen: list[FrozenTrial] = []
        self.numbers = {}
        for o in sorted(observed, key=lambda o: o.trial.spec.number):
            t = self._frozen(o)
            if t is not None:
                self.numbers[o.name] = len(frozen)
                frozen.append(t)
        if frozen:
            study.add_trials(frozen)
        return study

    def _frozen(self, o: Observed) -> FrozenTrial | None:
        attrs = dict(o.trial.spec.samplerAttrs)
        params = attrs.pop(PARAMS_KEY, None)
        if not isinstance(params, dict) or set(params) != set(self.space):
            return None  # the space changed under the trial (cannot be): leave it out
        phase = o.phase
        values: list[float] | None = None
        if phase is TrialPhase.SUCCEEDED and o.values is not None and all(math.isfinite(v) for v in o.values):
            state, values = TrialState.COMPLETE, list(o.values)
        elif phase is TrialPhase.EARLY_STOPPED:
            state = TrialState.PRUNED
        elif phase.is_terminal():
            state = TrialState.FAIL
        else:
            state = TrialState.RUNNING
        intermediate = {s: v for s, v in o.intermediate.items() if math.isfinite(v)}
        try:
            return create_trial(
                state=state,
                params=params,
                distributions=self.space,
                values=values,
                intermediate_values=intermediate,
                system_attrs=attrs,
            )
        except ValueError:
            return None  # a stored value outside the space (edited by hand): leave it out

    def ask(self, study: optuna.Study) -> tuple[dict[str, Any], dict[str, Any]]:
        """New parameters (the sampler's internal values) and the sampler's notes."""
        trial = study.ask(fixed_distributions=self.space)
        frozen = study.get_trials(deepcopy=False)[-1]
        assert frozen.number == trial.number
        attrs = {k: v for k, v in frozen.system_attrs.items() if _jsonable(v)}
        attrs[PARAMS_KEY] = dict(trial.params)
        return dict(trial.params), attrs

    def should_prune(self, study: optuna.Study, name: str) -> tuple[bool, dict[str, Any] | None]:
        """Whether the pruner stops the running trial ``name``, and the trial's sampler notes
        when the pruner added to them (successive halving records the rungs a trial passed,
        which later trials are compared with): the caller keeps those in the Trial."""
        number = self.numbers.get(name)
        if number is None:
            return False, None
        frozen = study.get_trials(deepcopy=False)[number]
        if frozen.state != TrialState.RUNNING or not frozen.intermediate_values:
            return False, None
        before = dict(frozen.system_attrs)
        prune = bool(self.pruner.prune(study, frozen))
        after = study.get_trials(deepcopy=False)[number].system_attrs
        changed = {k: v for k, v in after.items() if before.get(k) != v and _jsonable(v)}
        if not changed:
            return prune, None
        notes = {**before, **changed, PARAMS_KEY: dict(frozen.params)}
        return prune, {k: v for k, v in notes.items() if _jsonable(v)}

    def grid_size(self) -> int | None:
        if not self.grid:
            return None
        size = 1
        for dist in self.space.values():
            size *= len(dist.choices)  # type: ignore[attr-defined]
        return size


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False
