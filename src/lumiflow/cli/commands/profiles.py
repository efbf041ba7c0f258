"""``lumi profiles``: group profiles, their quotas and members."""

from __future__ import annotations

from typing import Any

import click

from lumiflow.cli.output import console, emit_objects, output_option, table_for
from lumiflow.sdk import Client


def _client(ctx: click.Context) -> Client:
    return Client(home=ctx.obj.get("home"))


def _show(item: dict[str, Any], output: str) -> None:
    if not emit_objects([item], output, single=True):
        console.print(table_for("Profile", [item], show_profile=False))


def _contributor(value: str) -> tuple[str, str, str]:
    """``group:NAME[:edit|view]`` or ``user:NAME[:edit|view]``."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("group", "user"):
        raise click.BadParameter(f"{value!r}: use group:NAME[:edit|view] or user:NAME[:edit|view]")
    role = parts[2] if len(parts) == 3 else "edit"
    if role not in ("edit", "view"):
        raise click.BadParameter(f"{value!r}: the role is edit or view")
    return ("Group" if parts[0] == "group" else "User", parts[1], role)


@click.group()
def profiles() -> None:
    """Profiles: namespaces of a user or a group, with members and a quota."""


@profiles.command("create")
@click.argument("name")
@click.option("--owner-group", help="members of this group own the profile")
@click.option("--owner-user", help="this user owns the profile")
@click.option("--cpu", help="quota: cores (e.g. 8, 500m)")
@click.option("--memory", help="quota: memory (e.g. 32Gi)")
@click.option("--gpu", help="quota: GPUs")
@click.option("--max-workloads", type=int, help="quota: workloads running at once")
@click.option(
    "--contributor",
    "contributors",
    multiple=True,
    help="group:NAME[:edit|view] or user:NAME[:edit|view] (repeat for several)",
)
@click.option("--cluster", help="the profile's home cluster")
@output_option()
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    owner_group: str | None,
    owner_user: str | None,
    cpu: str | None,
    memory: str | None,
    gpu: str | None,
    max_workloads: int | None,
    contributors: tuple[str, ...],
    cluster: str | None,
    output: str,
) -> None:
    """Create a profile (admin)."""
    if bool(owner_group) == bool(owner_user):
        raise click.UsageError("give exactly one of --owner-group and --owner-user")
    item = _client(ctx).profiles.create(
        name,
        owner_group=owner_group,
        owner_user=owner_user,
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        max_workloads=max_workloads,
        contributors=[_contributor(c) for c in contributors],
        cluster=cluster,
    )
    _show(item, output)


@profiles.command("set-quota")
@click.argument("name")
@click.option("--cpu")
@click.option("--memory")
@click.option("--gpu")
@click.option("--max-workloads", type=int)
@output_option()
@click.pass_context
def set_quota(
    ctx: click.Context,
    name: str,
    cpu: str | None,
    memory: str | None,
    gpu: str | None,
    max_workloads: int | None,
    output: str,
) -> None:
    """Change a profile's quota (admin); resources not named keep their value."""
    client = _client(ctx)
    profile = client.profiles.get(name)
    hard = profile["spec"].setdefault("resourceQuotaSpec", {}).setdefault("hard", {})
    for key, value in (
        ("cpu", cpu),
        ("memory", memory),
        ("nvidia.com/gpu", gpu),
        ("workloads", None if max_workloads is None else str(max_workloads)),
    ):
        if value is not None:
            hard[key] = value
    _show(client.profiles.replace(profile), output)


@profiles.command("add-member")
@click.argument("name")
@click.argument("member")
@output_option()
@click.pass_context
def add_member(ctx: click.Context, name: str, member: str, output: str) -> None:
    """Add a contributor: MEMBER is group:NAME[:edit|view] or user:NAME[:edit|view] (profile owner)."""
    kind, who, role = _contributor(member)
    client = _client(ctx)
    profile = client.profiles.get(name)
    members = [c for c in profile["spec"].get("contributors", []) if (c["kind"], c["name"]) != (kind, who)]
    members.append({"kind": kind, "name": who, "role": role})
    profile["spec"]["contributors"] = members
    _show(client.profiles.replace(profile), output)


@profiles.command("remove-member")
@click.argument("name")
@click.argument("member")
@output_option()
@click.pass_context
def remove_member(ctx: click.Context, name: str, member: str, output: str) -> None:
    """Remove a contributor (group:NAME or user:NAME)."""
    kind, who, _ = _contributor(member if member.count(":") == 2 else member + ":edit")
    client = _client(ctx)
    profile = client.profiles.get(name)
    profile["spec"]["contributors"] = [
        c for c in profile["spec"].get("contributors", []) if (c["kind"], c["name"]) != (kind, who)
    ]
    _show(client.profiles.replace(profile), output)
