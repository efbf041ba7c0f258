"""Charts for the dashboard, rendered on the server as inline SVG: a training job's metrics
over steps, a tuning experiment's objective by trial, and its trials' parameters as parallel
coordinates.

Each function is pure and deterministic, takes plain data and returns one ``<svg>`` element as
``Markup``, ready for a Jinja2 template without ``|safe``. User text (series, trial, parameter
and category names, titles) is escaped on the way in, so a name can never become markup.
The SVG carries ``class``/``data-*`` hooks (``series``, ``trial``, ``best-so-far``, ``goal``,
``trial-line``, ``best``) that ``dashboard.css`` styles and tests and scripts can find.
Long metric histories are thinned to a fixed number of drawn points, keeping each bucket's
extremes, so a chart of 10,000 steps costs about as much to send and draw as one of 500.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markupsafe import Markup

from lumiflow.server.dashboard.chart_svg import (
    CHAR_WIDTH,
    PALETTE,
    as_float,
    check_size,
    empty,
    esc,
    fmt,
    frame,
    legend,
    line_swatch,
    nice_ticks,
    num,
    scale,
    svg,
)

Direction = Literal["minimize", "maximize"]
#: Most points drawn per series; beyond it each bucket keeps its minimum and maximum.
MAX_DRAWN_POINTS = 500
#: Series longer than this get no per-point circles (and so no per-point tooltips).
MAX_MARKED_POINTS = 100
#: Sequential scale for parallel coordinates, worse (light) to better (saturated): ColorBrewer Blues.
_SEQUENTIAL = ((0xC6, 0xDB, 0xEF), (0x42, 0x92, 0xC6), (0x08, 0x30, 0x6B))


def _check_direction(direction: str) -> None:
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")


def thin(points: Sequence[tuple[float, float]], limit: int = MAX_DRAWN_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` of ``points`` (sorted by x): the first, the last, and the lowest and
    highest y of each of ``(limit - 2) // 2`` buckets between them, in x order."""
    n = len(points)
    if n <= limit:
        return list(points)
    size = -(-(n - 2) // ((limit - 2) // 2))
    kept = [points[0]]
    for start in range(1, n - 1, size):
        bucket = range(start, min(start + size, n - 1))
        low = min(bucket, key=lambda i: points[i][1])
        high = max(bucket, key=lambda i: points[i][1])
        kept += [points[i] for i in sorted({low, high})]
    kept.append(points[-1])
    return kept


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str = "step",
    y_label: str = "value",
    width: int = 640,
    height: int = 280,
) -> Markup:
    """One line per series (name -> (x, y) points, e.g. a metric's (step, value)), in the
    mapping's order and colours; non-finite points are left out, a series without any is too."""
    check_size(width, height)
    cleaned: list[tuple[int, str, list[tuple[float, float]]]] = []
    for index, (name, raw) in enumerate(series.items()):
        pairs = ((as_float(x), as_float(y)) for x, y in raw)
        good = sorted(((x, y) for x, y in pairs if x is not None and y is not None), key=lambda p: p[0])
        if good:
            cleaned.append((index, str(name), good))
    if not cleaned:
        return empty("line-chart", title, width, height, "no metrics yet")

    def style(index: int) -> tuple[str, str]:
        colour, cycle = PALETTE[index % len(PALETTE)], index // len(PALETTE)
        return colour, ("", "6 3", "2 3", "8 3 2 3")[cycle % 4]

    entries = [(name, line_swatch(*style(index))) for index, name, _ in cleaned]
    legend_markup, legend_bottom = legend(entries, x0=62, y0=36, right=width - 24)
    xs = [x for _, _, pts in cleaned for x, _ in pts]
    ys = [y for _, _, pts in cleaned for _, y in pts]
    plot = frame(
        width=width,
        height=height,
        top=legend_bottom + 14,
        xt=nice_ticks(min(xs), max(xs)),
        yt=nice_ticks(min(ys), max(ys)),
        x_label=x_label,
        y_label=y_label,
    )
    body = [f'<text class="chart-title" x="62" y="18">{esc(title, 80)}</text>', legend_markup, plot.markup]
    for index, name, pts in cleaned:
        colour, dash = style(index)
        coords = " ".join(f"{fmt(plot.x(x))},{fmt(plot.y(y))}" for x, y in thin(pts))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(
            f'<polyline class="series" data-name="{esc(name)}" points="{coords}" fill="none" '
            f'stroke="{colour}" stroke-width="2"{dashed}/>'
        )
        if len(pts) <= MAX_MARKED_POINTS:
            body.append(f'<g class="points" data-name="{esc(name)}" fill="{colour}">')
            body += [
                f'<circle cx="{fmt(plot.x(x))}" cy="{fmt(plot.y(y))}" r="2.5"><title>{esc(name)} '
                f"{esc(x_label)}={num(x)} {esc(y_label)}={num(y)}</title></circle>"
                for x, y in pts
            ]
            body.append("</g>")
    return svg("line-chart", title, width, height, body)


def objective_chart(
    points: Sequence[tuple[int, float | None, str]],
    *,
    metric: str,
    direction: Direction,
    goal: float | None = None,
    width: int = 640,
    height: int = 280,
) -> Markup:
    """Each trial's objective value (points are (trial number, value or None, trial name)),
    the best value so far as a step line, the goal as a dashed line, the best trial marked.
    Ties for best go to the earliest trial."""
    check_size(width, height)
    _check_direction(direction)
    label = f"{metric} by trial"
    trials = sorted(
        ((int(n), v, str(name)) for n, value, name in points if (v := as_float(value)) is not None),
        key=lambda t: t[0],
    )
    if not trials:
        return empty("objective-chart", label, width, height, f"no trial has reported {metric} yet")

    def better(a: float, b: float) -> bool:
        return a < b if direction == "minimize" else a > b

    best = trials[0]
    path: list[tuple[float, float]] = []
    for trial in trials:
        if path:
            path.append((trial[0], best[1]))
        if better(trial[1], best[1]):
            best = trial
        path.append((trial[0], best[1]))
    goal_value = as_float(goal)
    ys = [v for _, v, _ in trials] + ([goal_value] if goal_value is not None else [])
    entries = [
        ("trial", '<circle class="swatch-trial" cx="7" cy="-4" r="3.5"/>'),
        ("best so far", line_swatch("#D55E00", css="swatch-best-so-far")),
    ]
    if goal_value is not None:
        entries.append(("goal", line_swatch("#009E73", "5 4", css="swatch-goal")))
    legend_markup, legend_bottom = legend(entries, x0=62, y0=36, right=width - 24)
    plot = frame(
        width=width,
        height=height,
        top=legend_bottom + 14,
        xt=nice_ticks(trials[0][0], trials[-1][0], integer=True),
        yt=nice_ticks(min(ys), max(ys)),
        x_label="trial",
        y_label=metric,
    )
    body = [
        f'<text class="chart-title" x="62" y="18">{esc(metric, 60)} ({direction})</text>',
        legend_markup,
        plot.markup,
    ]
    if goal_value is not None:
        gy = fmt(plot.y(goal_value))
        body.append(
            f'<line class="goal" x1="{fmt(plot.left)}" x2="{fmt(plot.right)}" y1="{gy}" y2="{gy}" '
            f'stroke-dasharray="5 4"><title>goal {num(goal_value)}</title></line>'
        )
    coords = " ".join(f"{fmt(plot.x(x))},{fmt(plot.y(y))}" for x, y in path)
    body.append(f'<polyline class="best-so-far" points="{coords}" fill="none"/>')
    for trial in [t for t in trials if t is not best] + [best]:
        n, value, name = trial
        klass, radius = ("trial best", 5) if trial is best else ("trial", 3.5)
        body.append(
            f'<circle class="{klass}" data-trial="{esc(name)}" cx="{fmt(plot.x(n))}" '
            f'cy="{fmt(plot.y(value))}" r="{radius}"><title>{esc(name)} (trial {n}): '
            f"{esc(metric)}={num(value)}</title></circle>"
        )
    return svg("objective-chart", label, width, height, body)


@dataclass(frozen=True)
class Axis:
    """One parameter axis of :func:`parallel_coordinates`. A categorical axis shows ``values``
    in that order from the bottom up, then any other value the rows hold; a ``log`` axis is
    numeric on a log10 scale and skips rows with values <= 0."""

    name: str
    kind: Literal["numeric", "categorical"]
    values: Sequence[str] = ()
    log: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"Axis.kind must be 'numeric' or 'categorical', got {self.kind!r}")
        if self.log and self.kind != "numeric":
            raise ValueError(f"Axis {self.name!r}: only a numeric axis can be log")


def _colour(goodness: float) -> str:
    """The sequential scale at ``goodness`` in 0 (worst) .. 1 (best)."""
    t = min(max(goodness, 0.0), 1.0) * (len(_SEQUENTIAL) - 1)
    i = min(int(t), len(_SEQUENTIAL) - 2)
    a, b = _SEQUENTIAL[i], _SEQUENTIAL[i + 1]
    return "#" + "".join(f"{round(x + (y - x) * (t - i)):02x}" for x, y in zip(a, b, strict=True))


def _axis_positions(
    axis: Axis, column: Sequence[float | str], top: float, bottom: float
) -> tuple[Callable[[float | str], float], list[tuple[float, str]]]:
    """How one axis places a value (SVG y), and its tick labels as (y, text)."""
    if axis.kind == "categorical":
        names = list(dict.fromkeys([*axis.values, *(str(c) for c in column)]))
        position = scale(0, len(names) - 1, bottom, top)
        return (lambda c: position(names.index(str(c)))), [
            (position(j), name) for j, name in enumerate(names)
        ]
    numbers = [float(c) for c in column]
    lo, hi = min(numbers), max(numbers)
    to_scale: Callable[[float], float] = math.log10 if axis.log else float
    mapped = scale(to_scale(lo), to_scale(hi), bottom, top)
    ticks = (
        [(bottom + 14, f"{lo:.4g}"), (top - 6, f"{hi:.4g}")]
        if hi > lo
        else [((top + bottom) / 2 + 4, f"{lo:.4g}")]
    )
    return (lambda c: mapped(to_scale(float(c)))), ticks


def parallel_coordinates(
    axes: Sequence[Axis],
    rows: Sequence[Mapping[str, Any]],
    *,
    objective: str,
    direction: Direction,
    width: int = 720,
    height: int = 300,
) -> Markup:
    """One vertical axis per parameter plus the objective's, one line per trial (a row maps
    parameter names, ``objective`` and ``"name"`` to values), coloured by objective from light
    (worse) to saturated (better); the best trial is drawn last and thicker, ties going to the
    earliest row. Rows missing a parameter or with a non-finite objective are left out."""
    check_size(width, height)
    _check_direction(direction)
    label = f"trial parameters and {objective}"
    valid: list[tuple[str, list[float | str], float]] = []
    for index, row in enumerate(rows):
        value = as_float(row.get(objective))
        coords: list[float | str] = []
        for axis in axes:
            raw = row.get(axis.name)
            if axis.kind == "categorical" and raw is not None:
                coords.append(str(raw))
            elif axis.kind == "numeric" and (x := as_float(raw)) is not None and (x > 0 or not axis.log):
                coords.append(x)
        if value is not None and len(coords) == len(axes):
            valid.append((str(row.get("name", f"#{index}")), [*coords, value], value))
    if not valid:
        return empty("parallel-coordinates", label, width, height, f"no trial has reported {objective} yet")

    left, right, top, bottom = 56.0, width - 56.0, 62.0, height - 24.0
    step = (right - left) / len(axes) if axes else 0.0
    chars = max(int(step / CHAR_WIDTH), 4) if axes else 40
    places: list[Callable[[float | str], float]] = []
    parts = ['<g class="pc-axes">']
    for i, axis in enumerate([*axes, Axis(objective, "numeric")]):
        x = left + i * step
        place, ticks = _axis_positions(axis, [coords[i] for _, coords, _ in valid], top, bottom)
        places.append(place)
        extra = " objective" if i == len(axes) else ""
        parts.append(
            f'<g class="pc-axis{extra}" data-axis="{esc(axis.name)}"><line x1="{fmt(x)}" x2="{fmt(x)}" '
            f'y1="{fmt(top)}" y2="{fmt(bottom)}"/><text class="axis-label" x="{fmt(x)}" y="{fmt(top - 22)}" '
            f'text-anchor="middle">{esc(axis.name, chars)}</text>'
        )
        nudge = 4 if axis.kind == "categorical" else 0
        side = f'x="{fmt(x - 4)}" text-anchor="end"' if extra else f'x="{fmt(x + 4)}"'  # inside the chart
        parts += [f'<text class="tick" {side} y="{fmt(y + nudge)}">{esc(t, 16)}</text>' for y, t in ticks]
        parts.append("</g>")
    parts.append("</g>")

    values = [v for _, _, v in valid]
    worst, best_value = (max(values), min(values)) if direction == "minimize" else (min(values), max(values))
    best = next(i for i, (_, _, v) in enumerate(valid) if v == best_value)
    goodness = scale(worst, best_value, 0.0, 1.0) if worst != best_value else (lambda _v: 1.0)
    lines = ['<g class="trial-lines" fill="none">']
    for i in sorted(range(len(valid)), key=lambda i: (goodness(valid[i][2]), i == best)):
        name, coords, value = valid[i]
        path = " ".join(f"{fmt(left + j * step)},{fmt(places[j](c))}" for j, c in enumerate(coords))
        tip = ", ".join(
            f"{esc(a.name)}={esc(c) if isinstance(c, str) else num(c)}"
            for a, c in zip(axes, coords, strict=False)
        )
        klass, stroke = ("trial-line best", "3.5") if i == best else ("trial-line", "1.5")
        lines.append(
            f'<polyline class="{klass}" data-trial="{esc(name)}" points="{path}" '
            f'stroke="{_colour(goodness(value))}" stroke-width="{stroke}"><title>{esc(name)}: '
            f"{tip}{', ' if tip else ''}{esc(objective)}={num(value)}</title></polyline>"
        )
    lines.append("</g>")

    start = left + CHAR_WIDTH * (min(len(objective), 24) + 2)
    swatches = "".join(
        f'<rect x="{fmt(start + 44 + k * 14)}" y="8" width="14" height="10" fill="{_colour(k / 5)}"/>'
        for k in range(6)
    )
    key = (
        f'<g class="legend scale"><text x="{fmt(left)}" y="17">{esc(objective, 24)}</text>'
        f'<text x="{fmt(start)}" y="17">worse</text>{swatches}<text x="{fmt(start + 44 + 6 * 14 + 6)}" y="17">'
        f"better ({'lower' if direction == 'minimize' else 'higher'})</text></g>"
    )
    return svg("parallel-coordinates", label, width, height, [key, *lines, *parts])  # axes over lines
