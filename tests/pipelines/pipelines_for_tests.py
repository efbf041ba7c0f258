"""Pipelines the run tests submit (components must import what they use inside their body)."""

from __future__ import annotations

from lumiflow import dsl
from lumiflow.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component
def make_lines(n: int, data: Output[Dataset]) -> None:
    with open(data.path, "w") as fh:
        for i in range(n):
            fh.write(f"line {i}\n")
    data.metadata["lines"] = n


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
def square(x: int, marks: str) -> int:
    import os
    import time

    path = os.path.join(marks, f"square-{x}")
    with open(path + ".start", "w"):
        pass
    time.sleep(0.4)
    with open(path + ".end", "w"):
        pass
    return x * x


@dsl.component
def total(values: list) -> int:
    return sum(int(v) for v in values)


@dsl.component
def announce(message: str) -> str:
    print(f"exit handler: {message}")
    return message


@dsl.component
def boom(n: int) -> int:
    raise ValueError(f"boom at {n}")


@dsl.pipeline(name="control-flow")
def control_flow(n: int = 5, marks: str = "/tmp") -> None:
    done = announce(message="finished")
    with dsl.ExitHandler(done):
        lines = make_lines(n=n)
        counted = count_lines(data=lines.outputs["data"])
        with dsl.If(counted.output > 3):
            big(n=counted.output)
        with dsl.Else():
            small(n=counted.output)
        with dsl.ParallelFor([1, 2, 3, 4, 5], parallelism=2) as x:
            sq = square(x=x, marks=marks)
        total(values=dsl.Collected(sq.output))


@dsl.pipeline(name="failing")
def failing(n: int = 1) -> None:
    done = announce(message="cleanup")
    with dsl.ExitHandler(done):
        boom(n=n)


@dsl.component
def flaky(counter: str, fail_times: int) -> int:
    import os

    seen = 0
    if os.path.exists(counter):
        with open(counter) as fh:
            seen = int(fh.read())
    with open(counter, "w") as fh:
        fh.write(str(seen + 1))
    if seen < fail_times:
        raise RuntimeError(f"attempt {seen + 1} fails")
    return seen + 1


@dsl.pipeline(name="retrying")
def retrying(counter: str, fail_times: int = 2) -> None:
    flaky(counter=counter, fail_times=fail_times).set_retry(2)


@dsl.component
def train(data: Input[Dataset], lr: float, model: Output[Model], metrics: Output[Metrics]) -> float:
    with open(data.path) as fh:
        rows = fh.read().splitlines()
    with open(model.path, "w") as fh:
        fh.write(f"weights lr={lr} rows={len(rows)}\n")
    score = 1.0 / (1.0 + lr)
    metrics.log_metric("score", score)
    return score


@dsl.pipeline(name="cached")
def cached(n: int = 4, lr: float = 0.1) -> None:
    data = make_lines(n=n)
    train(data=data.outputs["data"], lr=lr)
