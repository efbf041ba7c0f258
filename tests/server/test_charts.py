"""The dashboard's server-rendered SVG charts: geometry, thinning, edge cases and escaping.

Each chart is parsed as XML and checked by its coordinates (SVG's y grows downward)."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from lumiflow.server.dashboard.charts import (
    MAX_DRAWN_POINTS,
    Axis,
    line_chart,
    objective_chart,
    parallel_coordinates,
    thin,
)

pytestmark = pytest.mark.timeout(10)

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = ["<script>alert(1)</script>", '"onload="x', "a&b'c"]


def parse(chart: Markup) -> ET.Element:
    assert isinstance(chart, Markup)
    root = ET.fromstring(str(chart))
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.get("class", "").split()[0] == "chart"
    return root


def by_class(root: ET.Element, tag: str, *classes: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if set(classes) <= set(e.get("class", "").split())]


def coords(polyline: ET.Element) -> list[tuple[float, float]]:
    pairs = (p.split(",") for p in polyline.get("points", "").split())
    return [(float(x), float(y)) for x, y in pairs]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{NS}text")]


def assert_no_markup_from(root: ET.Element, raw: str) -> None:
    for element in root.iter():
        assert element.tag.startswith(NS), element.tag  # no <script> or other foreign element
        assert not any(name.lower().startswith("on") for name in element.attrib), element.attrib
    assert "<script" not in raw


# line_chart


def test_line_chart_one_series_per_name_with_points_in_x_order() -> None:
    chart = line_chart(
        {"loss": [(3, 0.5), (1, 0.9), (2, 0.7), (0, 1.2)], "accuracy": [(0, 0.1), (2, 0.6), (1, 0.4)]},
        title="mnist",
    )
    root = parse(chart)
    series = by_class(root, "polyline", "series")
    assert [s.get("data-name") for s in series] == ["loss", "accuracy"]
    assert len({s.get("stroke") for s in series}) == 2
    loss = coords(series[0])
    assert [x for x, _ in loss] == sorted(x for x, _ in loss) and len(loss) == 4
    # loss falls as x grows: SVG y grows
    assert [y for _, y in loss] == sorted(y for _, y in loss)
    assert {"loss", "accuracy", "mnist", "step", "value"} <= set(texts(root))
    tips = ["".join(c.itertext()) for c in root.iter(f"{NS}circle")]
    assert "loss step=0 value=1.2" in tips and len(tips) == 7


def test_line_chart_ticks_are_round_steps() -> None:
    root = parse(line_chart({"loss": [(0, 0.013), (170, 0.93)]}, title="t"))
    for axis in ("x", "y"):
        (group,) = [g for g in root.iter(f"{NS}g") if g.get("class") == f"ticks {axis}"]
        values = [float("".join(t.itertext())) for t in group]
        steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
        assert len(values) >= 3 and len(steps) == 1
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 5)
        assert values[0] <= (0 if axis == "x" else 0.013) and values[-1] >= (170 if axis == "x" else 0.93)


def test_line_chart_thins_long_series_keeping_ends_and_extremes() -> None:
    n = 10_000
    values = [math.sin(i / 300) for i in range(n)]
    values[1234], values[5678] = 10.0, -10.0
    root = parse(line_chart({"loss": list(enumerate(values))}, title="long"))
    (series,) = by_class(root, "polyline", "series")
    drawn = coords(series)
    assert 100 < len(drawn) <= MAX_DRAWN_POINTS
    xs = [x for x, _ in drawn]
    assert xs == sorted(xs)
    (x0, _), (x_last, _) = drawn[0], drawn[-1]
    x_of = lambda i: x0 + i * (x_last - x0) / (n - 1)  # noqa: E731
    top = min(drawn, key=lambda p: p[1])  # the highest value is the smallest y
    bottom = max(drawn, key=lambda p: p[1])
    assert top[0] == pytest.approx(x_of(1234), abs=0.02)
    assert bottom[0] == pytest.approx(x_of(5678), abs=0.02)
    assert not list(root.iter(f"{NS}circle"))  # too many points for markers
    assert len(str(line_chart({"a": list(enumerate(values))}, title="x"))) < 20_000


def test_thin_keeps_first_last_min_max() -> None:
    points = [(float(i), float((i * 7919) % 1000)) for i in range(3001)]
    kept = thin(points, 100)
    assert len(kept) <= 100 and kept[0] == points[0] and kept[-1] == points[-1]
    assert min(kept, key=lambda p: p[1])[1] == 0 and max(kept, key=lambda p: p[1])[1] == 999
    assert kept == sorted(kept)
    assert thin(points[:50], 100) == points[:50]


@pytest.mark.parametrize("series", [{}, {"loss": []}, {"loss": [(0, math.nan)], "acc": [(math.inf, 1.0)]}])
def test_line_chart_without_data_says_so(series: dict[str, list[tuple[float, float]]]) -> None:
    root = parse(line_chart(series, title="nothing"))
    assert "no metrics yet" in texts(root)
    assert not list(root.iter(f"{NS}polyline"))


def test_line_chart_skips_non_finite_and_draws_a_single_point() -> None:
    chart = line_chart(
        {
            "loss": [(0, 1.0), (1, math.nan), (2, math.inf), (3, 2.0), (math.nan, 5.0), (4, -math.inf)],
            "once": [(7, 0.5)],
        },
        title="t",
    )
    root = parse(chart)
    loss, once = by_class(root, "polyline", "series")
    assert len(coords(loss)) == 2 and len(coords(once)) == 1
    assert "nan" not in str(chart).lower() and "inf" not in str(chart).lower()
    groups = [g for g in root.iter(f"{NS}g") if g.get("class") == "points"]
    assert [len(list(g.iter(f"{NS}circle"))) for g in groups] == [2, 1]


def test_line_chart_legend_stays_small_with_many_series() -> None:
    root = parse(line_chart({f"metric_{i:02d}": [(0, i), (1, i + 1)] for i in range(40)}, title="many"))
    assert len(by_class(root, "polyline", "series")) == 40
    assert any(t.startswith("+") and t.endswith(" more") for t in texts(root))
    (axis,) = by_class(root, "path", "axis")
    assert axis.get("d", "").startswith("M62,") and float(axis.get("d", "").split(",")[1].split("V")[0]) < 100


def test_charts_are_deterministic() -> None:
    series = {"loss": [(i, 1 / (i + 1)) for i in range(700)]}
    assert line_chart(series, title="a") == line_chart(series, title="a")
    trials = [(i, float(i % 5), f"t{i}") for i in range(9)]
    assert objective_chart(trials, metric="m", direction="minimize") == objective_chart(
        trials, metric="m", direction="minimize"
    )


# objective_chart

TRIALS = [(0, 0.5, "t0"), (1, 0.7, "t1"), (2, None, "t2"), (3, 0.3, "t3"), (4, 0.4, "t4"), (5, 0.9, "t5")]


@pytest.mark.parametrize(("direction", "best"), [("minimize", "t3"), ("maximize", "t5")])
def test_objective_best_so_far_never_gets_worse(direction: str, best: str) -> None:
    root = parse(objective_chart(TRIALS, metric="loss", direction=direction))  # type: ignore[arg-type]
    (line,) = by_class(root, "polyline", "best-so-far")
    path = coords(line)
    xs, ys = [x for x, _ in path], [y for _, y in path]
    assert xs == sorted(xs)
    # minimize: values never rise, so SVG y never falls; maximize the other way round
    assert ys == (sorted(ys) if direction == "minimize" else sorted(ys, reverse=True))
    assert ys[0] != ys[-1]
    circles = by_class(root, "circle", "trial")
    assert len(circles) == 5  # t2 has no value yet
    marked = by_class(root, "circle", "trial", "best")
    assert [c.get("data-trial") for c in marked] == [best]
    assert circles[-1] is marked[0]
    assert f"{best} (trial" in "".join(marked[0].itertext())
    best_y = float(marked[0].get("cy", "nan"))
    assert ys[-1] == pytest.approx(best_y, abs=0.01)
    assert {"trial", "loss"} <= set(texts(root))


def test_objective_goal_line_only_with_a_goal() -> None:
    without = parse(objective_chart(TRIALS, metric="loss", direction="minimize"))
    assert not by_class(without, "line", "goal")
    root = parse(objective_chart(TRIALS, metric="loss", direction="minimize", goal=0.1))
    (goal,) = by_class(root, "line", "goal")
    assert goal.get("y1") == goal.get("y2") and goal.get("stroke-dasharray")
    # the goal is below every trial: a larger SVG y than any circle
    assert float(goal.get("y1", "0")) > max(
        float(c.get("cy", "0")) for c in by_class(root, "circle", "trial")
    )


def test_objective_without_values_says_so() -> None:
    root = parse(objective_chart([(0, None, "a"), (1, math.nan, "b")], metric="acc", direction="maximize"))
    assert any("acc" in t and "yet" in t for t in texts(root))
    assert not by_class(root, "circle", "trial")


def test_objective_ties_go_to_the_earliest_trial() -> None:
    root = parse(objective_chart([(2, 0.1, "late"), (1, 0.1, "early")], metric="m", direction="minimize"))
    assert [c.get("data-trial") for c in by_class(root, "circle", "best")] == ["early"]


# parallel_coordinates

AXES = [
    Axis("lr", "numeric", log=True),
    Axis("layers", "numeric"),
    Axis("optimizer", "categorical", ("sgd", "adam")),
]
ROWS = [
    {"name": "a", "lr": 1e-3, "layers": 2, "optimizer": "sgd", "loss": 0.9},
    {"name": "b", "lr": 1e-2, "layers": 4, "optimizer": "adam", "loss": 0.2},
    {"name": "c", "lr": 1e-1, "layers": 3, "optimizer": "sgd", "loss": 0.5},
    {"name": "no-layers", "lr": 1e-2, "optimizer": "sgd", "loss": 0.1},
    {"name": "nan", "lr": 1e-2, "layers": 2, "optimizer": "sgd", "loss": math.nan},
    {"name": "no-objective", "lr": 1e-2, "layers": 2, "optimizer": "adam"},
    {"name": "zero-lr", "lr": 0.0, "layers": 2, "optimizer": "adam", "loss": 0.0},
]


@pytest.mark.parametrize(("direction", "best"), [("minimize", "b"), ("maximize", "a")])
def test_parallel_coordinates_one_line_per_valid_row_best_last(direction: str, best: str) -> None:
    root = parse(parallel_coordinates(AXES, ROWS, objective="loss", direction=direction))  # type: ignore[arg-type]
    lines = by_class(root, "polyline", "trial-line")
    assert sorted(line.get("data-trial", "") for line in lines) == ["a", "b", "c"]
    assert lines[-1].get("data-trial") == best and lines[-1].get("class") == "trial-line best"
    assert len(by_class(root, "polyline", "best")) == 1
    assert float(lines[-1].get("stroke-width", "0")) > float(lines[0].get("stroke-width", "0"))
    assert all(len(coords(line)) == 4 for line in lines)
    assert {"lr", "layers", "optimizer", "loss"} <= set(texts(root))
    tip = "".join(lines[-1].itertext())
    assert tip.startswith(f"{best}: lr=") and "optimizer=" in tip and "loss=" in tip


def test_parallel_coordinates_log_axis_spaces_decades_equally() -> None:
    root = parse(parallel_coordinates(AXES, ROWS, objective="loss", direction="minimize"))
    y_at_lr = {
        line.get("data-trial"): coords(line)[0][1] for line in by_class(root, "polyline", "trial-line")
    }
    a, b, c = y_at_lr["a"], y_at_lr["b"], y_at_lr["c"]
    assert a > b > c  # larger learning rates higher up
    assert b - c == pytest.approx(a - b, abs=0.02)


def test_parallel_coordinates_categories_and_degenerate_ranges() -> None:
    axes = [Axis("batch", "numeric"), Axis("opt", "categorical", ("sgd", "adam"))]
    rows = [
        {"name": "x", "batch": 32, "opt": "adam", "acc": 0.5},
        {"name": "y", "batch": "32", "opt": "rmsprop", "acc": 0.5},  # a category not listed: shown last
    ]
    root = parse(parallel_coordinates(axes, rows, objective="acc", direction="maximize"))
    lines = by_class(root, "polyline", "trial-line")
    assert len(lines) == 2
    first, second = (coords(line) for line in sorted(lines, key=lambda line: line.get("data-trial", "")))
    assert first[0][1] == second[0][1]  # one batch size: both in the middle of the axis
    assert first[1][1] > second[1][1]  # adam below rmsprop
    assert "rmsprop" in texts(root)
    assert by_class(root, "polyline", "best")[0].get("data-trial") == "x"  # ties: the first row


def test_parallel_coordinates_without_valid_rows_says_so() -> None:
    root = parse(parallel_coordinates(AXES, ROWS[3:6], objective="loss", direction="minimize"))
    assert not by_class(root, "polyline", "trial-line")
    assert any("yet" in t for t in texts(root))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="direction"):
        objective_chart(TRIALS, metric="m", direction="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        Axis("x", "ordinal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log"):
        Axis("x", "categorical", log=True)


# escaping


@pytest.mark.parametrize("name", HOSTILE)
def test_user_text_never_becomes_markup(name: str) -> None:
    charts = [
        line_chart({name: [(0, 1.0), (1, 2.0)]}, title=name, x_label=name, y_label=name),
        objective_chart([(0, 1.0, name), (1, 0.5, name)], metric=name, direction="minimize", goal=0.7),
        parallel_coordinates(
            [Axis(name, "numeric"), Axis("opt", "categorical", (name,))],
            [
                {"name": name, name: 1.0, "opt": name, name + "!": 0.3},
                {"name": "n", name: 2, "opt": "o", name + "!": 1},
            ],
            objective=name + "!",
            direction="minimize",
        ),
    ]
    for chart in charts:
        raw = str(chart)
        root = parse(chart)
        assert_no_markup_from(root, raw)
        assert name in root.get("aria-label", "") or name in "".join(root.itertext())
        named = [e.get(a) for e in root.iter() for a in ("data-name", "data-trial", "data-axis") if e.get(a)]
        assert name in named
        assert any(name in "".join(e.itertext()) for e in root.iter(f"{NS}title"))


def test_control_characters_are_dropped() -> None:
    root = parse(line_chart({"a\x00b\x1b": [(0, 1.0)]}, title="t\x07"))
    assert [s.get("data-name") for s in by_class(root, "polyline", "series")] == ["ab"]
