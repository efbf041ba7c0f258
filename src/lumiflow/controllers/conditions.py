"""Kubeflow-style conditions: each type at most once, with transition times.

Setting a condition to True also turns off the conditions it excludes (Running and
Restarting exclude each other; a finished job is neither running nor restarting), as
Kubeflow's training operator does.
"""

from __future__ import annotations

from lumiflow.resources.meta import Condition
from lumiflow.resources.trainingjob import ConditionType as C

EXCLUDES: dict[str, tuple[str, ...]] = {
    C.RUNNING: (C.RESTARTING, C.QUEUED, C.SUSPENDED),
    C.RESTARTING: (C.RUNNING,),
    C.QUEUED: (C.RUNNING,),
    C.SUSPENDED: (C.RUNNING, C.RESTARTING, C.QUEUED),
    C.SUCCEEDED: (C.RUNNING, C.RESTARTING, C.QUEUED, C.FAILED),
    C.FAILED: (C.RUNNING, C.RESTARTING, C.QUEUED, C.SUCCEEDED),
}


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    *,
    reason: str,
    message: str,
    now: str,
) -> bool:
    """Sets one condition (and turns off those it excludes); returns True if anything changed."""
    changed = False
    value = "True" if status else "False"
    current = get_condition(conditions, type_)
    if current is None:
        if status:
            conditions.append(
                Condition(
                    type=type_,
                    status=value,
                    reason=reason,
                    message=message,
                    lastUpdateTime=now,
                    lastTransitionTime=now,
                )
            )
            changed = True
    elif current.status != value or current.reason != reason or current.message != message:
        if current.status != value:
            current.lastTransitionTime = now
        current.status, current.reason, current.message, current.lastUpdateTime = value, reason, message, now
        changed = True
    if status:
        for other in EXCLUDES.get(type_, ()):
            cond = get_condition(conditions, other)
            if cond is not None and cond.status == "True":
                cond.status = "False"
                cond.lastTransitionTime = now
                cond.lastUpdateTime = now
                changed = True
    return changed
