"""``lumi apply|get|describe|logs|delete|events|clusters``: resources, kubectl-style."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lumiflow.cli.output import (
    clusters_table,
    console,
    emit_json,
    emit_objects,
    emit_yaml,
    output_option,
    phase_text,
    table_for,
)
from lumiflow.common.documents import read_manifests
from lumiflow.common.errors import BadRequest
from lumiflow.common.quantity import format_cpu, format_memory
from lumiflow.common.timeutil import age
from lumiflow.sdk import Client
from lumiflow.sdk.client import TERMINAL

profile_option = click.option("-p", "--profile", default=None, help="the profile (default: your own)")
#: Where the server records the kind a manifest was written as (TFJob, PyTorchJob, Job, ...).
SOURCE_KIND_ANNOTATION = "lumiflow.dev/source-kind"


def _client(ctx: click.Context) -> Client:
    return Client(home=ctx.obj.get("home"))


def _read_sources(files: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for source in files:
        docs.extend(read_manifests(source, stdin_text=sys.stdin.read() if source == "-" else None))
    if not docs:
        raise BadRequest("nothing to apply: the files hold no documents")
    return docs


def _shown_kind(obj: dict[str, Any]) -> str:
    """The kind as the user wrote it (``tfjob`` for a TFJob stored as a TrainingJob)."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(SOURCE_KIND_ANNOTATION) or obj["kind"]).lower()


@click.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="a YAML/JSON file (several documents allowed), a folder, or - for stdin; repeatable",
)
@profile_option
@click.option("--wait", is_flag=True, help="wait until each applied job has finished; exit 1 if one failed")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="seconds to --wait")
@output_option()
@click.pass_context
def apply(
    ctx: click.Context, files: tuple[str, ...], profile: str | None, wait: bool, timeout: float, output: str
) -> None:
    """Create or update resources from manifests (lumiflow's or Kubeflow's), idempotently."""
    docs = _read_sources(files)
    client = _client(ctx)
    applied: list[dict[str, Any]] = []
    for _source, doc in docs:
        result = client.apply(doc, profile=profile)[0]
        obj = result.object
        applied.append(obj)
        if output in ("table", "wide"):
            console.print(f"{_shown_kind(obj)}/{obj['metadata']['name']} {result.action}")
    failed = False
    if wait:
        waited = []
        with console.status("waiting for the jobs to finish ...") as spinner:
            for obj in applied:
                if "phase" not in obj.get("status", {}) and obj["kind"] != "TrainingJob":
                    waited.append(obj)
                    continue
                meta = obj["metadata"]
                spinner.update(f"waiting for {obj['kind'].lower()}/{meta['name']} ...")
                done = client.wait(obj["kind"], meta["name"], profile=meta.get("namespace"), timeout=timeout)
                failed = failed or done["status"].get("phase") == "Failed"
                waited.append(done)
        applied = waited
        if output in ("table", "wide"):
            for obj in applied:
                status = obj.get("status", {})
                console.print(
                    Text.assemble(
                        f"{obj['kind'].lower()}/{obj['metadata']['name']} ",
                        phase_text(status.get("phase")),
                        f" {status.get('message') or ''}",
                    )
                )
    emit_objects(applied, output, single=len(applied) == 1)
    if failed:
        sys.exit(1)


@click.command()
@click.argument("kind")
@click.argument("name", required=False)
@profile_option
@click.option("-A", "--all-profiles", is_flag=True, help="every profile you can see")
@click.option("-l", "--selector", default=None, help="label selector: key=value,key!=value,key in (a,b)")
@click.option("-w", "--watch", is_flag=True, help="keep the table on screen, refreshed every second")
@output_option()
@click.pass_context
def get(
    ctx: click.Context,
    kind: str,
    name: str | None,
    profile: str | None,
    all_profiles: bool,
    selector: str | None,
    watch: bool,
    output: str,
) -> None:
    """Show one resource or a table of them (trainingjobs, workloads, profiles, ...)."""
    client = _client(ctx)
    k = client.kind(kind)

    def fetch() -> list[dict[str, Any]]:
        if name:
            return [client.get(k, name, profile=profile)]
        return client.list(k, profile=profile, all_profiles=all_profiles, label_selector=selector)

    items = fetch()
    if emit_objects(items, output, single=bool(name)):
        return
    show_profile = k.namespaced and (all_profiles or len({i["metadata"].get("namespace") for i in items}) > 1)
    if not watch:
        if not items:
            console.print(f"no {k.names[1]} found")
            return
        console.print(table_for(k.kind, items, show_profile=show_profile, wide=output == "wide"))
        return
    with Live(
        table_for(k.kind, items, show_profile=show_profile, wide=output == "wide"),
        console=console,
        refresh_per_second=4,
    ) as live:
        try:
            while True:
                time.sleep(1)
                live.update(table_for(k.kind, fetch(), show_profile=show_profile, wide=output == "wide"))
        except KeyboardInterrupt:
            return


def _kv_table(rows: list[tuple[str, Any]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    return table


def _events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("TYPE", "REASON", "AGE", "COUNT", "MESSAGE"):
        table.add_column(col)
    for e in events:
        table.add_row(
            Text(e["type"], style="yellow" if e["type"] == "Warning" else ""),
            e["reason"],
            age(e["lastTimestamp"]),
            str(e["count"]),
            Text(e["message"]),
        )
    return table


@click.command()
@click.argument("kind")
@click.argument("name")
@profile_option
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str, profile: str | None) -> None:
    """A readable account of one resource: status, conditions, replicas and events."""
    client = _client(ctx)
    k = client.kind(kind)
    obj = client.get(k, name, profile=profile)
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
    rows: list[tuple[str, Any]] = [("Name", meta["name"])]
    if meta.get("namespace"):
        rows.append(("Profile", meta["namespace"]))
    annotations = meta.get("annotations") or {}
    source = annotations.get(SOURCE_KIND_ANNOTATION)
    shown = f"{obj['kind']} ({obj['apiVersion']})"
    if source:
        shown += f", applied as {source} ({annotations.get('lumiflow.dev/source-api-version', '')})"
    rows += [
        ("Kind", shown),
        ("Created", f"{meta.get('creationTimestamp')} ({age(meta.get('creationTimestamp'))} ago)"),
        ("UID", meta.get("uid")),
    ]
    if spec.get("framework"):
        rows.append(("Framework", spec["framework"]))
    if meta.get("labels"):
        rows.append(("Labels", ", ".join(f"{a}={b}" for a, b in meta["labels"].items())))
    if meta.get("deletionTimestamp"):
        rows.append(("Deleting since", meta["deletionTimestamp"]))
    if "phase" in status:
        rows.append(("Phase", phase_text(status.get("phase"))))
    for key in ("message", "cluster", "startTime", "completionTime", "restartCount", "attempt"):
        if status.get(key) not in (None, ""):
            rows.append((key[0].upper() + key[1:], status[key]))
    parts: list[Any] = [_kv_table(rows)]
    if obj["kind"] == "Profile":
        used, hard = status.get("usage", {}), status.get("hard", {})
        owner = spec.get("owner", {})
        prow = [("Owner", f"{owner.get('kind')}:{owner.get('name')}")]
        for c in spec.get("contributors", []):
            prow.append(("Contributor", f"{c['kind']}:{c['name']} ({c['role']})"))
        prow.append(
            (
                "CPU",
                f"{format_cpu(used.get('cpu', 0))} of {format_cpu(hard['cpu']) if 'cpu' in hard else '-'}",
            )
        )
        prow.append(
            (
                "Memory",
                f"{format_memory(used.get('memory', 0))} of "
                f"{format_memory(hard['memory']) if 'memory' in hard else '-'}",
            )
        )
        prow.append(("GPU", f"{used.get('gpu', 0)} of {hard.get('gpu', '-')}"))
        prow.append(("Workloads", f"{used.get('workloads', 0)} of {hard.get('workloads', '-')}"))
        parts.append(Panel(_kv_table(prow), title="members and quota", title_align="left"))
    if status.get("conditions"):
        ct = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"):
            ct.add_column(col)
        for c in status["conditions"]:
            ct.add_row(
                c["type"],
                c["status"],
                c.get("reason") or "",
                age(c.get("lastTransitionTime")),
                Text(c.get("message") or ""),
            )
        parts.append(Panel(ct, title="conditions", title_align="left"))
    if status.get("replicas"):
        rt = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("REPLICA", "STATE", "EXIT", "REASON", "HOST", "PORTS", "STARTED", "MESSAGE"):
            rt.add_column(col)
        for r in status["replicas"]:
            ports = ", ".join(f"{a}={b}" for a, b in (r.get("ports") or {}).items())
            rt.add_row(
                r["name"],
                phase_text(r.get("state")),
                "" if r.get("exitCode") is None else str(r["exitCode"]),
                r.get("reason") or "",
                r.get("host") or "",
                ports,
                age(r.get("startTime")),
                Text(r.get("message") or ""),
            )
        parts.append(Panel(rt, title="replicas", title_align="left"))
    events = client.events(k.kind, name, profile=profile)
    parts.append(Panel(_events_table(events) if events else Text("none"), title="events", title_align="left"))
    console.print(Group(*parts))


@click.command()
@click.argument("kind")
@click.argument("name")
@profile_option
@click.option("--replica", "-r", default=None, help="which replica, e.g. worker-1 (default: the first)")
@click.option("--attempt", type=int, default=None, help="a gang attempt (default: the latest)")
@click.option("-f", "--follow", is_flag=True, help="stream the log as it grows, across gang restarts")
@click.pass_context
def logs(
    ctx: click.Context,
    kind: str,
    name: str,
    profile: str | None,
    replica: str | None,
    attempt: int | None,
    follow: bool,
) -> None:
    """Print a replica's log (stdout and stderr)."""
    client = _client(ctx)
    out = sys.stdout
    try:
        for chunk in client.logs(
            kind, name, profile=profile, replica=replica, follow=follow, attempt=attempt
        ):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("kind")
@click.argument("name")
@profile_option
@click.option("--wait/--no-wait", default=False, help="wait until it (and its replicas) are gone")
@click.pass_context
def delete(ctx: click.Context, kind: str, name: str, profile: str | None, wait: bool) -> None:
    """Delete a resource; a job's replicas are stopped first."""
    client = _client(ctx)
    k = client.kind(kind)
    if wait:
        with console.status(f"deleting {k.display}/{name} ..."):
            client.delete(k, name, profile=profile, wait=True)
    else:
        client.delete(k, name, profile=profile)
    console.print(f"{k.display}/{name} deleted")


@click.command()
@click.argument("kind")
@click.argument("name")
@profile_option
@output_option()
@click.pass_context
def events(ctx: click.Context, kind: str, name: str, profile: str | None, output: str) -> None:
    """Events of a resource, oldest first."""
    items = _client(ctx).events(kind, name, profile=profile)
    if output == "json":
        emit_json({"kind": "EventList", "items": items})
    elif output == "yaml":
        emit_yaml({"kind": "EventList", "items": items})
    elif not items:
        console.print("no events")
    else:
        console.print(_events_table(items))


@click.command()
@output_option()
@click.pass_context
def clusters(ctx: click.Context, output: str) -> None:
    """Clusters with their capacity, what is in use and what is queued."""
    items = _client(ctx).clusters()
    if output == "json":
        emit_json({"kind": "ClusterList", "items": items})
        return
    if output == "yaml":
        emit_yaml({"kind": "ClusterList", "items": items})
        return
    console.print(clusters_table(items))


__all__ = ["TERMINAL", "apply", "clusters", "delete", "describe", "events", "get", "logs"]
