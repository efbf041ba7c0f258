"""The RecurringRun controller: starts a PipelineRun at each trigger of a schedule.

Each reconcile looks at the whole state: the trigger times due since the last run created
(``status.lastTriggerTime``, else ``startTime`` or the creation), the schedule's runs that
have not finished, and ``maxConcurrency``; it creates the runs that fit, oldest first, and
asks to be woken at the next trigger (or, while waiting for a free slot, when one of its
runs changes: it owns them).

A run's name is made from the schedule's name and the trigger time
(``nightly-20261128t1400z``), so a run is never created twice for one trigger: after a
crash between creating runs and writing the status, the next reconcile finds them by
name. Runs are made exactly as the API makes them (:func:`resolve_run_spec`: the version
chosen at the trigger, its spec copied, the parameters checked); a trigger whose run
cannot be made (the pipeline was deleted, a parameter no longer fits) waits, with the
reason in the status, and is retried.

Deleting a RecurringRun keeps its runs, as Kubeflow Pipelines does: the controller removes
its owner reference from them (they keep the ``pipelines.lumiflow.dev/recurring-run``
label and ``spec.recurringRun``), then lets the object go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from lumiflow.common.errors import AlreadyExists, NotFound, ValidationFailed
from lumiflow.common.timeutil import parse_rfc3339, to_rfc3339, utcnow
from lumiflow.controllers.conditions import set_condition
from lumiflow.controllers.manager import DONE, Controller, Result
from lumiflow.pipelines.checks import PIPELINE_LABEL, resolve_run_spec
from lumiflow.resources.pipeline import RunState
from lumiflow.resources.recurring import MAX_CATCHUP, RecurringRun, RecurringRunPhase, due_times
from lumiflow.resources.registry import KindRegistry, prepare
from lumiflow.resources.workload import OWNER_FINALIZER
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import ObjectRef, StoredObject

log = logging.getLogger(__name__)

RECURRING_LABEL = "pipelines.lumiflow.dev/recurring-run"
SCHEDULED_ANNOTATION = "pipelines.lumiflow.dev/scheduled-time"
#: How often a schedule waiting for a free slot (or blocked) looks again, at the latest;
#: its runs' changes wake it sooner.
WAIT_SECONDS = 5.0
BLOCKED_SECONDS = 30.0


def run_name(schedule: str, when: datetime) -> str:
    """``<schedule>-<UTC trigger time>``, at most 63 characters (the schedule's name is cut,
    never the time): ``nightly-20261128t1400z``, with seconds when they are not zero."""
    when = when.astimezone(UTC)
    stamp = when.strftime("%Y%m%dt%H%M") + (when.strftime("%S") if when.second else "") + "z"
    prefix = schedule[: 63 - len(stamp) - 1].rstrip("-")
    return f"{prefix}-{stamp}"


def _unfinished(run: StoredObject) -> bool:
    state = run.status.get("state")
    try:
        return state is None or not RunState(state).is_terminal()
    except ValueError:
        return True


class RecurringRunController(Controller):
    kind = "RecurringRun"
    owns = ("PipelineRun",)

    def __init__(
        self,
        store: ResourceStore,
        *,
        registry: KindRegistry,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(store)
        self.registry = registry
        self.clock = clock

    def reconcile(self, key: ObjectRef) -> Result:
        try:
            obj = self.store.get(key.kind, key.profile, key.name)
        except NotFound:
            return DONE
        if obj.deletion_timestamp is not None:
            return self._finalize(obj)
        rr = RecurringRun.parse(obj.to_manifest())
        spec = rr.spec
        now = self.clock()
        nowtext = to_rfc3339(now) or ""
        status = rr.status.model_copy(deep=True)
        before = status.model_dump(mode="json", exclude_none=True)
        events: list[tuple[str, str, str]] = []
        owned = self.store.list("PipelineRun", profile=obj.profile, owner_uid=obj.uid).items
        owned_names = {r.name for r in owned}
        active = sum(1 for r in owned if _unfinished(r))
        created = 0
        requeue: float | None = None
        end = spec.end

        if not spec.enabled:
            phase = RecurringRunPhase.DISABLED
            status.nextTriggerTime = None
            message = "disabled: no new runs until it is enabled"
        else:
            if status.phase == RecurringRunPhase.DISABLED:
                status.enabledTime = nowtext
                events.append(
                    ("Normal", "Enabled", "enabled again; the triggers missed meanwhile are skipped")
                )
            created_at = obj.created_at or now
            schedule = spec.schedule(created_at)
            bounds = [parse_rfc3339(status.lastTriggerTime), spec.start or created_at]
            bounds.append(parse_rfc3339(status.enabledTime))
            after = max(b for b in bounds if b is not None)
            until = now if end is None else min(now, end)
            due, older_left_out = due_times(
                schedule, after=after, until=until, limit=1 if spec.noCatchup else MAX_CATCHUP
            )
            slots = spec.maxConcurrency - active
            blocked: str | None = None
            remaining = list(due)
            for when in due:
                name = run_name(obj.name, when)
                if name not in owned_names:
                    if slots <= 0:
                        break
                    try:
                        made = self._create_run(obj, rr, name, when)
                    except ValidationFailed as exc:
                        blocked = f"cannot start the run of {to_rfc3339(when)}: {exc.message}"
                        events.append(("Warning", "TriggerFailed", blocked))
                        break
                    if made:
                        slots -= 1
                        created += 1
                        events.append(("Normal", "Triggered", f"started run {name}"))
                remaining.remove(when)
                status.lastTriggerTime = to_rfc3339(when)
            if older_left_out and len(remaining) < len(due):
                why = "noCatchup" if spec.noCatchup else f"at most {MAX_CATCHUP} are caught up"
                events.append(("Normal", "TriggersSkipped", f"older missed triggers were skipped ({why})"))
            if remaining:
                status.nextTriggerTime = to_rfc3339(remaining[0])
                if blocked is not None:
                    message = blocked
                    requeue = BLOCKED_SECONDS
                else:
                    message = (
                        f"{len(remaining)} trigger(s) waiting: {active + created} run(s) unfinished, "
                        f"maxConcurrency {spec.maxConcurrency}"
                    )
                    requeue = WAIT_SECONDS
            else:
                nxt = schedule.next_after(max(until, after))
                if nxt is not None and end is not None and nxt > end:
                    nxt = None
                status.nextTriggerTime = to_rfc3339(nxt)
                message = f"next run at {status.nextTriggerTime}" if nxt is not None else "no trigger is left"
                if nxt is not None:
                    wait = (nxt - now).total_seconds() + 0.01
                    requeue = wait if requeue is None else min(requeue, wait)
            if end is not None and now >= end and not remaining:
                phase = RecurringRunPhase.FINISHED
                message = f"finished: endTime {spec.endTime} has passed"
                requeue = None
            else:
                phase = RecurringRunPhase.ENABLED

        if status.phase != phase and phase == RecurringRunPhase.FINISHED:
            events.append(("Normal", "Finished", message))
        if status.phase != phase and phase == RecurringRunPhase.DISABLED:
            events.append(("Normal", "Disabled", "disabled: no new runs"))
        status.phase = phase
        status.message = message
        status.runs = len(owned) + created
        status.active = active + created
        for p in RecurringRunPhase:
            set_condition(
                status.conditions, p.value, p is phase, reason=p.value, message=message, now=nowtext
            )
        after_dump = status.model_dump(mode="json", exclude_none=True)
        if after_dump != before or events:
            self.store.update_status(
                "RecurringRun",
                obj.profile,
                obj.name,
                after_dump,
                expected_rv=obj.resource_version,
                writer="RecurringRun",
                events=events[:20],
            )
        return Result(requeue_after=requeue) if requeue is not None else DONE

    def _create_run(self, obj: StoredObject, rr: RecurringRun, name: str, when: datetime) -> bool:
        """Creates the run of trigger ``when``; False when it exists already. Raises
        ValidationFailed when the pipeline, version or parameters do not make a run."""
        spec = rr.spec
        body: dict[str, object] = {
            "pipeline": spec.pipeline,
            "parameters": dict(spec.parameters),
            "caching": spec.caching,
            "recurringRun": obj.name,
        }
        if spec.version is not None:
            body["version"] = spec.version
        doc = {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "PipelineRun",
            "metadata": {
                "name": name,
                "labels": {RECURRING_LABEL: obj.name},
                "annotations": {SCHEDULED_ANNOTATION: to_rfc3339(when)},
            },
            "spec": body,
        }
        run = prepare(self.registry, doc, profile=obj.profile).obj
        run.spec = resolve_run_spec(self.store, obj.profile, run.spec)
        run.labels = {**run.labels, PIPELINE_LABEL: spec.pipeline}
        run.owner_references = [
            {
                "apiVersion": obj.api_version,
                "kind": "RecurringRun",
                "name": obj.name,
                "uid": obj.uid,
                "controller": True,
            }
        ]
        try:
            self.store.create(run)
        except AlreadyExists:
            return False
        return True

    def _finalize(self, obj: StoredObject) -> Result:
        """The runs stay (KFP keeps them): only the owner reference goes, then the object."""
        for run in self.store.list("PipelineRun", profile=obj.profile, owner_uid=obj.uid).items:
            refs = [r for r in run.owner_references if r.get("uid") != obj.uid]
            self.store.update(run.copy(owner_references=refs))
        if OWNER_FINALIZER in obj.finalizers:
            self.store.update(obj.copy(finalizers=[f for f in obj.finalizers if f != OWNER_FINALIZER]))
        return DONE
