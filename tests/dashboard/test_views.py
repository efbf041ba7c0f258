"""What the job and experiment pages compute before rendering: metric families and their
charts, trial rows, objective values by Katib's strategies, parallel-coordinates axes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lumiflow.resources.experiment import Experiment
from lumiflow.server.dashboard.views import (
    MAX_METRIC_CHARTS,
    axes,
    duration,
    experiment_view,
    metric_charts,
    metric_family,
    summarize,
)
from lumiflow.server.dashboard.web import _templates
from tests.tuning.experiments import experiment

pytestmark = pytest.mark.timeout(30)

SPACE = [
    {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
    },
    {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "4"}},
    {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "<b>adam</b>"]}},
    {"name": "batch", "parameterType": "discrete", "feasibleSpace": {"list": ["16", "32"]}},
]


def series(*values: float) -> list[dict[str, Any]]:
    return [{"step": i + 1, "value": v, "timestamp": 0.0} for i, v in enumerate(values)]


def test_metric_families_group_splits_of_one_quantity() -> None:
    assert metric_family("val_loss") == "loss"
    assert metric_family("train/loss") == "loss"
    assert metric_family("Validation-accuracy") == "accuracy"
    assert metric_family("loss") == "loss"
    assert metric_family("value_x") == "value_x"
    assert metric_family("val_") == "val_"


def test_metric_charts_share_an_axis_only_when_the_scales_match() -> None:
    shared = metric_charts(
        {"loss": series(2, 1, 0.5), "val_loss": series(2.5, 1.5, 0.9), "acc": series(0.1, 0.5)}
    )
    assert len(shared.charts) == 2 and not shared.not_drawn
    acc, loss = (str(c) for c in shared.charts)
    assert acc.count('class="series"') == 1 and 'data-name="acc"' in acc
    assert loss.count('class="series"') == 2 and 'data-name="val_loss"' in loss

    apart = metric_charts({"loss": series(2, 1), "val_loss": series(900, 800)})
    assert len(apart.charts) == 2

    many = metric_charts({f"m{i:02d}": series(1, 2) for i in range(MAX_METRIC_CHARTS + 3)})
    assert len(many.charts) == MAX_METRIC_CHARTS and many.not_drawn == ["m12", "m13", "m14"]
    assert metric_charts({}).empty and metric_charts({"loss": []}).empty


def test_duration() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert duration(None, None, now) == "-"
    assert duration("2024-01-01T11:59:55Z", None, now) == "5s"
    assert duration("2024-01-01T11:00:00Z", "2024-01-01T11:01:05Z") == "1m 05s"
    assert duration("2024-01-01T09:00:00Z", "2024-01-01T11:30:00Z") == "2h 30m"


def manifest(**status: Any) -> dict[str, Any]:
    doc = experiment("exp", parameters=SPACE, command=["python", "${trialParameters.lr}"], goal=0.05)
    doc["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    doc["status"] = status
    return doc


def observation(*latest_min: tuple[str, float, float]) -> dict[str, Any]:
    return {
        "metrics": [{"name": n, "latest": str(a), "min": str(b), "max": str(a)} for n, a, b in latest_min]
    }


def trial(number: int, phase: str, loss: tuple[float, float] | None, **params: str) -> dict[str, Any]:
    doc = experiment("exp", parameters=SPACE, command=["x"])
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Trial",
        "metadata": {"name": f"exp-{number:04d}", "namespace": "admin"},
        "spec": {
            "objective": doc["spec"]["objective"],
            "number": number,
            "parameterAssignments": [{"name": k, "value": v} for k, v in params.items()],
            "runSpec": {},
        },
        "status": {
            "phase": phase,
            "startTime": "2024-01-01T00:00:00Z",
            "completionTime": "2024-01-01T00:00:07Z",
            **({"observation": observation(("loss", *loss))} if loss else {}),
        },
    }


def test_axes_follow_the_parameter_types() -> None:
    found = axes(Experiment.parse(manifest()))
    assert [(a.name, a.kind, a.log, list(a.values)) for a in found] == [
        ("lr", "numeric", True, []),
        ("layers", "numeric", False, []),
        ("opt", "categorical", False, ["sgd", "<b>adam</b>"]),
        ("batch", "categorical", False, ["16", "32"]),
    ]


def test_experiment_view_rows_best_and_charts() -> None:
    params = {"lr": "0.036294229783964016", "layers": "2", "opt": "<b>adam</b>", "batch": "16"}
    best = {
        "bestTrialName": "exp-0000",
        "parameterAssignments": [{"name": k, "value": v} for k, v in params.items()],
        "observation": observation(("loss", 0.4, 0.2)),
    }
    doc = manifest(phase="Running", trials=3, trialsSucceeded=2, trialsRunning=1, currentOptimalTrial=best)
    trials = [
        trial(2, "Running", (0.9, 0.9), **params),
        trial(0, "Succeeded", (0.4, 0.2), **params),
        trial(1, "Succeeded", (0.8, 0.6), **{**params, "opt": "sgd"}),
    ]
    view = experiment_view(doc, trials)
    assert [t.number for t in view.trials] == [0, 1, 2]
    assert [t.best for t in view.trials] == [True, False, False]
    # minimize: the objective is the metric's min, as Katib's default strategy says
    assert [t.values for t in view.trials] == [[0.2], [0.6], [0.9]]
    assert view.trials[0].duration == "7s" and view.trials[1].parameters["opt"] == "sgd"
    assert view.best is not None and view.best.name == "exp-0000" and view.best.values == [0.2]
    # doubles are shortened for the tables, the rest shown as assigned
    assert view.best.shown == {**params, "lr": "0.0362942"} and view.trials[0].shown == view.best.shown
    assert view.objectives == [("loss", "minimize")] and not view.pareto and not view.final
    assert view.counters["total"] == 3 and view.counters["succeeded"] == 2
    chart = str(view.objective_charts[0])
    # only succeeded trials are charted: the running one's partial value is not a result yet
    assert chart.count('<circle class="trial') == 2 and chart.count('class="best-so-far"') == 1
    assert 'class="goal"' in chart
    parallel = str(view.parallel)
    assert parallel.count('<polyline class="trial-line') == 2
    assert "<b>" not in parallel and "&lt;b&gt;adam&lt;/b&gt;" in parallel

    summary = summarize(doc)
    assert (summary.phase, summary.succeeded, summary.trials, summary.max_trials) == ("Running", 2, 3, 4)
    assert summary.best_value == 0.2 and summary.metric == "loss" and summary.algorithm == "random"


def test_a_new_experiment_has_no_best_and_empty_charts() -> None:
    view = experiment_view(manifest(), [])
    assert view.best is None and view.trials == [] and view.phase == "Created"
    assert "chart-empty" in str(view.objective_charts[0]) and "chart-empty" in str(view.parallel)
    assert summarize(manifest()).best_value is None


def test_several_objectives_get_a_pareto_front_and_a_chart_each() -> None:
    doc = experiment(
        "exp",
        parameters=SPACE[:1],
        command=["python", "${trialParameters.lr}"],
        objective_extra={"additionalObjectives": [{"objectiveMetricName": "acc", "type": "maximize"}]},
    )
    front = [
        {
            "bestTrialName": f"exp-000{i}",
            "parameterAssignments": [{"name": "lr", "value": lr}],
            "observation": observation(("loss", loss, loss), ("acc", acc, acc)),
        }
        for i, lr, loss, acc in ((0, "0.01", 0.3, 0.7), (1, "0.05", 0.2, 0.6))
    ]
    doc["status"] = {"phase": "Succeeded", "currentOptimalTrial": front[0], "paretoFront": front}
    view = experiment_view(doc, [])
    assert view.objectives == [("loss", "minimize"), ("acc", "maximize")] and view.final
    # acc is maximised: its value is the metric's max
    assert [(o.name, o.values) for o in view.pareto] == [("exp-0000", [0.3, 0.7]), ("exp-0001", [0.2, 0.6])]
    assert len(view.objective_charts) == 2 and 'aria-label="acc by trial"' in str(view.objective_charts[1])

    html = _templates().get_template("_experiment_status.html").render(view=view, events=[], truncated=False)
    assert 'id="pareto"' in html and 'id="best-trial"' not in html
    assert html.count('<a href="/ui/jobs/admin/exp-000') == 2
