"""Runs one pipeline step in a fresh process: ``python -m lumiflow.runtime.component TASK.json``.

The PipelineRun controller writes the task file: the component's source and function name,
its parameter values, and for each artifact the local path to read or write (input artifacts
are already where the path says; outputs are collected from their paths after the step, by
the platform, which computes their digests and stores them). This module defines the
function from its source, calls it with the inputs (artifact objects, or plain paths for
``InputPath``/``OutputPath``), and writes the result file: output parameters (the return
value, or a NamedTuple's fields) and the artifacts' metadata (``Metrics.log_metric`` values,
anything set on ``artifact.metadata``). An exception prints the step's traceback to the log
and exits 1. Standard library only (it runs inside the user's job).
"""

from __future__ import annotations
import __future__

import json
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Any

from lumiflow.runtime import types as artifact_types


def _artifact(spec: dict[str, Any]) -> Any:
    cls = artifact_types.ARTIFACT_TYPES.get(str(spec.get("type", "Artifact")), artifact_types.Artifact)
    values = {
        "name": spec.get("name", ""),
        "uri": spec.get("uri", ""),
        "path": spec.get("path", ""),
        "metadata": dict(spec.get("metadata") or {}),
    }
    return cls(name=values["name"], uri=values["uri"], metadata=values["metadata"], path=values["path"])


def _namespace() -> dict[str, Any]:
    """What a component's code may name without importing: the artifact types and markers,
    ``dsl`` and typing's names (KFP components are written the same way)."""
    ns: dict[str, Any] = {"__name__": "__lumiflow_component__", "typing": typing}
    ns.update(artifact_types.component_namespace())
    return ns


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def run(task: dict[str, Any]) -> dict[str, Any]:
    ns = _namespace()
    # Annotations are not evaluated: a component's signature may name anything.
    flags = __future__.annotations.compiler_flag
    code = compile(task["source"], f"<component {task['function']}>", "exec", flags=flags, dont_inherit=True)
    exec(code, ns)
    function = ns[task["function"]]
    kwargs: dict[str, Any] = dict(task.get("parameters") or {})
    objects: dict[str, Any] = {}
    for name, spec in (task.get("artifacts") or {}).items():
        path = spec.get("path") or ""
        if spec.get("direction") == "output" and path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if spec.get("mode") == "path":
            kwargs[name] = path
        else:
            objects[name] = kwargs[name] = _artifact({**spec, "name": name})
    returned = function(**kwargs)
    parameters: dict[str, Any] = {}
    names = list(task.get("returns") or [])
    if names == ["Output"]:
        parameters["Output"] = _jsonable(returned)
    elif names:
        fields = getattr(returned, "_asdict", None)
        values = fields() if fields is not None else dict(zip(names, returned, strict=False))
        parameters = {k: _jsonable(values.get(k)) for k in names}
    artifacts = {
        name: {"metadata": {k: _jsonable(v) for k, v in dict(getattr(obj, "metadata", {}) or {}).items()}}
        for name, obj in objects.items()
        if (task.get("artifacts") or {}).get(name, {}).get("direction") == "output"
    }
    return {"parameters": parameters, "artifacts": artifacts}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lumiflow.runtime.component TASK.json", file=sys.stderr)
        return 2
    task = json.loads(Path(args[0]).read_text())
    print(f"lumiflow: step {task.get('node', '?')} runs {task['function']}()", flush=True)
    try:
        result = run(task)
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    out = Path(task["result"])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
