"""A small pipeline that uses every construct of lumiflow's pipeline DSL (Kubeflow Pipelines' words).

    lumi pipeline compile examples/pipelines/hello_pipeline.py -o hello.yaml

or, from Python::

    from lumiflow.pipelines import compiler
    compiler.write(compiler.compile(hello_pipeline), "hello.yaml")

Components ship as their function's source alone, so each one imports what it needs inside
its body (module-level imports are not available where it runs).
"""

from __future__ import annotations

from typing import NamedTuple

from lumiflow import dsl
from lumiflow.dsl import Dataset, Input, InputPath, Metrics, Model, Output, OutputPath


@dsl.component
def make_data(n_events: int, noise: float, data: Output[Dataset]) -> NamedTuple(
    "Summary", [("rows", int), ("mean", float)]
):
    """Synthetic events, one energy per line; returns how many and their mean."""
    import random

    rng = random.Random(7)
    values = [rng.gauss(100.0, 10.0 * noise) for _ in range(n_events)]
    with open(data.path, "w") as fh:
        fh.writelines(f"{v}\n" for v in values)
    data.metadata["rows"] = n_events
    return (n_events, sum(values) / n_events)


@dsl.component(packages_to_install=["numpy"])
def train(data: Input[Dataset], lr: float, model: Output[Model], metrics: Output[Metrics]) -> float:
    """'Trains' by fitting a mean with gradient steps; returns the final loss."""
    with open(data.path) as fh:
        values = [float(line) for line in fh]
    estimate = 0.0
    for _ in range(50):
        estimate -= lr * sum(estimate - v for v in values) / len(values)
    loss = sum((estimate - v) ** 2 for v in values) / len(values)
    with open(model.path, "w") as fh:
        fh.write(f"{estimate}\n")
    metrics.log_metric("loss", loss)
    metrics.log_metric("lr", lr)
    return loss


@dsl.component
def pick_best(losses: list, learning_rates: list) -> float:
    """The learning rate whose loss was lowest."""
    best = min(range(len(losses)), key=lambda i: float(losses[i]))
    return float(learning_rates[best]["lr"])


@dsl.component
def report(model: InputPath("Model"), page: OutputPath("Markdown"), verdict: str) -> None:
    """Path-based artifacts: the function gets plain paths."""
    with open(model) as fh:
        estimate = fh.read().strip()
    with open(page, "w") as fh:
        fh.write(f"# Model\n\nestimate: {estimate}\n\nverdict: {verdict}\n")


@dsl.component
def notify(message: str) -> str:
    print(message)
    return message


def pytorch_job(name: str, lr: str) -> dict:
    """A one-process PyTorchJob running the 3DGAN example's trainer with learning rate ``lr``."""
    container = {
        "name": "pytorch",
        "image": "python:3.11",
        "command": ["python", "train_torch.py", "--lr", lr],
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [container]}}}
            }
        },
    }


# ${inputs.NAME} is replaced by the step's argument NAME when the step runs.
TRAINING_JOB = pytorch_job("calo-train", "${inputs.lr}")

EXPERIMENT = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Experiment",
    "metadata": {"name": "calo-tune"},
    "spec": {
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
        "algorithm": {"algorithmName": "random"},
        "maxTrialCount": "${inputs.trials}",
        "parameters": [
            {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.1"}}
        ],
        "trialTemplate": {
            "trialParameters": [{"name": "lr", "reference": "lr"}],
            "trialSpec": pytorch_job("calo-trial", "${trialParameters.lr}"),
        },
    },
}


@dsl.pipeline(name="hello-pipeline", description="Every construct of the DSL in one pipeline.")
def hello_pipeline(n_events: int = 200, noise: float = 1.0, threshold: float = 50.0, trials: int = 4) -> None:
    done = notify(message="hello-pipeline finished").set_display_name("tell the team")
    with dsl.ExitHandler(done):
        data = make_data(n_events=n_events, noise=noise).set_caching_options(False)
        grid = [{"lr": 0.01}, {"lr": 0.05}, {"lr": 0.1}]
        with dsl.ParallelFor(grid, parallelism=2) as point:
            trained = (
                train(data=data.outputs["data"], lr=point.lr)
                .set_cpu_limit("2")
                .set_memory_limit("1Gi")
                .set_retry(1)
                .set_env_variable("OMP_NUM_THREADS", "2")
            )
        best = pick_best(losses=dsl.Collected(trained.outputs["Output"]), learning_rates=grid)
        with dsl.If(data.outputs["mean"] > threshold):
            job = dsl.training_job(TRAINING_JOB, arguments={"lr": best.output}).set_gpu_limit(1)
            with dsl.If(job.outputs["phase"] == "Succeeded"):
                tuned = dsl.experiment(EXPERIMENT, arguments={"trials": trials})
                notify(message="tuning done").after(tuned)
        with dsl.Elif(data.outputs["rows"] < 10):
            notify(message="too few events")
        with dsl.Else():
            final = train(data=data.outputs["data"], lr=0.01)
            report(model=final.outputs["model"], verdict="mean below threshold").after(best)
