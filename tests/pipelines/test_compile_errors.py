"""Every mistake the compiler catches, from the DSL and from a hand-written spec: each one is a
CompileError (a ValidationFailed, so the API answers 422 with ``field``) naming the problem."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lumiflow import dsl
from lumiflow.common.errors import ValidationFailed
from lumiflow.dsl import Model, Output
from lumiflow.pipelines import compiler, spec
from tests.pipelines.test_dsl import echo, evaluate, fit, generate, total

pytestmark = pytest.mark.timeout(30)
ROOT = Path(__file__).resolve().parents[2]


def test_compile_error_is_a_validation_failure() -> None:
    assert issubclass(dsl.CompileError, ValidationFailed)
    error = dsl.CompileError("x", field="root.tasks.a")
    assert error.http_status == 422
    assert error.to_body()["field"] == "root.tasks.a"


# --- component definitions ----------------------------------------------------------------


def untyped(n, m: int) -> int:  # type: ignore[no-untyped-def]
    return m


def unknown_type(s: set) -> None:
    pass


def default_on_output(model: Output[Model] = None) -> None:  # type: ignore[assignment]
    pass


def bad_return(n: int) -> set:
    return set()


def artifact_return(n: int) -> Model:
    return Model()


def star_args(*values: int) -> None:
    pass


def bad_default(n: int = "three") -> None:  # type: ignore[assignment]
    pass


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (untyped, r"component untyped, parameter 'n' has no type annotation"),
        (unknown_type, r"component unknown_type, parameter 's': type <class 'set'> is not supported"),
        (
            default_on_output,
            r"component default_on_output, parameter 'model': an output cannot have a default",
        ),
        (bad_return, r"component bad_return: return type <class 'set'> is not supported"),
        (artifact_return, r"component artifact_return: return type .* is not supported"),
        (star_args, r"component star_args, parameter 'values': \*args and \*\*kwargs are not supported"),
        (bad_default, r"component bad_default, parameter 'n': default 'three' is not a int"),
    ],
)
def test_bad_component_definitions(func: Callable[..., Any], message: str) -> None:
    with pytest.raises(dsl.CompileError, match=message):
        dsl.component(func)


def test_a_component_names_module_level_names_it_cannot_use(tmp_path: Path) -> None:
    source = tmp_path / "uses_json.py"
    source.write_text(
        textwrap.dedent(
            """
            import json

            from lumiflow import dsl

            @dsl.component
            def dump(x: dict) -> str:
                return json.dumps(x)

            @dsl.component
            def fine(x: dict) -> str:
                import json

                return json.dumps(x)

            @dsl.pipeline
            def p() -> None:
                dump(x={})
            """
        )
    )
    with pytest.warns(dsl.ComponentSourceWarning, match=r"component dump uses module-level json") as caught:
        compiler.load_pipeline_file(source)
    assert len(caught) == 1


# --- wiring mistakes while the pipeline function runs -------------------------------------


def _positional(n: int) -> None:
    echo("hi")


def _unknown_input(n: int) -> None:
    echo(msg="hi")


def _missing(n: int) -> None:
    total()


def _several_outputs(n: int) -> None:
    echo(message=generate(n=n).output)


def _unknown_output(n: int) -> None:
    echo(message=generate(n=n).outputs["nope"])


def _passing_an_output(n: int) -> None:
    generate(n=n, data="x")


def _python_if(n: int) -> None:
    if echo(message="a").output == "a":
        echo(message="b")


def _formatted(n: int) -> None:
    echo(message=f"n={n}")


def _item_outside(n: int) -> None:
    with dsl.ParallelFor([1, 2]) as item:
        echo(message="in")
    echo(message=item)


def _elif_alone(n: int) -> None:
    with dsl.Elif(n == 1):
        echo(message="x")


def _inside_a_list(n: int) -> None:
    total(values=[n, 2])


def _raises(n: int) -> None:
    raise RuntimeError("oops")


def _not_json(n: int) -> None:
    echo(message=object())


def _exit_task_elsewhere(n: int) -> None:
    with dsl.If(n > 1):
        done = echo(message="bye")
    with dsl.ExitHandler(done):
        echo(message="work")


def _wrong_launch_kind(n: int) -> None:
    dsl.training_job({"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment"})


def _bad_resources(n: int) -> None:
    echo(message="x").set_memory_limit("lots")


def _bad_retries(n: int) -> None:
    echo(message="x").set_retry(-1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_positional, r"component echo: pass arguments by keyword inside a pipeline"),
        (_unknown_input, r"task echo \(echo\), argument 'msg': no such input \(inputs: message\)"),
        (_missing, r"task total \(total\): required input 'values' has no argument"),
        (
            _several_outputs,
            r"task generate \(generate\) has 2 outputs \(data, Output\): use .outputs\[name\]",
        ),
        (_unknown_output, r"task generate \(generate\) has no output 'nope' \(outputs: data, Output\)"),
        (_passing_an_output, r"argument 'data': 'data' is an output"),
        (_python_if, r"use dsl.If\(...\), not Python's if"),
        (_formatted, r"formatted into a string"),
        (_item_outside, r"the item of for-1 is used outside its dsl.ParallelFor"),
        (_elif_alone, r"dsl.Elif must follow a dsl.If or dsl.Elif block directly"),
        (_inside_a_list, r"argument 'values': a task output or parameter inside a list or dict"),
        (_raises, r"pipeline wiring: the pipeline function raised RuntimeError: oops"),
        (_not_json, r"argument 'message': object .* is not a JSON value"),
        (_exit_task_elsewhere, r"the exit task echo must be created just before the block"),
        (
            _wrong_launch_kind,
            r"dsl.training_job: the manifest's kind is Experiment; dsl.training_job takes a training job",
        ),
        (_bad_resources, r"task echo: memory 'lots'"),
        (_bad_retries, r"task echo: num_retries is a whole number >= 0"),
    ],
)
def test_wiring_mistakes(body: Callable[[int], None], message: str) -> None:
    with pytest.raises(dsl.CompileError, match=message):
        compiler.compile(dsl.pipeline(name="wiring")(body))


def test_dsl_words_outside_a_pipeline() -> None:
    with (
        pytest.raises(dsl.CompileError, match=r"dsl.If is used inside a @dsl.pipeline function"),
        dsl.If(dsl.PipelineParameter("n", "int") > 1),
    ):
        pass
    with pytest.raises(dsl.CompileError, match=r"dsl.training_job is used inside a @dsl.pipeline"):
        dsl.training_job({"kind": "PyTorchJob"})
    with pytest.raises(dsl.CompileError, match=r"is compiled, not called"):
        dsl.pipeline(_raises)(1)
    with pytest.raises(dsl.CompileError, match=r"_raises is not a pipeline: decorate it with @dsl.pipeline"):
        compiler.compile(_raises)  # type: ignore[arg-type]


# --- graph rules, from the DSL ------------------------------------------------------------


def _cycle(n: int) -> None:
    a = echo(message="a")
    b = echo(message="b")
    a.after(b)
    b.after(a)


def _parameter_types(n: int) -> None:
    echo(message=total(values=[1]).output)


def _artifact_types(n: int) -> None:
    evaluate(model=generate(n=n).outputs["data"])


def _parameter_into_artifact(n: int) -> None:
    evaluate(model=n)


def _bool_into_int(n: int) -> None:
    generate(n=True)


def _hidden_in_a_branch(n: int) -> None:
    with dsl.If(n > 1):
        inner = echo(message="x")
    echo(message=inner.output)


def _collected_outside_a_loop(n: int) -> None:
    made = total(values=[1])
    total(values=dsl.Collected(made.output))


def _exit_task_after_the_group(n: int) -> None:
    done = echo(message="bye")
    with dsl.ExitHandler(done):
        inner = echo(message="work")
    done.after(inner)


def _undeclared_placeholder(n: int) -> None:
    dsl.training_job({"kind": "PyTorchJob", "spec": {"x": "${inputs.lr}"}}, arguments={"epochs": n})


def _compare_str_with_number(n: int) -> None:
    with dsl.If(echo(message="x").output > 3):
        echo(message="y")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (_cycle, "root.tasks", r"the tasks form a cycle: echo(-2)? → echo(-2)? → echo"),
        (
            _parameter_types,
            "root.tasks.echo.arguments.message",
            r"task 'echo' \(echo\): input 'message' is str but output 'Output' of task 'total' is float",
        ),
        (
            _artifact_types,
            "root.tasks.evaluate.arguments.model",
            r"input 'model' expects Model but output 'data' of task 'generate' is a Dataset",
        ),
        (
            _parameter_into_artifact,
            "root.tasks.evaluate.arguments.model",
            r"input 'model' is an artifact \(Model\) and needs a task's artifact output",
        ),
        (
            _bool_into_int,
            "root.tasks.generate.arguments.n",
            r"input 'n' is int but constant True is bool",
        ),
        (
            _hidden_in_a_branch,
            "root.tasks.echo-2.arguments.message",
            r"task 'echo' is inside group 'condition-1' and its outputs are not visible here",
        ),
        (
            _collected_outside_a_loop,
            "root.tasks.total-2.arguments.values",
            r"dsl.Collected gathers the outputs of a task directly inside a ParallelFor",
        ),
        (
            _exit_task_after_the_group,
            "root.tasks.echo.dependsOn",
            r"exit task 'echo' must not depend on the group 'exit-handler-1' it handles",
        ),
        (
            _undeclared_placeholder,
            "components.training-job",
            r"the manifest uses \$\{inputs.lr\} but there is no input 'lr' \(inputs: epochs\)",
        ),
        (_compare_str_with_number, "root.tasks.condition-1.condition", r"cannot compare str with int"),
    ],
)
def test_graph_rules_at_compile_time(body: Callable[[int], None], field: str, message: str) -> None:
    with pytest.raises(dsl.CompileError, match=message) as caught:
        compiler.compile(dsl.pipeline(name="graph")(body))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"pipeline graph: {field}: ")


def test_what_is_allowed_across_types() -> None:
    @dsl.pipeline(name="allowed")
    def allowed(n: int = 2) -> None:
        made = generate(n=n)
        fit(data=made.outputs["data"], lr=n)  # int into float
        fit(data=made.outputs["data"], lr=7, epochs=n)
        evaluate(model=fit(data=made.outputs["data"], lr=0.1).outputs["model"])

    compiled = compiler.compile(allowed)
    assert compiled.root.tasks["fit"].arguments["lr"].parameter == "n"
    assert compiled.root.tasks["fit-2"].arguments["lr"].constant == 7


# --- a hand-written spec is held to the same rules ----------------------------------------


@dsl.pipeline(name="small")
def small(n: int = 3) -> None:
    made = generate(n=n)
    fit(data=made.outputs["data"], lr=made.outputs["Output"])
    with dsl.ParallelFor([1, 2]):
        echo(message="x")


def _mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(compiler.compile(small).to_dict())
    change(data)
    return data


def _tasks(data: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = data["root"]["tasks"]
    return tasks


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda d: _tasks(d)["fit"]["arguments"].update(
                data={"taskOutput": {"task": "ghost", "output": "data"}}
            ),
            "root.tasks.fit.arguments.data",
            r"unknown task 'ghost'",
        ),
        (
            lambda d: _tasks(d)["generate"]["arguments"].update(n={"parameter": "nope"}),
            "root.tasks.generate.arguments.n",
            r"unknown pipeline parameter 'nope' \(parameters: n\)",
        ),
        (
            lambda d: _tasks(d)["fit"]["arguments"].update(
                lr={"taskOutput": {"task": "generate", "output": "x"}}
            ),
            "root.tasks.fit.arguments.lr",
            r"task 'generate' \(generate\) has no output 'x' \(outputs: data, Output\)",
        ),
        (
            lambda d: _tasks(d)["generate"]["arguments"].clear(),
            "root.tasks.generate.arguments",
            r"task 'generate' \(generate\): required input 'n' has no argument",
        ),
        (
            lambda d: _tasks(d)["generate"].update(dependsOn=["fit"]),
            "root.tasks",
            r"cycle: (generate → fit → generate|fit → generate → fit)",
        ),
        (
            lambda d: _tasks(d)["generate"]["arguments"].update(n={"constant": "three"}),
            "root.tasks.generate.arguments.n",
            r"input 'n' is int but constant 'three' is str",
        ),
        (
            lambda d: _tasks(d)["generate"].update(component="nothing"),
            "root.tasks.generate.component",
            r"unknown component 'nothing'",
        ),
        (
            lambda d: _tasks(d)["generate"].update(dependsOn=["later"]),
            "root.tasks.generate.dependsOn",
            r"unknown task 'later'",
        ),
        (
            lambda d: _tasks(d)["generate"]["arguments"].update(n={"loopItem": {"loop": "for-1"}}),
            "root.tasks.generate.arguments.n",
            r"'for-1' is not a ParallelFor around this task",
        ),
        (
            lambda d: _tasks(d)["for-1"].update(exitHandler=True, exitTask="ghost", iterator=None),
            "root.tasks.for-1.exitTask",
            r"exit task 'ghost' must be another task of the same DAG",
        ),
        (
            lambda d: _tasks(d)["for-1"].update(iterator=None),
            "root.tasks.for-1",
            r"a group has exactly one of condition, iterator or exitHandler",
        ),
        (
            lambda d: _tasks(d)["for-1"]["iterator"].update(items={"constant": "abc"}),
            "root.tasks.for-1.iterator.items",
            r"a loop iterates over a list, not str",
        ),
    ],
)
def test_hand_written_spec_rules(change: Callable[[dict[str, Any]], None], field: str, message: str) -> None:
    data = _mutate(change)
    with pytest.raises(dsl.CompileError, match=message) as caught:
        spec.load(data)
    assert caught.value.field == field
    with pytest.raises(dsl.CompileError, match=message):  # model_validate checks the same
        spec.PipelineSpec.model_validate(data)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda d: d["components"]["generate"].update(sourceSha256="0" * 64),
            "components.generate",
            r"sourceSha256 does not match the source",
        ),
        (
            lambda d: _tasks(d)["generate"]["arguments"].update(n={"constant": 1, "parameter": "n"}),
            "root.tasks.generate.arguments.n",
            r"an argument has exactly one of parameter, constant, taskOutput, loopItem, collected",
        ),
        (
            lambda d: d["components"]["generate"]["inputs"]["n"].update(type="complex"),
            "components.generate.inputs.n.type",
            r"Input should be 'int', 'float'",
        ),
        (lambda d: d.update(name="Not A Name"), "", r"pipeline name 'Not A Name' must be a DNS-1123 label"),
        (lambda d: d.update(extra=1), "extra", r"unknown field"),
    ],
)
def test_hand_written_spec_schema(change: Callable[[dict[str, Any]], None], field: str, message: str) -> None:
    with pytest.raises(dsl.CompileError, match=message) as caught:
        spec.load(_mutate(change))
    assert (caught.value.field or "") == field


def test_loading_text_that_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(dsl.CompileError, match=r"not valid YAML"):
        spec.load("a: [b\n")
    with pytest.raises(dsl.CompileError, match=r"a pipeline spec is a mapping, not list"):
        spec.load("- 1\n- 2\n")
    with pytest.raises(dsl.CompileError, match=r"cannot read .*missing.yaml"):
        spec.load(tmp_path / "missing.yaml")


# --- pipeline files -----------------------------------------------------------------------


def test_load_pipeline_file_finds_the_pipeline() -> None:
    found = compiler.load_pipeline_file(ROOT / "examples" / "pipelines" / "hello_pipeline.py")
    assert found.name == "hello-pipeline"
    compiled = compiler.compile(found)
    kinds = {key: (c.launch.kind if c.launch else c.function) for key, c in compiled.components.items()}
    assert kinds["calo-train"] == "TrainingJob"
    assert kinds["calo-tune"] == "Experiment"
    groups = [name for groups, name, t in compiled.walk() if t.dag is not None]
    assert groups == ["exit-handler-1", "for-1", "condition-1", "condition-2", "condition-3", "condition-4"]


def test_load_pipeline_file_errors(tmp_path: Path) -> None:
    raising = tmp_path / "raising.py"
    raising.write_text("from lumiflow import dsl\n\nEVENTS = 1 / 0\n")
    with pytest.raises(dsl.CompileError) as caught:
        compiler.load_pipeline_file(raising)
    assert str(caught.value) == f"{raising}:3: importing it raised ZeroDivisionError: division by zero"

    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    with pytest.raises(dsl.CompileError, match=r"broken.py:1: importing it raised SyntaxError"):
        compiler.load_pipeline_file(broken)

    bad_component = tmp_path / "bad_component.py"
    bad_component.write_text("from lumiflow import dsl\n\n@dsl.component\ndef f(x):\n    return x\n")
    with pytest.raises(dsl.CompileError, match=r"bad_component.py: component f, parameter 'x' has no type"):
        compiler.load_pipeline_file(bad_component)

    several = tmp_path / "several.py"
    several.write_text(
        "from lumiflow import dsl\n\n@dsl.pipeline\ndef first() -> None: ...\n\n"
        "@dsl.pipeline(name='second-one')\ndef second() -> None: ...\n"
    )
    with pytest.raises(dsl.CompileError, match=r"several pipelines \(first, second\); say which one"):
        compiler.load_pipeline_file(several)
    assert compiler.load_pipeline_file(several, "second-one").name == "second-one"
    assert compiler.load_pipeline_file(several, "first").name == "first"
    with pytest.raises(dsl.CompileError, match=r"no pipeline named 'third' \(pipelines: first, second\)"):
        compiler.load_pipeline_file(several, "third")

    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(dsl.CompileError, match=r"empty.py: no @dsl.pipeline function"):
        compiler.load_pipeline_file(empty)
    with pytest.raises(dsl.CompileError, match=r"nowhere.py: no such file"):
        compiler.load_pipeline_file(tmp_path / "nowhere.py")
