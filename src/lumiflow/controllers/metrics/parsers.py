"""Parsers for the metrics a job prints (Katib's ``StdOut`` and ``File`` collectors).

The parsers are pure and incremental: :meth:`feed` takes the next bytes of a log or file in
chunks of any size (a chunk may end inside a line, a ``\\r\\n`` or a UTF-8 character) and
returns the points of the lines it completed; :meth:`finish` parses a last line the stream
ended without a newline. :meth:`state` is a JSON-serialisable snapshot (the partial line,
the current step, the per-name counts); a parser built with ``state=`` continues exactly
where the snapshot was taken, so a collector that persists the state together with its byte
offset neither loses nor repeats a point across a server restart. The state format::

    {"version": 1, "format": "text" | "jsonlines", "offset": <bytes fed so far, in total>,
     "buffer": <base64 of the partial line>, "overflow": <bool: the line passed the cap>,
     "step": <int | null>, "counts": {<name>: <values of that name so far>}}

A job controls what it prints, so nothing it prints may cost the server unbounded memory or
time: a line is held to :data:`MAX_LINE_BYTES` (the rest up to the next newline is dropped,
and so is the last, possibly cut, token of a cut line), with ``names=None`` at most
:data:`MAX_METRIC_NAMES` distinct names are followed, and Katib's default pattern is matched
by a linear scanner rather than by ``re`` (whose backtracking on that pattern is quadratic:
a 64 KiB line of letters takes minutes). Patterns from an experiment's ``metricsFormat``
run under ``re``; Katib's are RE2 (Go) patterns, so they are compiled with ``re.ASCII``
(``\\w``, ``\\d``, ``\\s`` mean what they mean in RE2).

Steps (``step_key``, ``"step"`` by default): a line that carries ``step=N`` (an integer, or
a float with an integral value) sets the step of every metric on that line and on the lines
after it until the next ``step=``; before any, a metric's step is its 1-based count among
the values of its name. The step pair is a metric too when ``names`` lets it through.

Not thread-safe: one parser per stream, used by one thread at a time.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from lumiflow.common.errors import ValidationFailed

log = logging.getLogger(__name__)

#: Katib's default ``StdOut``/``File`` pattern (pkg/metricscollector/v1beta1/common).
KATIB_DEFAULT_PATTERN = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
#: A longer line is cut to this many bytes.
MAX_LINE_BYTES = 64 * 1024
#: With ``names=None``, values of further names are dropped (the counts live in the state).
MAX_METRIC_NAMES = 1024
STATE_VERSION = 1
METRICS_FORMAT_FIELD = "spec.metricsCollectorSpec.source.filter.metricsFormat"

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d{1,18}", re.ASCII)
_INT64_MAX = 2**63 - 1
# What the default pattern's ``[\w|-]`` and ``\s`` match under re.ASCII.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_|-")
_SPACE_CHARS = frozenset(" \t\n\r\f\v")
_SPACE_STR = " \t\n\r\f\v"
_DEFAULT_TAIL = re.compile(r"\s*=\s*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)", re.ASCII)

_PairFinder = Callable[[str], Iterator[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One observed value of a metric."""

    name: str
    value: float
    step: int
    #: Seconds since the epoch where the source says (TF events, a JSON line's "timestamp").
    timestamp: float | None


class InvalidMetricsFormat(ValidationFailed, ValueError):
    """A ``metricsFormat`` pattern that does not compile or lacks the name and value groups."""


def check_pattern(pattern: str) -> None:
    """Raises :class:`InvalidMetricsFormat` (a ``ValueError``) naming ``pattern`` unless it
    compiles and has at least two groups (1: the metric's name, 2: its value)."""
    _compile(pattern)


def _compile(pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise InvalidMetricsFormat(f"metricsFormat {pattern!r} is not a string", field=METRICS_FORMAT_FIELD)
    try:
        compiled = re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise InvalidMetricsFormat(
            f"metricsFormat {pattern!r} is not a valid regular expression: {exc}", field=METRICS_FORMAT_FIELD
        ) from None
    if compiled.groups < 2:
        raise InvalidMetricsFormat(
            f"metricsFormat {pattern!r} has {compiled.groups} group(s); it needs at least 2 "
            "(group 1: the metric's name, group 2: its value)",
            field=METRICS_FORMAT_FIELD,
        )
    return compiled


def parse_number(raw: str) -> float | None:
    """A finite float from a decimal literal (``.98``, ``-2``, ``1.5e-3``), else None (``nan``,
    ``inf``, ``1e999``, ``0x10``, ``1_0`` and the empty string are not values)."""
    raw = raw.strip()
    if not _NUMBER.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _parse_step(raw: object) -> int | None:
    """An int64 step from an integer or an integral float (number or numeric string)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if -_INT64_MAX - 1 <= raw <= _INT64_MAX else None
    if isinstance(raw, float):
        value: float | None = raw if math.isfinite(raw) else None
    elif isinstance(raw, str):
        if _INTEGER.fullmatch(raw.strip()):
            return int(raw.strip())
        value = parse_number(raw)
    else:
        return None
    if value is None or not value.is_integer() or abs(value) > _INT64_MAX:
        return None
    return int(value)


def _default_pairs(text: str) -> Iterator[tuple[str, str]]:
    """The matches of :data:`KATIB_DEFAULT_PATTERN` (under re.ASCII), in linear time.

    Every match holds exactly one ``=``, and its name is the run of name characters that
    ends (before optional spaces) at that ``=``; a match cannot start inside a run but at
    its start (or where the previous match ended), so the leftmost match at or after
    ``pos`` belongs to the first ``=`` after ``pos`` that has such a run before it.
    """
    pos = 0
    while (eq := text.find("=", pos)) >= 0:
        i = eq
        while i > pos and text[i - 1] in _SPACE_CHARS:
            i -= 1
        name_end = i
        while i > pos and text[i - 1] in _NAME_CHARS:
            i -= 1
        if i == name_end:
            pos = eq + 1
            continue
        tail = _DEFAULT_TAIL.match(text, name_end)  # spaces, the "=" at eq, an all-optional value
        if tail is None:  # cannot happen; stop rather than loop
            return
        yield text[i:name_end], tail.group(1)
        pos = tail.end()


def _regex_pairs(pattern: re.Pattern[str]) -> _PairFinder:
    def pairs(text: str) -> Iterator[tuple[str, str]]:
        for match in pattern.finditer(text):
            name, value = match.group(1), match.group(2)
            if name is not None and value is not None:
                yield name, value

    return pairs


class _LineMetricsParser:
    """Line splitting, the line cap, steps, counts and state; subclasses parse a line."""

    _format: ClassVar[str]

    def __init__(
        self, *, names: Collection[str] | None, step_key: str, state: Mapping[str, Any] | None
    ) -> None:
        self._names = frozenset(names) if names is not None else None
        self._step_key = step_key
        self._buffer = bytearray()
        self._overflow = False
        self._step: int | None = None
        self._counts: dict[str, int] = {}
        self._offset = 0
        self._warned: set[str] = set()
        if state is not None:
            self._restore(state)

    # --- the stream -------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[MetricPoint]:
        """The points of the lines ``data`` completes (with what earlier calls left)."""
        if not isinstance(data, bytes):
            data = bytes(data)
        points: list[MetricPoint] = []
        start, end = 0, len(data)
        while start < end:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._append(data, start, end)
                break
            self._append(data, start, newline)
            points += self._end_line()
            start = newline + 1
        self._offset += end
        return points

    def finish(self) -> list[MetricPoint]:
        """The stream ended: the points of a last line without a newline, if any."""
        if not self._buffer and not self._overflow:
            return []
        return self._end_line()

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot; ``state=`` of a new parser continues from it."""
        return {
            "version": STATE_VERSION,
            "format": self._format,
            "offset": self._offset,
            "buffer": base64.b64encode(self._buffer).decode("ascii"),
            "overflow": self._overflow,
            "step": self._step,
            "counts": dict(self._counts),
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        def bad(why: str) -> ValueError:
            return ValueError(f"not a state of a {self._format} metrics parser: {why}")

        if state.get("version") != STATE_VERSION:
            raise bad(f"version {state.get('version')!r}, expected {STATE_VERSION}")
        if state.get("format") != self._format:
            raise bad(f"format {state.get('format')!r}")
        offset, step, counts = state.get("offset"), state.get("step"), state.get("counts")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise bad(f"offset {offset!r}")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
            raise bad(f"step {step!r}")
        if not isinstance(counts, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in counts.items()
        ):
            raise bad("counts")
        try:
            buffer = base64.b64decode(str(state.get("buffer", "")), validate=True)
        except (binascii.Error, ValueError):
            raise bad("buffer is not base64") from None
        if len(buffer) > MAX_LINE_BYTES + 1:
            raise bad("buffer longer than a line may be")
        self._buffer = bytearray(buffer)
        self._overflow = bool(state.get("overflow", False))
        self._step = step
        self._counts = dict(counts)
        self._offset = offset

    def _append(self, data: bytes, start: int, end: int) -> None:
        # One byte over the cap is kept so that a line of exactly MAX_LINE_BYTES before its
        # "\r\n" is told from a longer one whichever way the chunks fall.
        room = MAX_LINE_BYTES + 1 - len(self._buffer)
        if end - start > room:
            self._buffer += data[start : start + room]
            self._overflow = True
        else:
            self._buffer += data[start:end]

    def _end_line(self) -> list[MetricPoint]:
        line, overflow = bytes(self._buffer), self._overflow
        self._buffer.clear()
        self._overflow = False
        if not overflow and line.endswith(b"\r"):
            line = line[:-1]
        truncated = overflow or len(line) > MAX_LINE_BYTES
        if truncated:
            line = line[:MAX_LINE_BYTES]
            self._warn_once("cut", "a line longer than %d bytes was cut", MAX_LINE_BYTES)
        return self._parse_line(line.decode("utf-8", errors="replace"), truncated=truncated)

    # --- points -----------------------------------------------------------------------------

    def _parse_line(self, text: str, *, truncated: bool) -> list[MetricPoint]:
        raise NotImplementedError

    def _wanted(self, name: str) -> bool:
        return bool(name) and (self._names is None or name in self._names)

    def _set_step(self, step: int | None) -> None:
        if step is not None:
            self._step = step

    def _point(self, name: str, value: float, timestamp: float | None) -> MetricPoint | None:
        count = self._counts.get(name)
        if count is None:
            if self._names is None and len(self._counts) >= MAX_METRIC_NAMES:
                self._warn_once(
                    "names",
                    "more than %d metric names; values of further names are dropped",
                    MAX_METRIC_NAMES,
                )
                return None
            count = 0
        self._counts[name] = count = count + 1
        return MetricPoint(name, value, self._step if self._step is not None else count, timestamp)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


class TextMetricsParser(_LineMetricsParser):
    """Katib's ``StdOut`` / ``File`` (TEXT) format: ``name=value`` pairs in log lines.

    ``patterns``: the experiment's ``metricsFormat`` (group 1 the name, group 2 the value;
    each is checked by :func:`check_pattern`), Katib's default when None or empty. A line
    may hold several pairs; values that are not finite decimal numbers are skipped;
    ``names`` keeps only those metrics (None: all).
    """

    _format = "text"

    def __init__(
        self,
        *,
        patterns: Sequence[str] | None = None,
        names: Collection[str] | None = None,
        step_key: str = "step",
        state: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        self._finders: list[_PairFinder] = [
            _default_pairs if p == KATIB_DEFAULT_PATTERN else _regex_pairs(_compile(p))
            for p in (patterns or [KATIB_DEFAULT_PATTERN])
        ]
        super().__init__(names=names, step_key=step_key, state=state)

    def _parse_line(self, text: str, *, truncated: bool) -> list[MetricPoint]:
        if truncated:
            # The last token may have been cut inside its value ("loss=0.12|345").
            cut = max(text.rfind(c) for c in _SPACE_STR)
            text = text[:cut] if cut >= 0 else ""
        pairs = [(name.strip(), raw) for find in self._finders for name, raw in find(text)]
        self._set_step(
            next((s for n, r in pairs if n == self._step_key and (s := _parse_step(r)) is not None), None)
        )
        points: list[MetricPoint] = []
        for name, raw in pairs:
            if not self._wanted(name):
                continue
            value = parse_number(raw)
            if value is not None and (point := self._point(name, value, None)) is not None:
                points.append(point)
        return points


class JsonLinesMetricsParser(_LineMetricsParser):
    """Katib's ``File`` collector with format JSON: one JSON object per line.

    Every key whose value is a number or a numeric string (Katib's examples write
    ``"loss": "0.22"``) is a metric, except ``timestamp`` (seconds since the epoch, or an
    RFC 3339 string: the points' timestamp) and ``step_key`` (the step, as for text). Lines
    that are not JSON objects are skipped, and so is a line cut at :data:`MAX_LINE_BYTES`.
    """

    _format = "jsonlines"

    def __init__(
        self,
        *,
        names: Collection[str] | None = None,
        step_key: str = "step",
        state: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(names=names, step_key=step_key, state=state)

    def _parse_line(self, text: str, *, truncated: bool) -> list[MetricPoint]:
        if truncated or not text.strip():
            return []
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return []
        if not isinstance(obj, dict):
            return []
        timestamp = _parse_timestamp(obj.get("timestamp"))
        self._set_step(_parse_step(obj.get(self._step_key)))
        points: list[MetricPoint] = []
        for name, raw in obj.items():
            if name == "timestamp" or not self._wanted(name):
                continue
            value = _json_number(raw)
            if value is not None and (point := self._point(name, value, timestamp)) is not None:
                points.append(point)
        return points


def _json_number(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:
            return None
        return value if math.isfinite(value) else None
    if isinstance(raw, str):
        return parse_number(raw)
    return None


def _parse_timestamp(raw: object) -> float | None:
    """Seconds since the epoch from a number, a numeric string or an RFC 3339 string (a
    time without an offset is taken as UTC)."""
    value = _json_number(raw)
    if value is not None or not isinstance(raw, str):
        return value
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
