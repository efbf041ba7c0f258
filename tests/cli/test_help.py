"""Every command answers --help."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from lumiflow.cli.main import main

pytestmark = pytest.mark.timeout(30)


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += walk(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", walk(main), ids=lambda p: " ".join(p) or "lumi")
def test_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3
