"""The Trial controller: one TrainingJob per trial, judged by its phase and its metrics.

* The job is the trial template rendered with the trial's values, converted like any
  manifest (a TFJob, PyTorchJob, batch Job, ... becomes a TrainingJob), named as the trial,
  owned by it, labelled with Katib's labels, told ``KATIB_TRIAL_NAME``, and given the
  experiment's metrics collector (annotation read by :mod:`lumiflow.controllers.metrics`).
* While the job runs, the trial is Running and its observation follows the metrics.
* When the job ends, its metrics are read to the end first (the log outlives the process,
  so nothing is lost to a race), then: the success condition holds and every objective
  metric was reported → Succeeded; it holds but an objective is missing →
  MetricsUnavailable, saying which; else Failed, with the job's reason.
* ``spec.stop`` (set by the experiment: early stopping, or the experiment is over) suspends
  the job — its processes stop and its quota is given back at once — and the trial ends
  EarlyStopped or Killed.
* The finished job is kept (it holds no resources any more): its log and metrics stay
  browsable until the experiment is deleted. Deleting a trial deletes its job.
"""

from __future__ import annotations

import logging
from typing import Any

from lumiflow.common.documents import SOURCE_DIR_ANNOTATION
from lumiflow.common.errors import AlreadyExists, LumiflowError, NotFound, ValidationFailed
from lumiflow.common.timeutil import to_rfc3339, utcnow
from lumiflow.controllers.conditions import set_condition
from lumiflow.controllers.manager import DONE, Controller, Result
from lumiflow.controllers.metrics.collector import COLLECTOR_ANNOTATION, CollectorSpec, MetricsCollector
from lumiflow.resources.experiment import (
    MetricObservation,
    MetricsCollectorSpec,
    Observation,
    Trial,
    TrialPhase,
    TrialStatus,
    parse_condition,
)
from lumiflow.resources.registry import KindRegistry, prepare
from lumiflow.resources.workload import OWNER_FINALIZER
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import Change, ObjectRef, StoredObject

log = logging.getLogger(__name__)

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
#: Set on a trial by its experiment: the metrics' step key (Hyperband's resource), and the
#: cluster the experiment's trials run on.
RESOURCE_ANNOTATION = "lumiflow.dev/resource-name"
CLUSTER_ANNOTATION = "lumiflow.dev/cluster"
RUNNING_RESYNC = 1.0
FINISHED = ("Succeeded", "Failed")


def collector_spec(mc: MetricsCollectorSpec, *, names: list[str], step_key: str) -> CollectorSpec:
    source = mc.source
    path = source.fileSystemPath if source else None
    patterns = tuple(source.filter.metricsFormat) if source and source.filter else ()
    return CollectorSpec(
        kind=mc.collector.kind,
        path=path.path if path else None,
        format=path.format if path else "TEXT",
        patterns=patterns,
        names=tuple(names),
        step_key=step_key,
    )


def observation_of(records: list[Any], names: list[str]) -> Observation:
    """Katib's observation: min, max and latest of each metric (as strings)."""
    by_name: dict[str, list[Any]] = {}
    for r in records:
        by_name.setdefault(r.name, []).append(r)
    metrics = []
    for name in names:
        points = by_name.get(name)
        if not points:
            continue
        values = [p.value for p in points]
        latest = max(points, key=lambda p: (p.timestamp, p.step)).value
        metrics.append(
            MetricObservation(name=name, min=repr(min(values)), max=repr(max(values)), latest=repr(latest))
        )
    return Observation(metrics=metrics)


class TrialController(Controller):
    kind = "Trial"
    owns = ("TrainingJob",)
    wake_on_child_phase_only = True  # metrics are read on its own resync

    def child_wake_delay(self, change: Change) -> float | None:
        # A job waiting to start (Pending, Queued) changes nothing in its trial.
        return None if change.phase in ("Pending", "Queued") else 0.0

    def __init__(self, store: ResourceStore, *, registry: KindRegistry, collector: MetricsCollector) -> None:
        super().__init__(store)
        self.registry = registry
        self.collector = collector

    # --- the loop --------------------------------------------------------------------------

    def reconcile(self, key: ObjectRef) -> Result:
        try:
            obj = self.store.get(key.kind, key.profile, key.name)
        except NotFound:
            return DONE
        trial = Trial.parse(obj.to_manifest())
        job = self._job(obj)
        if obj.deletion_timestamp is not None:
            return self._finalize(obj, job)
        status = trial.status.model_copy(deep=True)
        events: list[tuple[str, str, str]] = []
        now = to_rfc3339(utcnow()) or ""
        result = DONE
        phase = status.phase
        if phase is not None and phase.is_terminal():
            return DONE
        stop = trial.spec.stop
        if job is None:
            if stop is not None:
                self._end(
                    status,
                    TrialPhase(stop.reason),
                    stop.reason,
                    stop.message or "stopped before it started",
                    now,
                )
            else:
                problem = self._create_job(obj, trial)
                if problem is not None:
                    self._end(status, TrialPhase.FAILED, "InvalidTrialSpec", problem, now)
                    events.append(("Warning", "InvalidTrialSpec", problem))
                else:
                    status.phase = TrialPhase.CREATED
                    status.startTime = status.startTime or now
                    set_condition(
                        status.conditions,
                        "Created",
                        True,
                        reason="TrialCreated",
                        message="the trial's job is created",
                        now=now,
                    )
                    events.append(("Normal", "JobCreated", f"created TrainingJob {obj.name}"))
                    # The job's phases wake the trial from here on (and the periodic resync).
        elif stop is not None:
            result = self._stop(obj, trial, job, status, now)
        elif job.phase in FINISHED:
            result = self._judge(obj, trial, job, status, now, events)
        else:
            self.collector.collect(job)
            status.observation = self._observation(trial, job)
            if job.phase == "Running" and status.phase is not TrialPhase.RUNNING:
                status.phase = TrialPhase.RUNNING
                set_condition(
                    status.conditions,
                    "Running",
                    True,
                    reason="TrialRunning",
                    message="the trial is running",
                    now=now,
                )
            result = Result(requeue_after=RUNNING_RESYNC)
        self._write(obj, trial.status, status, events)
        return result

    # --- steps -------------------------------------------------------------------------------

    def _job(self, obj: StoredObject) -> StoredObject | None:
        try:
            job = self.store.get("TrainingJob", obj.profile, obj.name)
        except NotFound:
            return None
        return job if job.owner_uid == obj.uid else None

    def _create_job(self, obj: StoredObject, trial: Trial) -> str | None:
        """Creates the trial's job; returns why it cannot be made, or None."""
        doc = dict(trial.spec.runSpec)
        meta = dict(doc.get("metadata") or {})
        meta.pop("namespace", None)
        meta.pop("generateName", None)
        meta["name"] = obj.name
        doc["metadata"] = meta
        try:
            prepared = prepare(self.registry, doc, profile=obj.profile, name=obj.name)
        except ValidationFailed as exc:
            return f"the rendered trial template is invalid: {exc.message}"
        if prepared.info.kind != "TrainingJob":
            return f"a trial runs a training job, not a {prepared.info.kind}"
        job = prepared.obj
        experiment = obj.labels.get(EXPERIMENT_LABEL, "")
        job.labels = {**job.labels, EXPERIMENT_LABEL: experiment, TRIAL_LABEL: obj.name}
        spec = trial.spec
        names = spec.objective.metric_names
        step_key = obj.annotations.get(RESOURCE_ANNOTATION) or "step"
        annotations = {
            **job.annotations,
            COLLECTOR_ANNOTATION: collector_spec(
                spec.metricsCollector, names=names, step_key=step_key
            ).to_annotation(),
        }
        if SOURCE_DIR_ANNOTATION in obj.annotations and SOURCE_DIR_ANNOTATION not in annotations:
            annotations[SOURCE_DIR_ANNOTATION] = obj.annotations[SOURCE_DIR_ANNOTATION]
        job.annotations = annotations
        cluster = obj.annotations.get(CLUSTER_ANNOTATION)
        if cluster and not job.spec.get("cluster"):
            job.spec["cluster"] = cluster
        for replica in job.spec.get("replicaSpecs", {}).values():
            for container in replica.get("template", {}).get("spec", {}).get("containers", []):
                env = [e for e in container.get("env") or [] if e.get("name") != "KATIB_TRIAL_NAME"]
                env.append({"name": "KATIB_TRIAL_NAME", "value": obj.name})
                container["env"] = env
        job.owner_references = [
            {
                "apiVersion": obj.api_version,
                "kind": "Trial",
                "name": obj.name,
                "uid": obj.uid,
                "controller": True,
            }
        ]
        try:
            self.store.create(job)
        except AlreadyExists:
            pass  # made by an earlier reconcile that did not get to write the status
        return None

    def _observation(self, trial: Trial, job: StoredObject) -> Observation:
        names = trial.spec.objective.metric_names
        return observation_of(self.store.list_metrics(job.uid, names=names), names)

    def _stop(
        self, obj: StoredObject, trial: Trial, job: StoredObject, status: TrialStatus, now: str
    ) -> Result:
        stop = trial.spec.stop
        assert stop is not None
        if job.phase in FINISHED or job.phase == "Suspended":
            self.collector.collect(job)
            status.observation = self._observation(trial, job)
            if job.phase == "Succeeded" and stop.reason == "Killed":
                # It finished before the stop took effect: judge it as it ended.
                return self._judge(obj, trial, job, status, now, [])
            self._end(status, TrialPhase(stop.reason), stop.reason, stop.message, now)
            return DONE
        run_policy = dict(job.spec.get("runPolicy") or {})
        if not run_policy.get("suspend"):
            run_policy["suspend"] = True
            try:
                self.store.update(job.copy(spec={**job.spec, "runPolicy": run_policy}))
            except LumiflowError as exc:
                log.info("stopping the job of trial %s: %s", obj.name, exc.message)
        return Result(requeue_after=0.5)

    def _judge(
        self,
        obj: StoredObject,
        trial: Trial,
        job: StoredObject,
        status: TrialStatus,
        now: str,
        events: list[tuple[str, str, str]],
    ) -> Result:
        if not self.collector.collect(job):
            return Result(requeue_after=0.2)  # the log is still being written out
        status.observation = self._observation(trial, job)
        succeeded = self._holds(job, trial.spec.successCondition, default=job.phase == "Succeeded")
        failed = self._holds(job, trial.spec.failureCondition, default=job.phase == "Failed")
        if succeeded and not failed:
            have = {m.name for m in status.observation.metrics}
            missing = [n for n in trial.spec.objective.objective_names if n not in have]
            if missing:
                kind = trial.spec.metricsCollector.collector.kind
                message = (
                    f"the trial's job succeeded but reported no {', '.join(repr(m) for m in missing)} "
                    f"(collector {kind})"
                )
                self._end(status, TrialPhase.METRICS_UNAVAILABLE, "MetricsUnavailable", message, now)
                events.append(("Warning", "MetricsUnavailable", message))
            else:
                self._end(status, TrialPhase.SUCCEEDED, "TrialSucceeded", "the trial's job succeeded", now)
        else:
            reason, message = "TrialFailed", f"the trial's job {job.phase or 'ended'}"
            for cond in job.status.get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    message = f"the trial's job failed: {cond.get('message') or cond.get('reason')}"
            self._end(status, TrialPhase.FAILED, reason, message, now)
            events.append(("Warning", "TrialFailed", message))
        return DONE

    @staticmethod
    def _holds(job: StoredObject, expr: str | None, *, default: bool) -> bool:
        if expr is None:
            return default
        kind, wanted = parse_condition(expr, what="condition")
        for cond in job.status.get("conditions") or []:
            if cond.get("type") == kind:
                return str(cond.get("status")) == wanted
        return wanted == "False"

    @staticmethod
    def _end(status: TrialStatus, phase: TrialPhase, reason: str, message: str, now: str) -> None:
        status.phase = phase
        status.reason = reason
        status.message = message
        status.completionTime = now
        for other in ("Running",):
            set_condition(status.conditions, other, False, reason=reason, message=message, now=now)
        set_condition(status.conditions, phase.value, True, reason=reason, message=message, now=now)

    def _finalize(self, obj: StoredObject, job: StoredObject | None) -> Result:
        if job is not None:
            if job.deletion_timestamp is None:
                try:
                    self.store.request_delete("TrainingJob", job.profile, job.name)
                except NotFound:
                    pass
            return Result(requeue_after=1.0)
        if OWNER_FINALIZER in obj.finalizers:
            self.store.update(obj.copy(finalizers=[f for f in obj.finalizers if f != OWNER_FINALIZER]))
        return DONE

    def _write(
        self, obj: StoredObject, before: TrialStatus, after: TrialStatus, events: list[tuple[str, str, str]]
    ) -> None:
        new = after.model_dump(mode="json", exclude_none=True)
        if new == before.model_dump(mode="json", exclude_none=True) and not events:
            return
        try:
            self.store.update_status(
                "Trial",
                obj.profile,
                obj.name,
                new,
                expected_rv=obj.resource_version,
                writer="Trial",
                events=events,
            )
        except NotFound:
            pass
