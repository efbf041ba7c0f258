"""``RecurringRun``: Kubeflow Pipelines' recurring run (a schedule that starts PipelineRuns of
a pipeline), in KFP's words: a ``cron`` or ``interval`` trigger, ``maxConcurrency``,
``noCatchup``, ``startTime``/``endTime`` and ``enabled``.

The schedule itself (which times are due, the next one) is computed here from the spec, so
that what the API accepts and what the controller runs are the same thing; the controller
(:mod:`lumiflow.pipelines.recurring`) only decides what to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lumiflow.common import cron
from lumiflow.resources.frameworks import FieldError
from lumiflow.resources.meta import Condition, Lenient, ResourceModel, Strict
from lumiflow.resources.pipeline import MAX_PARAMETERS

#: Runs one schedule may have unfinished at once, at most (KFP allows up to 10).
MAX_CONCURRENCY = 100
#: Ten years: the longest interval.
MAX_INTERVAL_SECONDS = 10 * 366 * 86400
#: Missed triggers caught up after downtime, at most (the latest ones; older ones are skipped).
MAX_CATCHUP = 100


class RecurringRunPhase(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    #: Past ``endTime``: no trigger is left.
    FINISHED = "Finished"

    def is_terminal(self) -> bool:
        return self is RecurringRunPhase.FINISHED


def _rfc3339(value: Any, what: str) -> str | None:
    """An RFC 3339 time with its offset (YAML's unquoted timestamps are accepted too),
    normalised to UTC with a ``Z``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{what} {value!r} is not an RFC 3339 time (e.g. 2026-11-28T14:00:00Z)"
            ) from None
    else:
        raise ValueError(f"{what} must be an RFC 3339 time (e.g. 2026-11-28T14:00:00Z)")
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {value!s} has no UTC offset: end it with Z or +HH:MM")
    spec = "microseconds" if parsed.microsecond else "seconds"
    return parsed.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


class Schedule(Protocol):
    """When a trigger fires: both directions, strictly after or before ``t`` (aware, UTC)."""

    def next_after(self, t: datetime) -> datetime | None: ...

    def previous_before(self, t: datetime) -> datetime | None: ...


class CronTrigger(Strict):
    #: Five fields (minute hour day-of-month month day-of-week), six with a leading second
    #: field (as KFP writes them), or a macro (@hourly, @daily, ...).
    expression: str = Field(max_length=256)
    timezone: str = Field(default="UTC", max_length=64)

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        try:
            cron.parse(value)
        except cron.CronError as exc:
            raise ValueError(str(exc)) from None
        return " ".join(value.split())

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (an IANA name such as UTC or Europe/Zurich)"
            ) from None
        return value


class IntervalTrigger(Strict):
    seconds: int = Field(ge=1, le=MAX_INTERVAL_SECONDS)


class Trigger(Strict):
    cron: CronTrigger | None = None
    interval: IntervalTrigger | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        if (self.cron is None) == (self.interval is None):
            which = "both" if self.cron is not None else "neither"
            raise ValueError(f"give exactly one of cron and interval ({which} given)")
        return self


class RecurringRunSpec(Strict):
    #: The pipeline to run, and its version (default: the latest at each trigger).
    pipeline: str = Field(min_length=1, max_length=63)
    version: int | None = Field(default=None, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    caching: bool = True
    trigger: Trigger
    startTime: str | None = None
    endTime: str | None = None
    #: Runs of this schedule not yet finished, at most; a trigger waits for a free slot.
    maxConcurrency: int = Field(default=1, ge=1, le=MAX_CONCURRENCY)
    #: After downtime (or while waiting for a free slot): false runs the missed triggers one
    #: by one, true only the latest missed one.
    noCatchup: bool = False
    #: False keeps the object and stops triggering (the triggers missed meanwhile never run).
    enabled: bool = True

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"at most {MAX_PARAMETERS} parameters")
        return value

    @field_validator("startTime", "endTime", mode="before")
    @classmethod
    def _time(cls, value: Any, info: ValidationInfo) -> str | None:
        return _rfc3339(value, str(info.field_name))

    @model_validator(mode="after")
    def _window(self) -> RecurringRunSpec:
        start, end = self.start, self.end
        if start is not None and end is not None and end <= start:
            raise FieldError("endTime", f"endTime {self.endTime} is not after startTime {self.startTime}")
        return self

    @property
    def start(self) -> datetime | None:
        return datetime.fromisoformat(self.startTime.replace("Z", "+00:00")) if self.startTime else None

    @property
    def end(self) -> datetime | None:
        return datetime.fromisoformat(self.endTime.replace("Z", "+00:00")) if self.endTime else None

    def schedule(self, created: datetime) -> Schedule:
        """The trigger's times; an interval counts from ``startTime`` (else ``created``)."""
        if self.trigger.cron is not None:
            return CronSchedule(
                cron.parse(self.trigger.cron.expression), ZoneInfo(self.trigger.cron.timezone)
            )
        assert self.trigger.interval is not None
        anchor = (self.start or created).astimezone(UTC).replace(microsecond=0)
        return IntervalSchedule(anchor, self.trigger.interval.seconds)


@dataclass(frozen=True)
class CronSchedule:
    expression: cron.CronExpression
    zone: tzinfo

    def next_after(self, t: datetime) -> datetime | None:
        return self.expression.next_after(t, self.zone)

    def previous_before(self, t: datetime) -> datetime | None:
        return self.expression.previous_before(t, self.zone)


@dataclass(frozen=True)
class IntervalSchedule:
    """``anchor + k × seconds`` for k ≥ 1 (the first trigger one interval after the start, as
    in KFP); a fixed grid, so a restart finds the same times."""

    anchor: datetime
    seconds: int

    def _micro(self, t: datetime) -> int:
        delta = t - self.anchor
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds

    def _at(self, k: int) -> datetime:
        return self.anchor + timedelta(seconds=k * self.seconds)

    def next_after(self, t: datetime) -> datetime | None:
        k = max(1, self._micro(t) // (self.seconds * 1_000_000) + 1)
        return self._at(k)

    def previous_before(self, t: datetime) -> datetime | None:
        step = self.seconds * 1_000_000
        k = -(-self._micro(t) // step) - 1  # ceil, then one back: strictly before
        return self._at(k) if k >= 1 else None


def due_times(
    schedule: Schedule, *, after: datetime, until: datetime, limit: int
) -> tuple[list[datetime], bool]:
    """The trigger times in ``(after, until]``, oldest first: the latest ``limit`` of them,
    and whether older ones were left out."""
    found: list[datetime] = []
    t = schedule.previous_before(until + timedelta(microseconds=1))
    while t is not None and t > after:
        if len(found) == limit:
            return found[::-1], True
        found.append(t)
        t = schedule.previous_before(t)
    return found[::-1], False


class RecurringRunStatus(Lenient):
    phase: RecurringRunPhase | None = None
    message: str | None = None
    #: The schedule time of the last run created.
    lastTriggerTime: str | None = None
    nextTriggerTime: str | None = None
    #: Runs of this schedule that exist (finished or not).
    runs: int = 0
    #: Unfinished runs of this schedule.
    active: int = 0
    #: When the schedule was last enabled again: the triggers missed while it was disabled
    #: never run.
    enabledTime: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class RecurringRun(ResourceModel):
    KIND: ClassVar[str] = "RecurringRun"
    spec: RecurringRunSpec
    status: RecurringRunStatus = Field(default_factory=RecurringRunStatus)


__all__ = [
    "MAX_CATCHUP",
    "CronSchedule",
    "IntervalSchedule",
    "RecurringRun",
    "RecurringRunPhase",
    "RecurringRunSpec",
    "RecurringRunStatus",
    "Schedule",
    "due_times",
]
