"""``lumi tune status``: an experiment's trials as a table; ``lumi metrics``: a job's series."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from lumiflow.cli.commands.resources import _client, profile_option
from lumiflow.cli.output import (
    console,
    emit_json,
    emit_yaml,
    metric_value,
    phase_text,
    short_number,
    sparkline,
)
from lumiflow.common.timeutil import parse_rfc3339

OUTPUT = click.Choice(["table", "json", "yaml"])


@click.group()
def tune() -> None:
    """Hyperparameter tuning (Katib Experiments): apply one with `lumi apply -f`, then follow it here."""


def _duration(trial: dict[str, Any]) -> str:
    status = trial.get("status", {})
    start, end = parse_rfc3339(status.get("startTime")), parse_rfc3339(status.get("completionTime"))
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.1f}s"


def trials_table(experiment: dict[str, Any], trials: list[dict[str, Any]]) -> Table:
    spec = experiment["spec"]
    objective = spec.get("objective", {})
    objectives = [objective.get("objectiveMetricName", "")] + [
        o.get("objectiveMetricName", "") for o in objective.get("additionalObjectives", [])
    ]
    directions = [objective.get("type")] + [o.get("type") for o in objective.get("additionalObjectives", [])]
    params = [p["name"] for p in spec.get("parameters", [])]
    status = experiment.get("status", {})
    best = (status.get("currentOptimalTrial") or {}).get("bestTrialName")
    front = {t.get("bestTrialName") for t in status.get("paretoFront", [])}
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("#", "TRIAL", "PHASE", *params, *objectives, "TIME", ""):
        table.add_column(col, justify="right" if col in ("#", "TIME") else "left")
    for trial in trials:
        name = trial["metadata"]["name"]
        values = {a["name"]: a["value"] for a in trial["spec"].get("parameterAssignments", [])}
        observation = trial.get("status", {}).get("observation")
        scores = []
        for metric, direction in zip(objectives, directions, strict=True):
            value = metric_value(observation, metric, "min" if direction == "minimize" else "max")
            scores.append("-" if value is None else f"{value:.6g}")
        mark = (
            Text("★ best", style="bold green")
            if name == best
            else Text("pareto", style="green")
            if name in front
            else Text("")
        )
        table.add_row(
            str(trial["spec"].get("number", "")),
            name,
            phase_text(trial.get("status", {}).get("phase")),
            *(short_number(values.get(p, "")) for p in params),
            *scores,
            _duration(trial),
            mark,
        )
    return table


@tune.command("status")
@click.argument("name")
@profile_option
@click.option(
    "-o",
    "--output",
    type=OUTPUT,
    default="table",
    show_default=True,
    help="json/yaml print the Experiment itself",
)
@click.pass_context
def status(ctx: click.Context, name: str, profile: str | None, output: str) -> None:
    """An experiment's progress and its trials, best marked."""
    with _client(ctx) as client:
        experiment = client.get("experiment", name, profile=profile)
        if output == "json":
            emit_json(experiment)
            return
        if output == "yaml":
            emit_yaml(experiment)
            return
        trials = client.trials(name, profile=profile or experiment["metadata"].get("namespace"))
    spec, st = experiment["spec"], experiment.get("status", {})
    objective = spec.get("objective", {})
    goal = f", goal {objective['goal']:g}" if objective.get("goal") is not None else ""
    console.print(
        Text.assemble(
            (f"{name}", "bold"),
            "  ",
            phase_text(st.get("phase")),
            f"  {objective.get('type', '')} {objective.get('objectiveMetricName', '')}{goal}"
            f"  ·  {spec.get('algorithm', {}).get('algorithmName', '')}"
            f"  ·  {st.get('trialsSucceeded', 0)} succeeded, {st.get('trialsRunning', 0)} running, "
            f"{st.get('trialsFailed', 0) + st.get('trialMetricsUnavailable', 0)} failed, "
            f"{st.get('trialsEarlyStopped', 0)} stopped early of {spec.get('maxTrialCount') or '∞'}",
        )
    )
    if st.get("message"):
        console.print(Text(st["message"], style="dim"))
    console.print(trials_table(experiment, trials))


@click.command()
@click.argument("kind")
@click.argument("name")
@profile_option
@click.option("--metric", "-m", "metrics", multiple=True, help="only these metrics (repeat)")
@click.option(
    "-o", "--output", type=OUTPUT, default="table", show_default=True, help="json/yaml print the series"
)
@click.pass_context
def metrics(
    ctx: click.Context, kind: str, name: str, profile: str | None, metrics: tuple[str, ...], output: str
) -> None:
    """The metric series of a training job or trial (its name=value lines, files or pushes)."""
    with _client(ctx) as client:
        series = client.metrics(kind, name, profile=profile, names=metrics)
    if output == "json":
        emit_json({"kind": kind, "name": name, "metrics": series})
        return
    if output == "yaml":
        emit_yaml({"kind": kind, "name": name, "metrics": series})
        return
    if not series:
        console.print(Text(f"no metrics yet for {kind} {name}", style="dim"))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("METRIC", "POINTS", "LAST STEP", "LATEST", "MIN", "MAX", "TREND"):
        table.add_column(col)
    for metric, points in sorted(series.items()):
        values = [float(p["value"]) for p in points]
        table.add_row(
            metric,
            str(len(points)),
            str(points[-1]["step"]),
            f"{values[-1]:.6g}",
            f"{min(values):.6g}",
            f"{max(values):.6g}",
            Text(sparkline(values), style="cyan"),
        )
    console.print(table)
