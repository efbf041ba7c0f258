"""The Experiment controller: Katib's search loop on Optuna, with the store as its memory.

Each reconcile reads the experiment's trials, rebuilds the search from them
(:mod:`lumiflow.tuning.search`), and then, in this order:

1. early stopping — a running trial the pruner judges poor gets ``spec.stop: EarlyStopped``
   (its Trial controller stops the job at once);
2. the end — the goal reached (single objective), more failed trials than
   ``maxFailedTrialCount`` (Failed trials and MetricsUnavailable ones, as Katib counts),
   ``maxTrialCount`` trials finished, or a grid exhausted; trials still running then are
   stopped (Killed);
3. new trials — up to ``parallelTrialCount`` running, never more than ``maxTrialCount`` in
   all: each is created in the store, named ``{experiment}-{number}``, before it runs, so a
   server killed at any point neither loses nor repeats one;
4. status — Katib's counters and lists, ``currentOptimalTrial``, and for several objectives
   the Pareto front.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lumiflow.common.documents import SOURCE_DIR_ANNOTATION
from lumiflow.common.errors import AlreadyExists, LumiflowError, NotFound
from lumiflow.common.timeutil import to_rfc3339, utcnow
from lumiflow.controllers.conditions import set_condition
from lumiflow.controllers.manager import DONE, Controller, Result
from lumiflow.controllers.metrics.collector import MetricsCollector
from lumiflow.resources.experiment import (
    Experiment,
    ExperimentPhase,
    ExperimentStatus,
    ObjectiveType,
    OptimalTrial,
    ParameterAssignment,
    StopRequest,
    Trial,
    TrialPhase,
    TrialSpec,
    render,
    restartable,
    trial_values,
)
from lumiflow.resources.tuning_catalog import canonical_algorithm
from lumiflow.resources.workload import OWNER_FINALIZER
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import ObjectRef, StoredObject
from lumiflow.store.owned import OwnedObjects
from lumiflow.tuning.algorithms import resource_name
from lumiflow.tuning.search import Observed, Search
from lumiflow.tuning.space import assignments
from lumiflow.tuning.trials import (
    CLUSTER_ANNOTATION,
    EXPERIMENT_LABEL,
    RESOURCE_ANNOTATION,
    TRIAL_LABEL,
)

log = logging.getLogger(__name__)

TRIAL_NUMBER_LABEL = "lumiflow.dev/trial-number"
PRUNE_INTERVAL = 1.0
KATIB_COUNTERS = {
    TrialPhase.CREATED: ("trialsPending", "pendingTrialList"),
    TrialPhase.RUNNING: ("trialsRunning", "runningTrialList"),
    TrialPhase.SUCCEEDED: ("trialsSucceeded", "succeededTrialList"),
    TrialPhase.FAILED: ("trialsFailed", "failedTrialList"),
    TrialPhase.KILLED: ("trialsKilled", "killedTrialList"),
    TrialPhase.EARLY_STOPPED: ("trialsEarlyStopped", "earlyStoppedTrialList"),
    TrialPhase.METRICS_UNAVAILABLE: ("trialMetricsUnavailable", "metricsUnavailableTrialList"),
}


def stops_early(exp: Experiment) -> bool:
    """Whether running trials are judged step by step (early stopping, or Katib's hyperband)."""
    return (
        exp.spec.earlyStopping is not None
        or canonical_algorithm(exp.spec.algorithm.algorithmName) == "hyperband"
    )


def trial_name(experiment: str, number: int) -> str:
    suffix = f"-{number:04d}" if number < 10_000 else f"-{number}"
    return experiment[: 63 - len(suffix)] + suffix


@dataclass
class _Cached:
    generation: int
    search: Search


class ExperimentController(Controller):
    kind = "Experiment"
    owns = ("Trial",)
    wake_on_child_phase_only = True  # summaries count finished trials; pruning polls

    def __init__(self, store: ResourceStore, *, collector: MetricsCollector) -> None:
        super().__init__(store)
        self.collector = collector
        self._searches: dict[str, _Cached] = {}
        self._trial_cache: dict[str, tuple[int, Trial]] = {}
        self._owned = OwnedObjects(store, "Trial")

    def reconcile(self, key: ObjectRef) -> Result:
        try:
            obj = self.store.get(key.kind, key.profile, key.name)
        except NotFound:
            return DONE
        exp = Experiment.parse(obj.to_manifest())
        trials = self._trials(obj)
        if obj.deletion_timestamp is not None:
            return self._finalize(obj, trials)
        now = to_rfc3339(utcnow()) or ""
        status = exp.status.model_copy(deep=True)
        events: list[tuple[str, str, str]] = []
        if status.phase is None:
            status.phase = ExperimentPhase.CREATED
            status.startTime = now
            set_condition(
                status.conditions,
                "Created",
                True,
                reason="ExperimentCreated",
                message="the experiment is created",
                now=now,
            )
            events.append(("Normal", "Created", f"searching with {exp.spec.algorithm.algorithmName}"))
        result = DONE
        observed = [self._observe(exp, t, obj) for t in trials]
        if self._restart(exp, obj, status, len(trials), now):
            events.append(("Normal", "Restarted", status.message or ""))
        if status.phase.is_terminal():
            self._stop_all(observed, "Killed", f"experiment {obj.name} has ended")
        else:
            search = self._search(exp, obj, len(trials))
            # Built from every trial: only when a pruner judges or a trial is to be sampled
            # (most wakes are a trial starting, with no free slot).
            built: list[object] = []

            pruning = stops_early(exp)

            def study() -> Any:
                if not built:
                    built.append(search.study(observed, to_prune=pruning))
                return built[0]

            if pruning:
                for o in observed:
                    live = o.phase in (TrialPhase.CREATED, TrialPhase.RUNNING) and o.trial.spec.stop is None
                    if not (live and o.intermediate):
                        continue
                    prune, notes = search.should_prune(study(), o.name)
                    if prune:
                        self._request_stop(
                            o,
                            "EarlyStopped",
                            "its intermediate results are worse than the others'",
                            notes=notes,
                        )
                        events.append(("Normal", "TrialEarlyStopped", f"stopped trial {o.name} early"))
                    elif notes is not None:
                        self._keep_notes(o, notes)
            end = self._end(exp, observed, search)
            if end is not None:
                phase, reason, message = end
                self._finish(status, phase, reason, message, now)
                events.append(
                    ("Normal" if phase is ExperimentPhase.SUCCEEDED else "Warning", reason, message)
                )
                self._stop_all(observed, "Killed", f"experiment {obj.name}: {message}")
            else:
                created = self._create_trials(obj, exp, search, study, observed)
                if created:
                    events.append(("Normal", "TrialsCreated", f"created {', '.join(created)}"))
                if status.phase is ExperimentPhase.CREATED:
                    status.phase = ExperimentPhase.RUNNING
                    set_condition(
                        status.conditions,
                        "Running",
                        True,
                        reason="ExperimentRunning",
                        message="the experiment is running",
                        now=now,
                    )
                running = any(o.phase in (TrialPhase.CREATED, TrialPhase.RUNNING) for o in observed)
                if pruning and running:
                    result = Result(requeue_after=PRUNE_INTERVAL)
                elif created:
                    result = Result(requeue_after=5.0)
        self._summarise(exp, status, observed)
        self._write(obj, exp.status, status, events)
        return result

    # --- reading --------------------------------------------------------------------------

    def _trials(self, obj: StoredObject) -> list[StoredObject]:
        return self._owned.list(obj)

    def _parsed(self, obj: StoredObject) -> Trial:
        """The Trial model, parsed once per resourceVersion (an experiment with hundreds of
        trials is reconciled on every trial's change)."""
        cached = self._trial_cache.get(obj.uid)
        if cached is not None and cached[0] == obj.resource_version:
            return cached[1]
        trial = Trial.parse(obj.to_manifest())
        if len(self._trial_cache) > 50_000:
            self._trial_cache.clear()
        self._trial_cache[obj.uid] = (obj.resource_version, trial)
        return trial

    def _observe(self, exp: Experiment, obj: StoredObject, owner: StoredObject) -> Observed:
        trial = self._parsed(obj)
        o = Observed(trial=trial, name=obj.name)
        objective = exp.spec.objective
        observation = trial.status.observation
        if observation is not None:
            values = [observation.value(n, objective.strategy(n)) for n in objective.objective_names]
            if all(v is not None for v in values):
                o.values = [float(v) for v in values if v is not None]
        if stops_early(exp):
            self._intermediate(o, objective.objectiveMetricName, owner)
        return o

    def _intermediate(self, o: Observed, metric: str, owner: StoredObject) -> None:
        try:
            job = self.store.get("TrainingJob", owner.profile, o.name)
        except NotFound:
            return
        if o.phase in (TrialPhase.CREATED, TrialPhase.RUNNING):
            try:
                self.collector.collect(job)
            except LumiflowError as exc:
                log.info("metrics of %s: %s", o.name, exc.message)
        for r in self.store.list_metrics(job.uid, names=[metric]):
            o.intermediate[r.step] = r.value

    def _search(self, exp: Experiment, obj: StoredObject, existing: int) -> Search:
        cached = self._searches.get(obj.uid)
        if cached is None or cached.generation != obj.generation:
            cached = _Cached(
                obj.generation,
                Search.create(
                    exp, uid=obj.uid, existing_trials=existing, study_name=f"{obj.profile}/{obj.name}"
                ),
            )
            self._searches[obj.uid] = cached
        return cached.search

    # --- deciding ---------------------------------------------------------------------------

    def _end(
        self, exp: Experiment, observed: list[Observed], search: Search
    ) -> tuple[ExperimentPhase, str, str] | None:
        spec = exp.spec
        objective = spec.objective
        if objective.goal is not None and not objective.additionalObjectives:
            for o in observed:
                if o.phase is TrialPhase.SUCCEEDED and o.values:
                    v = o.values[0]
                    reached = (
                        v <= objective.goal
                        if objective.type is ObjectiveType.MINIMIZE
                        else v >= objective.goal
                    )
                    if reached:
                        return (
                            ExperimentPhase.SUCCEEDED,
                            "ExperimentGoalReached",
                            f"trial {o.name} reached the goal: {objective.objectiveMetricName}={v:g} (goal {objective.goal:g})",
                        )
        failed = [o for o in observed if o.phase.counts_as_failed()]
        if spec.maxFailedTrialCount is not None and len(failed) > spec.maxFailedTrialCount:
            last = failed[-1].trial.status.message or ""
            return (
                ExperimentPhase.FAILED,
                "ExperimentMaxFailedTrialsReached",
                f"{len(failed)} trials failed, more than maxFailedTrialCount {spec.maxFailedTrialCount}; "
                f"last: {failed[-1].name}: {last}",
            )
        active = [o for o in observed if not o.phase.is_terminal()]
        limit = spec.maxTrialCount
        grid = search.grid_size()
        if grid is not None:
            limit = grid if limit is None else min(limit, grid)
        if limit is not None and len(observed) >= limit and not active:
            reason = "ExperimentMaxTrialsReached"
            if (
                grid is not None
                and limit == grid
                and (spec.maxTrialCount is None or grid < spec.maxTrialCount)
            ):
                reason = "ExperimentSuggestionEndReached"
            return ExperimentPhase.SUCCEEDED, reason, f"{len(observed)} trials have run"
        return None

    def _create_trials(
        self,
        obj: StoredObject,
        exp: Experiment,
        search: Search,
        study: Callable[[], Any],
        observed: list[Observed],
    ) -> list[str]:
        spec = exp.spec
        active = sum(1 for o in observed if not o.phase.is_terminal())
        limit = spec.maxTrialCount
        grid = search.grid_size()
        if grid is not None:
            limit = grid if limit is None else min(limit, grid)
        room = spec.parallelTrialCount - active
        if limit is not None:
            room = min(room, limit - len(observed))
        created: list[str] = []
        next_number = max((o.trial.spec.number for o in observed), default=-1) + 1
        step_key = resource_name(spec.algorithm.algorithmName, spec.algorithm.settings, spec.earlyStopping)
        for _ in range(max(0, room)):
            params, attrs = search.ask(study())
            values = dict(assignments(spec.parameters, params, grid=search.grid))
            name = trial_name(obj.name, next_number)
            rendered = render(
                spec.trialTemplate.trialSpec,
                trial_values(spec.trialTemplate, values, trial_name=name, namespace=obj.profile),
            )
            trial_spec = TrialSpec(
                objective=spec.objective,
                parameterAssignments=[ParameterAssignment(name=k, value=v) for k, v in values.items()],
                runSpec=rendered,
                metricsCollector=spec.metricsCollectorSpec,
                primaryContainerName=spec.trialTemplate.primaryContainerName,
                successCondition=spec.trialTemplate.successCondition,
                failureCondition=spec.trialTemplate.failureCondition,
                earlyStopping=spec.earlyStopping,
                number=next_number,
                samplerAttrs=attrs,
                retain=spec.trialTemplate.retain,
            )
            annotations = {RESOURCE_ANNOTATION: step_key}
            if spec.cluster:
                annotations[CLUSTER_ANNOTATION] = spec.cluster
            if SOURCE_DIR_ANNOTATION in obj.annotations:
                annotations[SOURCE_DIR_ANNOTATION] = obj.annotations[SOURCE_DIR_ANNOTATION]
            trial_obj = StoredObject(
                kind="Trial",
                api_version="lumiflow.dev/v1",
                profile=obj.profile,
                name=name,
                spec=trial_spec.model_dump(mode="json", exclude_none=True),
                labels={EXPERIMENT_LABEL: obj.name, TRIAL_LABEL: name, TRIAL_NUMBER_LABEL: str(next_number)},
                annotations=annotations,
                owner_references=[
                    {
                        "apiVersion": obj.api_version,
                        "kind": "Experiment",
                        "name": obj.name,
                        "uid": obj.uid,
                        "controller": True,
                    }
                ],
                finalizers=[OWNER_FINALIZER],
            )
            try:
                made = self.store.create(trial_obj)
            except AlreadyExists:
                # A trial of that name exists but is not this experiment's (or a lost race):
                # skip the number; the next reconcile re-reads the trials.
                next_number += 1
                continue
            created.append(name)
            observed.append(Observed(trial=self._parsed(made), name=name))
            next_number += 1
        return created

    def _request_stop(
        self, o: Observed, reason: str, message: str, *, notes: dict[str, Any] | None = None
    ) -> None:
        try:
            current = self.store.get("Trial", o.trial.metadata.namespace or "", o.name)
        except NotFound:
            return
        if current.spec.get("stop"):
            return
        stop = StopRequest.model_validate({"reason": reason, "message": message}).model_dump(mode="json")
        spec = {**current.spec, "stop": stop}
        if notes is not None:
            spec["samplerAttrs"] = notes
        try:
            self.store.update(current.copy(spec=spec))
        except LumiflowError as exc:
            log.info("stopping trial %s: %s", o.name, exc.message)

    def _keep_notes(self, o: Observed, notes: dict[str, Any]) -> None:
        """The pruner's notes about a trial (the rungs it passed), kept for the next study."""
        try:
            current = self.store.get("Trial", o.trial.metadata.namespace or "", o.name)
            self.store.update(current.copy(spec={**current.spec, "samplerAttrs": notes}))
        except LumiflowError as exc:
            log.info("keeping the pruner's notes on trial %s: %s", o.name, exc.message)

    def _stop_all(self, observed: list[Observed], reason: str, message: str) -> None:
        for o in observed:
            if not o.phase.is_terminal() and o.trial.spec.stop is None:
                self._request_stop(o, reason, message)

    # --- status ------------------------------------------------------------------------------

    @staticmethod
    def _finish(
        status: ExperimentStatus, phase: ExperimentPhase, reason: str, message: str, now: str
    ) -> None:
        status.phase = phase
        status.reason = reason
        status.message = message
        status.completionTime = now
        set_condition(status.conditions, "Running", False, reason=reason, message=message, now=now)
        set_condition(status.conditions, phase.value, True, reason=reason, message=message, now=now)

    @staticmethod
    def _restart(exp: Experiment, obj: StoredObject, status: ExperimentStatus, ran: int, now: str) -> bool:
        """Katib's resume: an experiment that succeeded by running its maxTrialCount trials,
        whose resumePolicy is not Never, runs again once maxTrialCount leaves room for more
        (the update check refuses any other change to an ended experiment). Its search goes
        on from the trials in the store, as after a server restart."""
        budget = exp.spec.maxTrialCount
        if not restartable(obj.spec, obj.status) or (budget is not None and budget <= ran):
            return False
        message = (
            f"maxTrialCount is now {budget}" if budget is not None else "maxTrialCount was removed"
        ) + f": the search resumes from its {ran} trials"
        status.phase = ExperimentPhase.RUNNING
        status.reason, status.message, status.completionTime = "ExperimentRestarting", message, None
        for kind, value in (("Succeeded", False), ("Running", True)):
            set_condition(
                status.conditions, kind, value, reason="ExperimentRestarting", message=message, now=now
            )
        return True

    def _summarise(self, exp: Experiment, status: ExperimentStatus, observed: list[Observed]) -> None:
        extra: dict[str, Any] = status.model_extra if status.model_extra is not None else {}
        counts = {counter: 0 for counter, _ in KATIB_COUNTERS.values()}
        lists: dict[str, list[str]] = {lst: [] for _, lst in KATIB_COUNTERS.values()}
        for o in sorted(observed, key=lambda o: o.trial.spec.number):
            counter, lst = KATIB_COUNTERS[o.phase]
            counts[counter] += 1
            lists[lst].append(o.name)
        extra["trials"] = len(observed)
        extra.update(counts)
        extra.update(lists)
        objective = exp.spec.objective
        done = [o for o in observed if o.phase is TrialPhase.SUCCEEDED and o.values]
        if len(objective.objective_names) == 1:
            best: tuple[float, Observed] | None = None
            for o in done:
                assert o.values is not None
                value = o.values[0]
                if not math.isfinite(value):
                    continue
                better = best is None or (
                    value < best[0] if objective.type is ObjectiveType.MINIMIZE else value > best[0]
                )
                if better:
                    best = (value, o)
            if best is not None:
                status.currentOptimalTrial = self._optimal(best[1])
        else:
            front = pareto_front(done, objective.directions)
            status.paretoFront = [self._optimal(o) for o in front]
            if front:
                status.currentOptimalTrial = self._optimal(front[0])

    @staticmethod
    def _optimal(o: Observed) -> OptimalTrial:
        return OptimalTrial(
            bestTrialName=o.name,
            parameterAssignments=list(o.trial.spec.parameterAssignments),
            observation=o.trial.status.observation or OptimalTrial().observation,
        )

    def _finalize(self, obj: StoredObject, trials: list[StoredObject]) -> Result:
        if trials:
            for t in trials:
                if t.deletion_timestamp is None:
                    try:
                        self.store.request_delete("Trial", t.profile, t.name)
                    except NotFound:
                        pass
            return Result(requeue_after=1.0)
        self._searches.pop(obj.uid, None)
        self._owned.forget(obj.uid)
        if OWNER_FINALIZER in obj.finalizers:
            self.store.update(obj.copy(finalizers=[f for f in obj.finalizers if f != OWNER_FINALIZER]))
        return DONE

    def _write(
        self,
        obj: StoredObject,
        before: ExperimentStatus,
        after: ExperimentStatus,
        events: list[tuple[str, str, str]],
    ) -> None:
        new = after.model_dump(mode="json", exclude_none=True)
        if new == before.model_dump(mode="json", exclude_none=True) and not events:
            return
        try:
            self.store.update_status(
                "Experiment",
                obj.profile,
                obj.name,
                new,
                expected_rv=obj.resource_version,
                writer="Experiment",
                events=events,
            )
        except NotFound:
            pass


def pareto_front(done: list[Observed], directions: list[ObjectiveType]) -> list[Observed]:
    """The trials no other trial dominates (at least as good on every objective, better on one),
    ordered by the first objective."""
    signs = [1.0 if d is ObjectiveType.MINIMIZE else -1.0 for d in directions]

    def key(o: Observed) -> list[float]:
        assert o.values is not None
        return [s * v for s, v in zip(signs, o.values, strict=True)]

    points = [(key(o), o) for o in done if o.values is not None and len(o.values) == len(directions)]
    front = []
    for p, o in points:
        dominated = any(
            all(a <= b for a, b in zip(q, p, strict=True)) and any(a < b for a, b in zip(q, p, strict=True))
            for q, _ in points
        )
        if not dominated:
            front.append((p, o))
    front.sort(key=lambda item: item[0])
    return [o for _, o in front]
