"""Pipelines the dashboard's pipeline tests run (components import what they use inside their
body: they run as their own processes). User text with HTML in it goes everywhere a user can
put text: a parameter's value, an artifact's metadata, a task's display name."""

from __future__ import annotations

from typing import Any

from lumiflow import dsl
from lumiflow.dsl import Dataset, Input, Output
from lumiflow.pipelines import compiler

NOTE = "<img src=x onerror=window.pwned=7>"
BAD_NAME = "<b>boom</b> <script>window.pwned=8</script>"


@dsl.component
def make_lines(n: int, note: str, data: Output[Dataset]) -> None:
    with open(data.path, "w") as fh:
        for i in range(n):
            fh.write(f"line {i}\n")
    data.metadata["lines"] = n
    data.metadata["note"] = note


@dsl.component
def count_lines(data: Input[Dataset]) -> int:
    with open(data.path) as fh:
        return sum(1 for _ in fh)


@dsl.component
def big(n: int) -> str:
    return f"big {n}"


@dsl.component
def small(n: int) -> str:
    return f"small {n}"


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def boom(n: int) -> int:
    raise ValueError(f"boom at {n}")


@dsl.component
def announce(message: str) -> str:
    print(f"exit handler: {message}")
    return message


@dsl.pipeline(name="dashboard-demo")
def demo(n: int = 4, note: str = NOTE) -> None:
    """A condition with one branch skipped, a 3-item ParallelFor and a failing step, inside an
    ExitHandler whose exit step still runs."""
    done = announce(message="cleanup")
    with dsl.ExitHandler(done):
        lines = make_lines(n=n, note=note)
        counted = count_lines(data=lines.outputs["data"])
        with dsl.If(counted.output > 3):
            big(n=counted.output)
        with dsl.Else():
            small(n=counted.output)
        with dsl.ParallelFor([1, 2, 3]) as x:
            square(x=x)
        boom(n=counted.output).set_display_name(BAD_NAME)


@dsl.component
def nap(seconds: float) -> None:
    import time

    print("dozing off", flush=True)
    time.sleep(seconds)


@dsl.pipeline(name="napping")
def napping(seconds: float = 60.0) -> None:
    nap(seconds=seconds).set_caching_options(False)


def spec_of(func: Any) -> dict[str, Any]:
    return dict(compiler.compile(func).model_dump(mode="json", exclude_none=True))


def run_doc(name: str, func: Any | None = None, **spec: Any) -> dict[str, Any]:
    """A PipelineRun of ``func``'s compiled spec (or of what ``spec`` names)."""
    body = {"pipelineSpec": spec_of(func), **spec} if func is not None else spec
    return {"apiVersion": "lumiflow.dev/v1", "kind": "PipelineRun", "metadata": {"name": name}, "spec": body}
