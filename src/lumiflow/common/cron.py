"""Cron expressions: parsing, and the next (or previous) time one fires.

Written here rather than taken from a library: the format is small, and the schedules of
recurring runs need both directions (the *latest* missed time, for ``noCatchup``) and
errors that name the wrong field, which the common libraries do not give.

Accepted, as Vixie cron and Kubeflow Pipelines accept them:

* five fields ``minute hour day-of-month month day-of-week``, or six with a leading
  ``second`` field (Kubeflow Pipelines' own cron format);
* in each field ``*``, a value, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, and
  comma-separated lists of those; month names ``JAN``-``DEC`` and day names ``SUN``-``SAT``
  (any case); ``7`` is Sunday as well as ``0``; ``?`` means ``*`` in the day fields;
* the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``) and ``@hourly``.

When both day fields are restricted a day matches if *either* matches (Vixie cron's rule);
when one of them starts with ``*`` only the other one counts.

Times are wall-clock times in the expression's timezone. A time that a daylight-saving
change skips fires when the clock has moved on (``02:30`` fires at ``03:30``); a time the
change repeats fires once.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

#: How far ahead (or back) a time is searched for; every valid expression fires more often.
SEARCH_YEARS = 10

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


class CronError(ValueError):
    """An expression that cannot be read; ``part`` names the cron field at fault
    (``minute``, ``hour``, ``day-of-month``, ``month``, ``day-of-week``, ``second``) or is
    ``expression`` for the whole."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"the {part} field {message}" if part != "expression" else message)
        self.part = part
        self.message = message


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 0, 7, _DAYS)


def _value(text: str, field: _Field, whole: str) -> int:
    if field.names is not None and text.upper() in field.names:
        return field.names[text.upper()]
    if not text.isdigit():
        allowed = f"{field.low}-{field.high}"
        if field.names is not None:
            allowed += " or " + ", ".join(field.names)
        raise CronError(field.name, f"{whole!r}: {text!r} is not a number ({allowed})")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(field.name, f"{whole!r}: {value} is out of range {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    if not text:
        raise CronError(field.name, "is empty")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(field.name, f"{text!r} has an empty list element")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(field.name, f"{item!r}: the step must be a whole number of at least 1")
            step = int(step_text)
        if base in ("*", "?"):
            if base == "?" and field not in (_DOM, _DOW):
                raise CronError(field.name, f"{item!r}: '?' is allowed in the day fields only")
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, field, item), _value(last, field, item)
            if low > high:
                raise CronError(field.name, f"{item!r}: the range goes backwards ({low} > {high})")
        else:
            low = _value(base, field, item)
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    if field is _DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class CronExpression:
    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    #: 0 = Sunday.
    weekdays: frozenset[int]
    #: A day field starting with ``*`` (or ``?``) does not restrict the day.
    days_star: bool
    weekdays_star: bool
    #: Six fields: one-second resolution; else one minute.
    with_seconds: bool

    # --- matching ------------------------------------------------------------------------

    def _day_matches(self, t: datetime) -> bool:
        in_month = t.day in self.days
        in_week = (t.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_month and in_week
        return in_month or in_week

    def matches(self, t: datetime) -> bool:
        """Whether the expression fires at ``t`` (read as a wall-clock time)."""
        return (
            t.month in self.months
            and self._day_matches(t)
            and t.hour in self.hours
            and t.minute in self.minutes
            and (t.second in self.seconds if self.with_seconds else t.second == 0)
            and t.microsecond == 0
        )

    @property
    def _step(self) -> timedelta:
        return timedelta(seconds=1) if self.with_seconds else timedelta(minutes=1)

    def _floor(self, t: datetime) -> datetime:
        t = t.replace(microsecond=0)
        return t if self.with_seconds else t.replace(second=0)

    def _next_naive(self, start: datetime) -> datetime | None:
        """The first matching wall-clock time after ``start`` (naive)."""
        t = self._floor(start) + self._step
        limit = start.year + SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = datetime(year, month, 1)
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif self.with_seconds and t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None

    def _previous_naive(self, start: datetime) -> datetime | None:
        """The last matching wall-clock time before ``start`` (naive)."""
        t = self._floor(start)
        if t >= start:
            t -= self._step
        limit = start.year - SEARCH_YEARS
        one = self._step
        while t.year >= limit:
            if t.month not in self.months:
                t = datetime(t.year, t.month, 1) - one
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) - one
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) - one
            elif t.minute not in self.minutes:
                t = t.replace(second=0) - one
            elif self.with_seconds and t.second not in self.seconds:
                t -= one
            else:
                return t
        return None

    # --- in a timezone -------------------------------------------------------------------

    @staticmethod
    def _instant(naive: datetime, zone: tzinfo) -> datetime:
        """The instant (UTC) a wall-clock time stands for: the first of a repeated time; for a
        skipped one, the instant the clock reads it an hour later (``fold=0``, PEP 495)."""
        return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)

    def next_after(self, t: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The first time after ``t`` (aware) the expression fires, in UTC; None when it
        does not fire within :data:`SEARCH_YEARS` years."""
        t = t.astimezone(UTC)
        wall = t.astimezone(zone).replace(tzinfo=None)
        # More than one try only around a daylight-saving change.
        for _ in range(_TRIES):
            found = self._next_naive(wall)
            if found is None:
                return None
            instant = self._instant(found, zone)
            if instant > t:
                return instant
            wall = found
        return None

    def previous_before(self, t: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The last time before ``t`` (aware) the expression fired, in UTC; None when it did
        not fire within :data:`SEARCH_YEARS` years."""
        t = t.astimezone(UTC)
        local = t.astimezone(zone)
        wall = local.replace(tzinfo=None)
        if local.fold:
            # In the second pass of a repeated hour every wall time of the hour fired already.
            earlier = local.replace(fold=0).utcoffset()
            now = local.utcoffset()
            if earlier is not None and now is not None:
                wall += earlier - now
        for _ in range(_TRIES):
            found = self._previous_naive(wall)
            if found is None:
                return None
            instant = self._instant(found, zone)
            if instant < t:
                return instant
            wall = found
        return None


#: Wall-clock candidates tried around a daylight-saving change (an hour of seconds).
_TRIES = 3700


def _can_fire(days: frozenset[int], months: frozenset[int]) -> bool:
    longest = {m: (29 if m == 2 else calendar.monthrange(2001, m)[1]) for m in months}
    return any(d <= longest[m] for d in days for m in months)


def parse(text: str) -> CronExpression:
    """Reads an expression; raises :class:`CronError` naming the wrong field."""
    if not isinstance(text, str) or not text.strip():
        raise CronError("expression", "the cron expression is empty")
    source = text.strip()
    expanded = source
    if source.startswith("@"):
        macro = MACROS.get(source.lower())
        if macro is None:
            raise CronError("expression", f"unknown macro {source!r} (known: {', '.join(sorted(MACROS))})")
        expanded = macro
    parts = expanded.split()
    if len(parts) == 5:
        parts = ["0", *parts]
        with_seconds = False
    elif len(parts) == 6:
        with_seconds = True
    else:
        raise CronError(
            "expression",
            f"{source!r} has {len(parts)} fields; write 5 (minute hour day-of-month month day-of-week), "
            "6 with a leading second field, or a macro such as @daily",
        )
    fields = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)
    sets = [_parse_field(p, f) for p, f in zip(parts, fields, strict=True)]
    seconds, minutes, hours, days, months, weekdays = sets
    days_star = parts[3].startswith(("*", "?"))
    weekdays_star = parts[5].startswith(("*", "?"))
    if weekdays_star and not _can_fire(days, months):
        raise CronError(
            "day-of-month", f"{parts[3]!r} never falls in month {parts[4]!r}: it would never fire"
        )
    return CronExpression(
        text=source,
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        days_star=days_star,
        weekdays_star=weekdays_star,
        with_seconds=with_seconds,
    )
