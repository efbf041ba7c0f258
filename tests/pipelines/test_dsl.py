"""The pipeline DSL and its compiler: every construct compiled to the exact spec, round trips,
and the errors a user meets (each one naming the problem)."""

from __future__ import annotations
import __future__

import copy
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from lumiflow import dsl
from lumiflow.dsl import Artifact, Dataset, Input, InputPath, Markdown, Metrics, Model, Output, OutputPath
from lumiflow.pipelines import compiler, spec

pytestmark = pytest.mark.timeout(30)


class Stats(NamedTuple):
    loss: float
    epochs: int


@dsl.component
def generate(n: int, data: Output[Dataset]) -> float:
    with open(data.path, "w") as fh:
        fh.write("\n".join(str(i) for i in range(n)))
    return n / 2


@dsl.component(packages_to_install=["numpy>=1.26"], base_image="python:3.11-slim")
def fit(
    data: Input[Dataset], lr: float, model: Output[Model], metrics: Output[Metrics], epochs: int = 3
) -> Stats:
    with open(model.path, "w") as fh:
        fh.write(f"lr={lr}")
    metrics.log_metric("loss", lr * 2)
    return (lr * 2, epochs)  # a plain tuple: Stats does not exist where the step runs


@dsl.component
def evaluate(model: InputPath("Model"), report: OutputPath("Markdown")) -> str:
    with open(model) as src, open(report, "w") as dst:
        dst.write("# " + src.read())
    return "ok"


@dsl.component
def echo(message: str) -> str:
    return message


@dsl.component
def total(values: list) -> float:
    return float(sum(values))


@dsl.component
def publish(thing: Input[Artifact]) -> None:
    print(thing.uri)


TRAINING_JOB = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "PyTorchJob",
    "metadata": {"name": "calo"},
    "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "pytorch", "image": "python:3.11", "command": ["python", "train.py", "--lr=${inputs.lr}"]}
    ]}}}}},
}  # fmt: skip
EXPERIMENT = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Experiment",
    "metadata": {"name": "tune"},
    "spec": {
        "maxTrialCount": "${inputs.trials}",
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
    },
}
GRID = [{"lr": 0.1, "tag": "a"}, {"lr": 0.2, "tag": "b"}]


@dsl.pipeline(name="Every_Construct", description="all of it")
def everything(threshold: float, grid: list, n_events: int = 100) -> None:
    bye = echo(message="bye")
    with dsl.ExitHandler(bye):
        gen = generate(n=n_events).set_caching_options(False).set_display_name("make data")
        with dsl.ParallelFor(GRID, parallelism=2) as point:
            fitted = (
                fit(data=gen.outputs["data"], lr=point.lr)
                .set_retry(3)
                .set_cpu_limit("2")
                .set_memory_request("4Gi")
                .set_gpu_limit(1)
                .set_env_variable("MODE", "fast")
            )
            echo(message=point.tag)
        summed = total(values=dsl.Collected(fitted.outputs["loss"]))
        best = fit(data=gen.outputs["data"], lr=gen.outputs["Output"], epochs=5)
        with dsl.If(summed.output > threshold):
            checked = evaluate(model=best.outputs["model"])
            publish(thing=checked.outputs["report"])
        with dsl.Elif(summed.output == 0):
            echo(message="zero")
        with dsl.Else():
            echo(message="small").after(best)
        with dsl.ParallelFor(grid) as item:
            echo(message=item)
        job = dsl.training_job(TRAINING_JOB, arguments={"lr": best.outputs["loss"]})
        dsl.experiment(EXPERIMENT, name="tune-it", arguments={"trials": n_events}).after(job)
        with dsl.Condition(job.outputs["phase"] != "Failed"):
            echo(message=job.outputs["job_name"])


def task(
    component: str | None, arguments: dict[str, Any], depends: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    out = {
        "component": component,
        "dag": None,
        "arguments": arguments,
        "dependsOn": depends or [],
        "condition": None,
        "iterator": None,
        "exitHandler": False,
        "exitTask": None,
        "caching": True,
        "retries": 0,
        "displayName": None,
        "resources": {},
        "env": {},
    }
    out.update(extra)
    return out


def group(tasks: dict[str, Any], depends: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return task(None, {}, depends, dag={"tasks": tasks}, **extra)


def const(value: Any) -> dict[str, Any]:
    return {"constant": value}


def out(task_name: str, output: str = "Output") -> dict[str, Any]:
    return {"taskOutput": {"task": task_name, "output": output}}


def param(name: str) -> dict[str, Any]:
    return {"parameter": name}


C1 = {"op": ">", "left": out("total"), "right": param("threshold")}
C2 = {"op": "==", "left": out("total"), "right": const(0)}

EXPECTED_ROOT = {
    "tasks": {
        "echo": task("echo", {"message": const("bye")}),
        "exit-handler-1": group(
            {
                "generate": task(
                    "generate", {"n": param("n_events")}, caching=False, displayName="make data"
                ),
                "for-1": group(
                    {
                        "fit": task(
                            "fit",
                            {
                                "data": out("generate", "data"),
                                "lr": {"loopItem": {"loop": "for-1", "field": "lr"}},
                            },
                            retries=3,
                            resources={"cpu": "2", "memory": "4Gi", "gpu": 1},
                            env={"MODE": "fast"},
                        ),
                        "echo-2": task("echo", {"message": {"loopItem": {"loop": "for-1", "field": "tag"}}}),
                    },
                    ["generate"],
                    iterator={"items": const(GRID), "parallelism": 2},
                ),
                "total": task(
                    "total", {"values": {"collected": {"task": "fit", "output": "loss"}}}, ["for-1"]
                ),
                "fit-2": task(
                    "fit",
                    {"data": out("generate", "data"), "lr": out("generate"), "epochs": const(5)},
                    ["generate"],
                ),
                "condition-1": group(
                    {
                        "evaluate": task("evaluate", {"model": out("fit-2", "model")}),
                        "publish": task("publish", {"thing": out("evaluate", "report")}, ["evaluate"]),
                    },
                    ["fit-2", "total"],
                    condition=C1,
                ),
                "condition-2": group(
                    {"echo-3": task("echo", {"message": const("zero")})},
                    ["total"],
                    condition={"op": "and", "args": [{"op": "not", "arg": C1}, C2]},
                ),
                "condition-3": group(
                    {"echo-4": task("echo", {"message": const("small")})},
                    ["fit-2", "total"],
                    condition={"op": "and", "args": [{"op": "not", "arg": C1}, {"op": "not", "arg": C2}]},
                ),
                "for-2": group(
                    {"echo-5": task("echo", {"message": {"loopItem": {"loop": "for-2", "field": None}}})},
                    iterator={"items": param("grid"), "parallelism": 0},
                ),
                "calo": task("calo", {"lr": out("fit-2", "loss")}, ["fit-2"]),
                "tune-it": task("tune-it", {"trials": param("n_events")}, ["calo"]),
                "condition-4": group(
                    {"echo-6": task("echo", {"message": out("calo", "job_name")})},
                    ["calo"],
                    condition={"op": "!=", "left": out("calo", "phase"), "right": const("Failed")},
                ),
            },
            exitHandler=True,
            exitTask="echo",
        ),
    }
}


def test_every_construct_compiles_to_the_exact_spec() -> None:
    compiled = compiler.compile(everything)
    data = compiled.to_dict()
    assert data["schemaVersion"] == "lumiflow.dev/pipeline/v1"
    assert data["name"] == "every-construct"
    assert data["description"] == "all of it"
    assert data["parameters"] == {
        "threshold": {"type": "float"},
        "grid": {"type": "list"},
        "n_events": {"type": "int", "default": 100},
    }
    assert list(data["components"]) == [
        "echo",
        "generate",
        "fit",
        "total",
        "evaluate",
        "publish",
        "calo",
        "tune-it",
    ]
    assert data["root"] == EXPECTED_ROOT


def test_components_record_source_interface_and_launch() -> None:
    components = compiler.compile(everything).to_dict()["components"]
    fit_spec = components["fit"]
    assert fit_spec["function"] == "fit"
    assert fit_spec["source"].startswith("def fit(\n    data: Input[Dataset], lr: float,")
    assert "@dsl.component" not in fit_spec["source"]
    assert fit_spec["sourceSha256"] == spec.source_sha256(fit_spec["source"])
    assert fit_spec["packagesToInstall"] == ["numpy>=1.26"]
    assert fit_spec["baseImage"] == "python:3.11-slim"
    assert fit_spec["inputs"] == {
        "data": {"kind": "artifact", "artifactType": "Dataset", "mode": "object"},
        "lr": {"kind": "parameter", "type": "float"},
        "epochs": {"kind": "parameter", "type": "int", "default": 3},
    }
    assert fit_spec["outputs"] == {
        "model": {"kind": "artifact", "artifactType": "Model", "mode": "object"},
        "metrics": {"kind": "artifact", "artifactType": "Metrics", "mode": "object"},
        "loss": {"kind": "parameter", "type": "float"},
        "epochs": {"kind": "parameter", "type": "int"},
    }
    assert fit_spec["launch"] is None
    evaluate_spec = components["evaluate"]
    assert evaluate_spec["inputs"] == {"model": {"kind": "artifact", "artifactType": "Model", "mode": "path"}}
    assert evaluate_spec["outputs"] == {
        "report": {"kind": "artifact", "artifactType": "Markdown", "mode": "path"},
        "Output": {"kind": "parameter", "type": "str"},
    }
    assert components["generate"]["packagesToInstall"] == []
    assert components["generate"]["baseImage"] is None
    calo = components["calo"]
    assert calo["function"] is None
    assert calo["source"] is None
    assert calo["launch"] == {"kind": "TrainingJob", "manifest": TRAINING_JOB}
    assert calo["inputs"] == {"lr": {"kind": "parameter", "type": "float"}}
    assert calo["outputs"] == {
        "job_name": {"kind": "parameter", "type": "str"},
        "phase": {"kind": "parameter", "type": "str"},
        "checkpoints": {"kind": "artifact", "artifactType": "Model", "mode": "object"},
    }
    assert calo["sourceSha256"] == spec.manifest_sha256(calo["launch"])
    tune = components["tune-it"]
    assert tune["launch"]["kind"] == "Experiment"
    assert tune["outputs"] == {
        "best_parameters": {"kind": "parameter", "type": "dict"},
        "best_value": {"kind": "parameter", "type": "float"},
    }


def test_yaml_round_trip(tmp_path: Path) -> None:
    compiled = compiler.compile(everything)
    path = compiler.write(compiled, tmp_path / "out" / "everything.yaml")
    text = path.read_text()
    assert "source: |" in text  # sources stay readable
    assert spec.load(path) == compiled
    assert spec.load(str(path)) == compiled
    assert spec.load(text) == compiled
    assert spec.load(compiled.to_dict()) == compiled
    assert spec.PipelineSpec.model_validate(compiled.to_dict()) == compiled
    assert spec.load(compiled.model_dump(mode="json", exclude_none=True)) == compiled  # the API stores this


def test_kfp_compiler_spelling(tmp_path: Path) -> None:
    target = tmp_path / "p.yaml"
    compiled = compiler.Compiler().compile(everything, target)
    assert spec.load(target) == compiled


def test_dependencies_are_completed_when_a_hand_written_spec_is_loaded() -> None:
    data = compiler.compile(everything).to_dict()

    def strip(dag: dict[str, Any]) -> None:
        for t in dag["tasks"].values():
            t.pop("dependsOn", None)
            if t.get("dag"):
                strip(t["dag"])

    strip(data["root"])
    expected = copy.deepcopy(EXPECTED_ROOT)
    inner = expected["tasks"]["exit-handler-1"]["dag"]["tasks"]
    inner["tune-it"]["dependsOn"] = []  # explicit .after() edges are the file's to say
    inner["condition-3"]["dependsOn"] = ["total"]
    assert spec.load(data).to_dict()["root"] == expected


# --- components as plain Python -----------------------------------------------------------


def test_a_component_called_outside_a_pipeline_runs_the_function(tmp_path: Path) -> None:
    data = Dataset(uri=(tmp_path / "data.txt").as_uri())
    assert data.path == str(tmp_path / "data.txt")
    assert generate(4, data) == 2.0
    assert (tmp_path / "data.txt").read_text() == "0\n1\n2\n3"
    model, metrics = Model(path=str(tmp_path / "model")), Metrics()
    assert fit(data, 0.5, model, metrics) == Stats(1.0, 3)
    assert metrics.metadata == {"loss": 1.0}
    assert evaluate(str(tmp_path / "model"), str(tmp_path / "report.md")) == "ok"
    assert (tmp_path / "report.md").read_text() == "# lr=0.5"
    assert echo(message="hi") == "hi"
    assert echo.__name__ == "echo"


def test_the_recorded_source_runs_on_its_own(tmp_path: Path) -> None:
    """What the component runner does: the source alone, in the DSL's namespace."""
    components = compiler.compile(everything).components
    (tmp_path / "data").write_text("1\n2\n")
    results = {}
    for key, kwargs in (
        (
            "fit",
            {
                "data": Dataset(path=str(tmp_path / "data")),
                "lr": 0.25,
                "model": Model(path=str(tmp_path / "m")),
            },
        ),
        ("evaluate", {"model": str(tmp_path / "m"), "report": str(tmp_path / "r.md")}),
    ):
        component = components[key]
        assert component.source is not None
        assert component.function is not None
        namespace = dsl.component_namespace()
        code = compile(
            component.source, key, "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True
        )
        exec(code, namespace)
        if key == "fit":
            kwargs["metrics"] = Metrics()
        results[key] = namespace[component.function](**kwargs)
    assert results == {"fit": (0.5, 3), "evaluate": "ok"}
    assert (tmp_path / "r.md").read_text() == "# lr=0.25"


def test_metrics_and_artifacts() -> None:
    metrics = Metrics(name="m")
    metrics.log_metric("accuracy", 0.93)
    metrics.log_metric("epochs", 3)
    assert metrics.metadata == {"accuracy": 0.93, "epochs": 3.0}
    with pytest.raises(TypeError, match="must be a number"):
        metrics.log_metric("bad", "high")  # type: ignore[arg-type]
    cm = dsl.ClassificationMetrics()
    cm.log_roc_curve([0.0, 0.5], [0.0, 0.9], [1.0, 0.5])
    cm.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
    cm.log_confusion_matrix_cell("cat", "dog", 3)
    assert cm.metadata["confidenceMetrics"][1] == {
        "confidenceThreshold": 0.5,
        "falsePositiveRate": 0.5,
        "recall": 0.9,
    }
    assert cm.metadata["confusionMatrix"]["rows"] == [{"row": [8, 3]}, {"row": [1, 9]}]
    assert Dataset.schema_title == "system.Dataset"
    assert dsl.ARTIFACT_TYPES["Markdown"] is Markdown
    restored = Artifact.from_dict(Model(name="m", uri="s3://b/m", metadata={"a": 1}).to_dict())
    assert isinstance(restored, Model)
    assert (restored.name, restored.uri, restored.path, restored.metadata) == ("m", "s3://b/m", "", {"a": 1})


def test_annotations_are_introspectable() -> None:
    assert dsl.artifact_annotation(Input[Dataset]) == ("input", Dataset)
    assert dsl.artifact_annotation(Output[Model]) == ("output", Model)
    assert dsl.artifact_annotation(Metrics) == ("input", Metrics)
    assert dsl.artifact_annotation(int) is None
    assert dsl.artifact_annotation(InputPath("Dataset")) is None
    assert dsl.path_annotation(InputPath("Dataset")) == ("input", Dataset)
    assert dsl.path_annotation(OutputPath("system.Model")) == ("output", Model)
    assert dsl.path_annotation(OutputPath(Metrics)) == ("output", Metrics)
    with pytest.raises(TypeError, match="unknown artifact type 'CSV'"):
        InputPath("CSV")
    namespace = dsl.component_namespace()
    assert namespace["Output"] is Output
    assert namespace["dsl"].Dataset is Dataset


def test_task_outputs_and_defaults() -> None:
    seen: dict[str, Any] = {}

    @dsl.pipeline(name="outputs")
    def outputs(n: int = 1) -> None:
        made = generate(n=n)
        seen["names"] = list(made.outputs)
        seen["has"] = ("data" in made.outputs, "nope" in made.outputs)
        seen["output"] = repr(echo(message="x").output)
        fit(data=made.outputs["data"], lr=made.outputs["Output"])  # epochs keeps its default

    compiled = compiler.compile(outputs)
    assert seen == {
        "names": ["data", "Output"],
        "has": (True, False),
        "output": "<output Output of task echo>",
    }
    assert "epochs" not in compiled.root.tasks["fit"].arguments
    assert compiled.components["fit"].inputs["epochs"].isOptional
    assert compiled.components["fit"].inputs["epochs"].default == 3
