"""How the CLI shows things: rich tables for people, the resource itself for scripts.

``-o json`` and ``-o yaml`` print exactly what the API returned (one object, or a
Kubernetes ``List`` for several); ``-o name`` prints ``kind/name`` lines; the default is a
table chosen by kind.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lumiflow.common.quantity import format_cpu, format_memory
from lumiflow.common.timeutil import age

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)

OUTPUT_CHOICES = click.Choice(["table", "json", "yaml", "name", "wide"])

PHASE_STYLE = {
    "Succeeded": "green",
    "Running": "cyan",
    "Admitted": "cyan",
    "Failed": "red",
    "Restarting": "yellow",
    "Queued": "yellow",
    "Pending": "yellow",
    "Suspended": "magenta",
    "Stopped": "magenta",
}


def output_option(default: str = "table") -> Callable[[Any], Any]:
    return click.option(
        "-o",
        "--output",
        type=OUTPUT_CHOICES,
        default=default,
        show_default=True,
        help="table for people; json/yaml print the resource itself; name prints kind/name",
    )


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def emit_yaml(value: Any) -> None:
    click.echo(yaml.safe_dump(value, sort_keys=False, default_flow_style=False).rstrip())


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def emit_objects(items: list[dict[str, Any]], output: str, *, single: bool) -> bool:
    """Prints machine formats; returns False when a table is wanted instead."""
    value: Any = items[0] if single and len(items) == 1 else as_list(items)
    if output == "json":
        emit_json(value)
    elif output == "yaml":
        emit_yaml(value)
    elif output == "name":
        for item in items:
            click.echo(f"{item['kind'].lower()}/{item['metadata']['name']}")
    else:
        return False
    return True


def phase_text(phase: str | None) -> Text:
    return Text(phase or "-", style=PHASE_STYLE.get(phase or "", ""))


def _ns(item: dict[str, Any]) -> str:
    return str(item.get("metadata", {}).get("namespace", ""))


def _name(item: dict[str, Any]) -> str:
    return str(item.get("metadata", {}).get("name", ""))


def _created(item: dict[str, Any]) -> str:
    return age(item.get("metadata", {}).get("creationTimestamp"))


def _usage(used: float, hard: float | None, fmt: Callable[[Any], str]) -> str:
    if hard is None:
        return f"{fmt(used)}/-"
    return f"{fmt(used)}/{fmt(hard)}"


def _bar(used: float, hard: float | None) -> Text:
    if not hard:
        return Text("")
    frac = max(0.0, min(1.0, used / hard))
    filled = round(frac * 10)
    style = "red" if frac >= 1 else "yellow" if frac >= 0.8 else "green"
    return Text("█" * filled + "░" * (10 - filled), style=style)


def _fullest(used: dict[str, Any], hard: dict[str, Any]) -> float:
    fractions = [used.get(k, 0) / hard[k] for k in ("cpu", "memory", "gpu", "workloads") if hard.get(k)]
    return max(fractions, default=0.0)


def table_for(kind: str, items: list[dict[str, Any]], *, show_profile: bool, wide: bool = False) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    if kind == "Profile":
        for col in ("NAME", "OWNER", "CPU", "MEMORY", "GPU", "WORKLOADS", "", "AGE"):
            table.add_column(col)
        for item in items:
            owner = item["spec"].get("owner", {})
            status = item.get("status", {})
            used, hard = status.get("usage", {}), status.get("hard", {})
            table.add_row(
                _name(item),
                f"{owner.get('kind', '')}:{owner.get('name', '')}",
                _usage(used.get("cpu", 0), hard.get("cpu"), format_cpu),
                _usage(used.get("memory", 0), hard.get("memory"), format_memory),
                _usage(used.get("gpu", 0), hard.get("gpu"), str),
                _usage(used.get("workloads", 0), hard.get("workloads"), str),
                _bar(_fullest(used, hard), 1.0 if hard else None),
                _created(item),
            )
        return table
    if show_profile:
        table.add_column("PROFILE")
    table.add_column("NAME")
    if kind == "TrainingJob":
        cols = ["PHASE", "REPLICAS", "RESTARTS", "CLUSTER", "AGE"] + (["MESSAGE"] if wide else [])
        for col in cols:
            table.add_column(col)
        for item in items:
            status = item.get("status", {})
            total = sum(int(s.get("replicas", 1)) for s in item["spec"].get("replicaSpecs", {}).values())
            running = sum(1 for r in status.get("replicas", []) if r.get("state") == "Running")
            row = [
                phase_text(status.get("phase")),
                f"{running}/{total}",
                str(status.get("restartCount", 0)),
                status.get("cluster") or "-",
                _created(item),
            ]
            if wide:
                row.append(Text(status.get("message") or ""))
            table.add_row(*([_ns(item)] if show_profile else []), _name(item), *row)
        return table
    if kind == "Experiment":
        for col in ("PHASE", "ALGORITHM", "TRIALS", "RUNNING", "BEST", "AGE"):
            table.add_column(col)
        for item in items:
            status, spec = item.get("status", {}), item["spec"]
            budget = spec.get("maxTrialCount")
            trials = f"{status.get('trialsSucceeded', 0)}/{status.get('trials', 0)}" + (
                f" of {budget}" if budget else ""
            )
            table.add_row(
                *([_ns(item)] if show_profile else []),
                _name(item),
                phase_text(status.get("phase")),
                spec.get("algorithm", {}).get("algorithmName", ""),
                trials,
                str(status.get("trialsRunning", 0)),
                best_text(item),
                _created(item),
            )
        return table
    if kind == "Trial":
        for col in ("PHASE", "PARAMETERS", "OBJECTIVE", "AGE"):
            table.add_column(col)
        for item in items:
            status = item.get("status", {})
            table.add_row(
                *([_ns(item)] if show_profile else []),
                _name(item),
                phase_text(status.get("phase")),
                assignments_text(item["spec"].get("parameterAssignments", [])),
                objective_text(item),
                _created(item),
            )
        return table
    if kind == "Workload":
        for col in ("PHASE", "CLUSTER", "ATTEMPT", "REPLICAS", "AGE", "MESSAGE"):
            table.add_column(col)
        for item in items:
            status = item.get("status", {})
            table.add_row(
                *([_ns(item)] if show_profile else []),
                _name(item),
                phase_text(status.get("phase")),
                status.get("cluster") or "-",
                str(status.get("attempt", 0)),
                str(len(item["spec"].get("replicas", []))),
                _created(item),
                Text(status.get("message") or ""),
            )
        return table
    table.add_column("PHASE")
    table.add_column("AGE")
    for item in items:
        table.add_row(
            *([_ns(item)] if show_profile else []),
            _name(item),
            phase_text(item.get("status", {}).get("phase")),
            _created(item),
        )
    return table


def assignments_text(assignments: list[dict[str, Any]]) -> str:
    return " ".join(f"{a.get('name')}={short_number(a.get('value'))}" for a in assignments)


def short_number(value: Any) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{x:.6g}"


def metric_value(observation: dict[str, Any] | None, name: str, strategy: str) -> float | None:
    for m in (observation or {}).get("metrics", []):
        if m.get("name") == name:
            try:
                return float(m.get(strategy) if strategy in ("min", "max") else m.get("latest"))
            except (TypeError, ValueError):
                return None
    return None


def objective_text(trial: dict[str, Any]) -> str:
    objective = trial["spec"].get("objective", {})
    name = objective.get("objectiveMetricName", "")
    strategy = "min" if objective.get("type") == "minimize" else "max"
    value = metric_value(trial.get("status", {}).get("observation"), name, strategy)
    return "-" if value is None else f"{name}={value:.6g}"


def best_text(experiment: dict[str, Any]) -> str:
    best = experiment.get("status", {}).get("currentOptimalTrial") or {}
    objective = experiment["spec"].get("objective", {})
    name = objective.get("objectiveMetricName", "")
    strategy = "min" if objective.get("type") == "minimize" else "max"
    value = metric_value(best.get("observation"), name, strategy)
    return "-" if value is None else f"{name}={value:.6g} ({best.get('bestTrialName')})"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """The series as a line of block characters (the last ``width`` buckets)."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        values = [values[min(len(values) - 1, int(i * size))] for i in range(width)]
    lo, hi = min(values), max(values)
    if hi == lo:
        return SPARK[3] * len(values)
    return "".join(SPARK[min(7, int((v - lo) / (hi - lo) * 7.999))] for v in values)


def clusters_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("CLUSTER", "TYPE", "HOME", "CPU", "MEMORY", "GPU", "WORKLOADS", "QUEUED"):
        table.add_column(col)
    for c in items:
        cap, used = c["capacity"], c["used"]
        table.add_row(
            c["name"],
            c["type"],
            "yes" if c["home"] else "",
            f"{format_cpu(used['cpu'])}/{format_cpu(cap['cpu'])}",
            f"{format_memory(used['memory'])}/{format_memory(cap['memory'])}",
            f"{used['gpu']}/{cap['gpu']}",
            str(used["workloads"]),
            str(c["queued"]),
        )
    return table


def fail(message: str, *, field: str | None = None, code: int = 1) -> None:
    where = f" [{field}]" if field and field not in message else ""
    err_console.print(Text.assemble(("error: ", "red"), f"{message}{where}"))
    sys.exit(code)
