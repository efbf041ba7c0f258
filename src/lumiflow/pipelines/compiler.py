"""Turns a ``@dsl.pipeline`` function into a checked :class:`PipelineSpec` (and YAML).

The compiler runs the pipeline function once with placeholders for its parameters; every
component call records a task, every ``with`` block a group. The resulting mapping is then
validated by :class:`PipelineSpec` itself, so a compiled spec and a hand-written one pass the
same rules (see :mod:`lumiflow.pipelines.spec`).

:func:`load_pipeline_file` imports a user's ``.py`` file by path for the CLI; a file that
fails to import becomes a :class:`CompileError` that names the file, the line and the exception
(no traceback dump).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

from lumiflow.pipelines import dsl
from lumiflow.pipelines.dsl import Builder, CompileError, Pipeline, PipelineTask
from lumiflow.pipelines.spec import SCHEMA_VERSION, PipelineSpec, dump_yaml, validate

__all__ = ["CompileError", "Compiler", "compile", "load_pipeline_file", "write"]


def compile(pipeline_func: Pipeline) -> PipelineSpec:
    """The spec of a ``@dsl.pipeline`` function; raises :class:`CompileError`."""
    if not isinstance(pipeline_func, Pipeline):
        what = getattr(pipeline_func, "__name__", repr(pipeline_func))
        raise CompileError(f"{what} is not a pipeline: decorate it with @dsl.pipeline")
    builder = dsl.build(pipeline_func)
    data = _spec(builder)
    return validate(data, where=f"pipeline {pipeline_func.name}: ")


def write(spec: PipelineSpec, path: str | Path) -> Path:
    """Write the spec as YAML (parent folders created); :func:`lumiflow.pipelines.spec.load` reads it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_yaml(spec), encoding="utf-8")
    return target


class Compiler:
    """KFP's spelling: ``Compiler().compile(pipeline_func, package_path)``."""

    def compile(self, pipeline_func: Pipeline, package_path: str | Path | None = None) -> PipelineSpec:
        spec = compile(pipeline_func)
        if package_path is not None:
            write(spec, package_path)
        return spec


def load_pipeline_file(path: str | Path, name: str | None = None) -> Pipeline:
    """Import a ``.py`` file and return its ``@dsl.pipeline`` (the only one, or the one called
    ``name``: its variable, function or pipeline name)."""
    file = Path(path)
    if not file.is_file():
        raise CompileError(f"{file}: no such file")
    module_name = "lumiflow_pipeline_" + hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise CompileError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # NamedTuple annotations resolve through sys.modules
    folder = str(file.resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours, as when run as a script
    try:
        spec.loader.exec_module(module)
    except CompileError as exc:
        sys.modules.pop(module_name, None)
        raise CompileError(f"{file}: {exc.message}", field=exc.field) from None
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise CompileError(f"{file}{_line_of(exc, file)}: importing it raised {_describe(exc)}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    found = {attr: value for attr, value in vars(module).items() if isinstance(value, Pipeline)}
    own = {a: p for a, p in found.items() if p.python_func.__module__ == module_name}
    candidates = own or found
    if name is not None:
        matches = [p for a, p in candidates.items() if name in (a, p.python_func.__name__, p.name)]
        if not matches:
            known = ", ".join(candidates) or "none"
            raise CompileError(f"{file}: no pipeline named {name!r} (pipelines: {known})")
        return matches[0]
    if not candidates:
        raise CompileError(f"{file}: no @dsl.pipeline function")
    if len(candidates) > 1:
        raise CompileError(f"{file}: several pipelines ({', '.join(candidates)}); say which one")
    return next(iter(candidates.values()))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _line_of(exc: BaseException, file: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f":{exc.lineno}"
    target = str(file.resolve())
    lines = [
        f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename and _same(f.filename, target)
    ]
    return f":{lines[-1]}" if lines and lines[-1] else ""


def _same(filename: str, target: str) -> bool:
    try:
        return str(Path(filename).resolve()) == target
    except OSError:
        return False


# --- the spec mapping ---------------------------------------------------------------------


def _spec(builder: Builder) -> dict[str, Any]:
    pipeline = builder.pipeline
    deps = _lifted_after(builder.tasks)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "name": pipeline.name,
        "description": pipeline.description,
        "parameters": {
            n: {"type": io.type, **({"default": io.default} if io.optional else {})}
            for n, io in pipeline.parameters.items()
        },
        "components": {key: component.spec() for key, component in builder.components.items()},
        "root": _dag(builder.root, builder, deps),
    }


def _path(node: Any) -> list[Any]:
    """The groups from the root down to ``node``, then ``node``."""
    chain = [node]
    group = node.group if isinstance(node, PipelineTask) else node.parent
    while group is not None:
        chain.append(group)
        group = group.parent
    return chain[::-1]


def _lifted_after(tasks: list[PipelineTask]) -> dict[int, set[str]]:
    """``.after()`` edges, each moved to the DAG both ends share: ``id(member) → names``.

    A task inside a group that must run after a task outside it makes the group wait; a task
    that runs after a task inside another group waits for that whole group.
    """
    deps: dict[int, set[str]] = {}
    for task in tasks:
        mine = _path(task)
        for other in task.after_tasks:
            theirs = _path(other)
            if theirs[0] is not mine[0]:
                raise CompileError(
                    f"task {task.name} runs .after() a task of another pipeline ({other.name})"
                )
            k = 0
            while mine[k] is theirs[k]:
                k += 1
            deps.setdefault(id(mine[k]), set()).add(theirs[k].name)
    return deps


def _dag(group: Any, builder: Builder, deps: dict[int, set[str]]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for child in group.children:
        after = sorted(deps.get(id(child), ()))
        if isinstance(child, PipelineTask):
            tasks[child.name] = {
                "component": builder.key(child.component),
                "dag": None,
                "arguments": dict(child.arguments),
                "dependsOn": after,
                "caching": child.caching,
                "retries": child.retries,
                "displayName": child.display_name,
                "resources": dict(child.resources),
                "env": dict(child.env),
            }
        else:
            tasks[child.name] = {
                "component": None,
                "dag": _dag(child, builder, deps),
                "dependsOn": after,
                **child.data,
            }
    return {"tasks": tasks}
