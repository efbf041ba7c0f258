"""``lumi``: the command line, a thin face over the SDK (and, for ``up``, the server)."""

from __future__ import annotations

import sys
from typing import Any

import click

from lumiflow.cli.commands import auth, pipelines, profiles, resources, server, tuning
from lumiflow.cli.output import fail
from lumiflow.common.errors import LumiflowError
from lumiflow.common.version import __version__


class _Group(click.Group):
    """Turns every lumiflow error into one red line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LumiflowError as exc:
            fail(exc.message, field=exc.field)
        except KeyboardInterrupt:
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="lumiflow")
@click.option(
    "--home",
    envvar="LUMIFLOW_HOME",
    type=click.Path(file_okay=False),
    default=None,
    help="lumiflow's home folder (default ~/.lumiflow): config, database, logs",
)
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """lumiflow — a centralized machine-learning platform with Kubeflow's semantics.

    \b
    Start:     lumi up                 (prints the URL and the admin token)
    Submit:    lumi apply -f job.yaml
    Watch:     lumi get trainingjobs   lumi logs trainingjob NAME -f
    Tune:      lumi apply -f experiment.yaml; lumi tune status NAME
    Pipelines: lumi pipeline upload p.py --name P; lumi run create P --wait
    """
    ctx.obj = {"home": home}


for command in (
    server.up,
    server.down,
    server.status,
    server.db,
    auth.login,
    auth.whoami,
    auth.users,
    auth.tokens,
    profiles.profiles,
    resources.apply,
    resources.get,
    resources.describe,
    resources.logs,
    resources.delete,
    resources.events,
    resources.clusters,
    tuning.tune,
    tuning.metrics,
    pipelines.pipeline,
    pipelines.run,
    pipelines.lineage,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
