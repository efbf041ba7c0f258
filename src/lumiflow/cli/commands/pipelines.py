"""``lumi pipeline compile|upload|versions``, ``lumi run create|get|list|logs|terminate|retry``,
recurring runs (``lumi run schedule|schedules|enable|disable``) and ``lumi lineage``: Kubeflow
Pipelines' verbs over the same API."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from lumiflow.cli.commands.resources import _client, profile_option
from lumiflow.cli.output import console, emit_json, emit_yaml, phase_text
from lumiflow.common.errors import BadRequest
from lumiflow.common.timeutil import age, parse_rfc3339, utcnow

OUTPUT = click.Choice(["table", "json", "yaml"])
FINAL = ("SUCCEEDED", "FAILED", "CANCELED")


def _emit(value: Any, output: str) -> bool:
    if output == "json":
        emit_json(value)
        return True
    if output == "yaml":
        emit_yaml(value)
        return True
    return False


def _compile(path: str, function: str | None) -> dict[str, Any]:
    from lumiflow.pipelines import compiler

    if path.endswith((".yaml", ".yml", ".json")):
        from lumiflow.pipelines import spec as pipeline_spec

        text = Path(path).read_text()
        return pipeline_spec.load(text).model_dump(mode="json", exclude_none=True)
    func = compiler.load_pipeline_file(path, function) if function else compiler.load_pipeline_file(path)
    return compiler.compile(func).model_dump(mode="json", exclude_none=True)


@click.group()
def pipeline() -> None:
    """Pipelines: compile a @dsl.pipeline file, upload it as a new version, list versions."""


@pipeline.command("compile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--output-file", "-f", "out", default=None, help="where to write the YAML [FILE with .yaml]")
@click.option("--function", default=None, help="the @dsl.pipeline function, when the file has several")
def compile_(file: str, out: str | None, function: str | None) -> None:
    """Compiles FILE.py into a versioned YAML spec (checked: cycles, types, references)."""
    spec = _compile(file, function)
    target = Path(out) if out else Path(file).with_suffix(".yaml")
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    tasks = len((spec.get("root") or {}).get("tasks") or {})
    console.print(
        f"{spec.get('name')}: {len(spec.get('components') or {})} components, {tasks} top-level tasks → {target}"
    )


@pipeline.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", "-n", required=True, help="the pipeline's name (a new version when it exists)")
@click.option("--description", "-d", default=None)
@click.option("--function", default=None, help="the @dsl.pipeline function, when the file has several")
@profile_option
@click.option(
    "-o",
    "--output",
    type=OUTPUT,
    default="table",
    show_default=True,
    help="json/yaml print the PipelineVersion",
)
@click.pass_context
def upload(
    ctx: click.Context,
    file: str,
    name: str,
    description: str | None,
    function: str | None,
    profile: str | None,
    output: str,
) -> None:
    """Uploads FILE.py (compiled here) or FILE.yaml as the next version of pipeline NAME."""
    spec = _compile(file, function)
    with _client(ctx) as client:
        version = client.upload_pipeline(spec, name=name, description=description, profile=profile)
    if not _emit(version, output):
        console.print(
            f"pipelineversion/{version['metadata']['name']} created (pipeline {name}, version {version['spec']['version']})"
        )


@pipeline.command("versions")
@click.argument("name")
@profile_option
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@click.pass_context
def versions(ctx: click.Context, name: str, profile: str | None, output: str) -> None:
    """The versions of pipeline NAME."""
    with _client(ctx) as client:
        items = client.list(
            "pipelineversions", profile=profile, label_selector=f"pipelines.lumiflow.dev/pipeline={name}"
        )
    items.sort(key=lambda v: int(v["spec"].get("version", 0)))
    if _emit({"apiVersion": "v1", "kind": "List", "items": items}, output):
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("VERSION", "NAME", "STEPS", "AGE"):
        table.add_column(col)
    for v in items:
        spec = v["spec"].get("pipelineSpec") or {}
        table.add_row(
            str(v["spec"]["version"]),
            v["metadata"]["name"],
            str(len(spec.get("components") or {})),
            age(parse_rfc3339(v["metadata"].get("creationTimestamp"))),
        )
    console.print(table)


@click.group()
def run() -> None:
    """Pipeline runs: create one, follow it, see a step's log, terminate or retry it; schedule
    recurring runs."""


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"--param {item!r}: write name=value", field="param")
        out[key] = value
    return out


def _duration(node: dict[str, Any]) -> str:
    start, end = parse_rfc3339(node.get("startTime")), parse_rfc3339(node.get("finishTime"))
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.1f}s"


def nodes_table(run_obj: dict[str, Any]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("STEP", "STATE", "TIME", "ATTEMPTS", "NOTE"):
        table.add_column(col)
    nodes: dict[str, Any] = (run_obj.get("status") or {}).get("nodes") or {}
    for node_id in sorted(nodes, key=lambda n: (nodes[n].get("startTime") or "~", n)):
        node = nodes[node_id]
        note = "cached" if node.get("cached") else (node.get("message") or "")
        table.add_row(
            node_id,
            phase_text(node.get("state")),
            _duration(node),
            str(node.get("attempts") or "-"),
            Text(note, style="dim"),
        )
    return table


@run.command("create")
@click.argument("pipeline_name")
@click.option("--param", "params", multiple=True, help="name=value (repeat); read as the parameter's type")
@click.option("--version", type=int, default=None, help="a version (default: the latest)")
@click.option("--name", default=None, help="the run's name (default: PIPELINE-xxxxx)")
@click.option("--no-cache", is_flag=True, help="run every step, even those whose results are cached")
@click.option("--wait", is_flag=True, help="wait until the run has finished; exit 1 unless it succeeded")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@profile_option
@click.option(
    "-o", "--output", type=OUTPUT, default="table", show_default=True, help="json/yaml print the PipelineRun"
)
@click.pass_context
def create(
    ctx: click.Context,
    pipeline_name: str,
    params: tuple[str, ...],
    version: int | None,
    name: str | None,
    no_cache: bool,
    wait: bool,
    timeout: float,
    profile: str | None,
    output: str,
) -> None:
    """Starts a run of PIPELINE_NAME (uploaded with `lumi pipeline upload`)."""
    with _client(ctx) as client:
        created = client.create_run(
            pipeline_name,
            parameters=_params(params),
            version=version,
            name=name,
            caching=not no_cache,
            profile=profile,
        )
        run_name = created["metadata"]["name"]
        if wait:
            deadline = time.monotonic() + timeout
            with console.status(f"run {run_name} …") as spinner:
                while True:
                    created = client.get("pipelinerun", run_name, profile=profile)
                    state = (created.get("status") or {}).get("state")
                    nodes = (created.get("status") or {}).get("nodes") or {}
                    done = sum(
                        1
                        for n in nodes.values()
                        if n.get("state") in ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
                    )
                    spinner.update(f"run {run_name}: {state or 'PENDING'}, {done}/{len(nodes)} steps ended")
                    if state in FINAL:
                        break
                    if time.monotonic() > deadline:
                        raise BadRequest(f"run {run_name} still {state} after {timeout:g}s")
                    time.sleep(0.3)
    if _emit(created, output):
        if wait and (created.get("status") or {}).get("state") != "SUCCEEDED":
            raise SystemExit(1)
        return
    state = (created.get("status") or {}).get("state") or "PENDING"
    console.print(Text.assemble(f"pipelinerun/{run_name} ", phase_text(state)))
    if wait:
        console.print(nodes_table(created))
        if state != "SUCCEEDED":
            raise SystemExit(1)


@run.command("get")
@click.argument("name")
@profile_option
@click.option(
    "-o", "--output", type=OUTPUT, default="table", show_default=True, help="json/yaml print the PipelineRun"
)
@click.pass_context
def get(ctx: click.Context, name: str, profile: str | None, output: str) -> None:
    """A run and its steps (state, time, cached or why not run)."""
    with _client(ctx) as client:
        obj = client.get("pipelinerun", name, profile=profile)
    if _emit(obj, output):
        return
    status = obj.get("status") or {}
    console.print(
        Text.assemble(
            (name, "bold"),
            "  ",
            phase_text(status.get("state")),
            f"  pipeline {obj['spec'].get('pipeline') or '(inline)'}"
            + (f" v{obj['spec']['version']}" if obj["spec"].get("version") else "")
            + (f"  ·  {status['message']}" if status.get("message") else ""),
        )
    )
    console.print(nodes_table(obj))


@run.command("list")
@profile_option
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@click.pass_context
def list_(ctx: click.Context, profile: str | None, output: str) -> None:
    """The runs of the profile."""
    with _client(ctx) as client:
        items = client.list("pipelineruns", profile=profile)
    if _emit({"apiVersion": "v1", "kind": "List", "items": items}, output):
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "PIPELINE", "STATE", "STEPS", "AGE"):
        table.add_column(col)
    for item in items:
        status = item.get("status") or {}
        table.add_row(
            item["metadata"]["name"],
            f"{item['spec'].get('pipeline') or '-'}"
            + (f" v{item['spec']['version']}" if item["spec"].get("version") else ""),
            phase_text(status.get("state")),
            str(len(status.get("nodes") or {})),
            age(parse_rfc3339(item["metadata"].get("creationTimestamp"))),
        )
    console.print(table)


@run.command("logs")
@click.argument("name")
@click.option(
    "--step", "-s", required=True, help="the step, as `lumi run get` names it (e.g. train, for-1[0]/train)"
)
@click.option("-f", "--follow", is_flag=True, help="stream the log as it grows")
@profile_option
@click.pass_context
def logs(ctx: click.Context, name: str, step: str, follow: bool, profile: str | None) -> None:
    """A step's log (its traceback when it failed)."""
    with _client(ctx) as client:
        obj = client.get("pipelinerun", name, profile=profile)
        nodes = (obj.get("status") or {}).get("nodes") or {}
        node = nodes.get(step)
        if node is None:
            steps = ", ".join(sorted(n for n, v in nodes.items() if v.get("workload"))) or "none yet"
            raise BadRequest(f"run {name} has no step {step!r} (steps: {steps})", field="step")
        if node.get("cached"):
            console.print(Text(f"{step} did not run: {node.get('message')}", style="dim"))
            return
        target = node.get("workload")
        if not target:
            raise BadRequest(
                f"step {step} has not started ({node.get('state')}: {node.get('message') or ''})"
            )
        kind, wl = ("workload", target) if "/" not in target else tuple(target.split("/", 1))
        for text in client.logs(kind, wl, profile=obj["metadata"].get("namespace"), follow=follow):
            click.echo(text, nl=False)


@run.command("terminate")
@click.argument("name")
@profile_option
@click.pass_context
def terminate(ctx: click.Context, name: str, profile: str | None) -> None:
    """Stops a run: running steps are stopped, the others canceled."""
    with _client(ctx) as client:
        client.terminate_run(name, profile=profile)
    console.print(f"pipelinerun/{name} terminating")


@run.command("retry")
@click.argument("name")
@profile_option
@click.option(
    "-o",
    "--output",
    type=OUTPUT,
    default="table",
    show_default=True,
    help="json/yaml print the new PipelineRun",
)
@click.pass_context
def retry(ctx: click.Context, name: str, profile: str | None, output: str) -> None:
    """Runs a run's spec and parameters again: steps that succeeded come from the cache."""
    with _client(ctx) as client:
        created = client.retry_run(name, profile=profile)
    if not _emit(created, output):
        console.print(f"pipelinerun/{created['metadata']['name']} created (a retry of {name})")


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> int:
    """``90``, ``30s``, ``10m``, ``1h30m``, ``1d`` → seconds."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise BadRequest(f"--every {text!r}: write a duration such as 30s, 10m, 1h30m or 1d", field="every")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


@run.command("schedule")
@click.argument("pipeline_name")
@click.option("--cron", "cron_expression", default=None, help="a cron expression: '0 */2 * * *', @daily, ...")
@click.option("--timezone", default="UTC", show_default=True, help="the cron expression's timezone")
@click.option("--every", default=None, help="an interval instead of --cron: 30s, 10m, 1h30m, 1d")
@click.option("--param", "params", multiple=True, help="name=value (repeat); read as the parameter's type")
@click.option("--version", type=int, default=None, help="a version (default: the latest at each trigger)")
@click.option("--max-concurrency", type=int, default=1, show_default=True, help="unfinished runs at most")
@click.option("--no-catchup", is_flag=True, help="after downtime, run only the latest missed trigger")
@click.option("--no-cache", is_flag=True, help="run every step, even those whose results are cached")
@click.option("--start-time", default=None, help="no trigger before this RFC 3339 time")
@click.option("--end-time", default=None, help="no trigger after this RFC 3339 time")
@click.option("--name", default=None, help="the recurring run's name (default: PIPELINE-xxxxx)")
@profile_option
@click.option(
    "-o", "--output", type=OUTPUT, default="table", show_default=True, help="json/yaml print the RecurringRun"
)
@click.pass_context
def schedule(
    ctx: click.Context,
    pipeline_name: str,
    cron_expression: str | None,
    timezone: str,
    every: str | None,
    params: tuple[str, ...],
    version: int | None,
    max_concurrency: int,
    no_catchup: bool,
    no_cache: bool,
    start_time: str | None,
    end_time: str | None,
    name: str | None,
    profile: str | None,
    output: str,
) -> None:
    """Runs PIPELINE_NAME on a schedule (--cron or --every), as Kubeflow's recurring runs."""
    if (cron_expression is None) == (every is None):
        raise BadRequest("give one of --cron and --every", field="cron")
    with _client(ctx) as client:
        created = client.create_recurring_run(
            pipeline_name,
            cron=cron_expression,
            timezone=timezone,
            interval_seconds=parse_every(every) if every is not None else None,
            parameters=_params(params),
            version=version,
            name=name,
            max_concurrency=max_concurrency,
            no_catchup=no_catchup,
            caching=not no_cache,
            start_time=start_time,
            end_time=end_time,
            profile=profile,
        )
    if not _emit(created, output):
        console.print(f"recurringrun/{created['metadata']['name']} created ({_trigger(created)})")


def _trigger(obj: dict[str, Any]) -> str:
    trigger = obj["spec"].get("trigger") or {}
    if trigger.get("cron"):
        zone = trigger["cron"].get("timezone", "UTC")
        return f"cron {trigger['cron']['expression']}" + ("" if zone == "UTC" else f" {zone}")
    seconds = int((trigger.get("interval") or {}).get("seconds", 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"


def _relative(value: str | None) -> str:
    when = parse_rfc3339(value)
    if when is None:
        return "-"
    now = utcnow()
    return f"{age(when, now)} ago" if when <= now else f"in {age(now, when)}"


@run.command("schedules")
@profile_option
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@click.pass_context
def schedules(ctx: click.Context, profile: str | None, output: str) -> None:
    """The recurring runs of the profile."""
    with _client(ctx) as client:
        items = client.recurring_runs(profile=profile)
    if _emit({"apiVersion": "v1", "kind": "List", "items": items}, output):
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "PIPELINE", "TRIGGER", "ENABLED", "LAST", "NEXT", "RUNS", "STATUS"):
        table.add_column(col)
    for item in items:
        spec, status = item["spec"], item.get("status") or {}
        table.add_row(
            item["metadata"]["name"],
            spec["pipeline"] + (f" v{spec['version']}" if spec.get("version") else ""),
            _trigger(item),
            "yes" if spec.get("enabled", True) else "no",
            _relative(status.get("lastTriggerTime")),
            _relative(status.get("nextTriggerTime")),
            str(status.get("runs", 0)),
            phase_text(status.get("phase")),
        )
    console.print(table)


@run.command("enable")
@click.argument("name")
@profile_option
@click.pass_context
def enable(ctx: click.Context, name: str, profile: str | None) -> None:
    """Starts a recurring run's triggers again (those missed while disabled do not run)."""
    with _client(ctx) as client:
        client.enable_recurring_run(name, profile=profile)
    console.print(f"recurringrun/{name} enabled")


@run.command("disable")
@click.argument("name")
@profile_option
@click.pass_context
def disable(ctx: click.Context, name: str, profile: str | None) -> None:
    """Stops a recurring run's triggers; it and its runs stay."""
    with _client(ctx) as client:
        client.disable_recurring_run(name, profile=profile)
    console.print(f"recurringrun/{name} disabled")


@click.command()
@click.argument("uri")
@click.option("--downstream", is_flag=True, help="what the artifact went into, instead of what produced it")
@profile_option
@click.option(
    "-o", "--output", type=OUTPUT, default="table", show_default=True, help="json/yaml print the graph"
)
@click.pass_context
def lineage(ctx: click.Context, uri: str, downstream: bool, profile: str | None, output: str) -> None:
    """Where an artifact came from: the steps, jobs, parameters and data upstream of it."""
    with _client(ctx) as client:
        graph = client.lineage(uri, downstream=downstream, profile=profile)
    if _emit(graph, output):
        return
    artifacts = {a["id"]: a for a in graph["artifacts"]}
    executions = {x["id"]: x for x in graph["executions"]}
    producer = "OUTPUT" if not downstream else "INPUT"
    consumer = "INPUT" if not downstream else "OUTPUT"
    start = next(a for a in graph["artifacts"] if a["uri"] == uri)

    def label(a: dict[str, Any]) -> Text:
        digest = (a.get("digest") or "")[:19]
        return Text.assemble((a["type"], "cyan"), f" {a['name']}  ", (a["uri"], "dim"), f"  {digest}")

    def add(node: Tree, artifact_id: int, seen: set[int]) -> None:
        for e in graph["events"]:
            if e["artifact"] != artifact_id or e["type"] != producer:
                continue
            x = executions.get(e["execution"])
            if x is None or x["id"] in seen:
                continue
            params = (x.get("properties") or {}).get("parameters") or {}
            shown = " ".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, dict))
            branch = node.add(
                Text.assemble((x["type"], "bold"), f" {x['name']} ", phase_text(x["state"]), f"  {shown}")
            )
            for e2 in graph["events"]:
                if e2["execution"] == x["id"] and e2["type"] == consumer and e2["artifact"] in artifacts:
                    child = branch.add(label(artifacts[e2["artifact"]]))
                    add(child, e2["artifact"], seen | {x["id"]})

    tree = Tree(label(start))
    add(tree, start["id"], set())
    console.print(tree)
