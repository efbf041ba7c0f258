"""Reading manifests (YAML or JSON, one or many documents) without trusting them.

PyYAML's ``safe_load`` refuses arbitrary objects but still builds the "billion laughs"
graph: a few hundred bytes of aliases that expand to gigabytes once the document is
serialised to JSON. Here the composed graph is measured with aliases expanded (in linear
time, memoised per node) and refused beyond :data:`MAX_NODES`; nesting deeper than
:data:`MAX_DEPTH` is refused too, for JSON as well as YAML.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from lumiflow.common.errors import BadRequest

MAX_NODES = 200_000
MAX_DEPTH = 64

#: Where a manifest was read from (set by ``lumi apply -f`` and ``Client.apply(path)``): on
#: the local cluster, a replica without ``workingDir`` starts in that folder, so that
#: relative paths in its command resolve next to the manifest, as a user expects.
SOURCE_DIR_ANNOTATION = "lumiflow.dev/source-dir"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps the YAML 1.1 booleans Kubernetes users expect but nothing more."""


def _expanded_size(node: yaml.Node, memo: dict[int, int], depth: int) -> int:
    if depth > MAX_DEPTH:
        raise BadRequest(f"document is nested deeper than {MAX_DEPTH} levels")
    key = id(node)
    if key in memo:
        return memo[key]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, depth + 1)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, depth + 1) + _expanded_size(v, memo, depth + 1)
    if size > MAX_NODES:
        raise BadRequest(f"document expands to more than {MAX_NODES} nodes (YAML alias bomb?)")
    memo[key] = size
    return size


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise BadRequest(f"document is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _yaml_error(exc: yaml.YAMLError, source: str) -> BadRequest:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return BadRequest(f"{source} is not valid YAML{where}: {problem}")


def load_documents(text: str, *, source: str = "manifest") -> list[dict[str, Any]]:
    """Parses every document in ``text``; empty documents are skipped.

    Raises :class:`BadRequest` naming the line of a syntax error, the document that is not a
    mapping, or the limit a hostile document crossed.
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(text)
        except RecursionError as exc:
            raise BadRequest(f"{source}: document is nested too deeply") from exc
        except ValueError:
            value = None  # YAML is a superset of JSON; let the YAML parser give the error
        else:
            _check_depth(value)
            docs = value if isinstance(value, list) else [value]
            if (
                isinstance(value, dict)
                and value.get("kind") == "List"
                and isinstance(value.get("items"), list)
            ):
                docs = value["items"]
            return [_ensure_mapping(doc, source, i) for i, doc in enumerate(docs)]
    out: list[dict[str, Any]] = []
    try:
        loader = _Loader(text)
        try:
            index = 0
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                _expanded_size(node, {}, 0)
                doc = loader.construct_document(node)
                if doc is not None:
                    if (
                        isinstance(doc, dict)
                        and doc.get("kind") == "List"
                        and isinstance(doc.get("items"), list)
                    ):
                        out.extend(_ensure_mapping(d, source, index) for d in doc["items"])
                    else:
                        out.append(_ensure_mapping(doc, source, index))
                index += 1
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    except RecursionError as exc:
        raise BadRequest(f"{source}: document is nested too deeply") from exc
    return out


def _ensure_mapping(doc: Any, source: str, index: int) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadRequest(
            f"{source}: document {index + 1} is a {type(doc).__name__}, expected a mapping "
            "with apiVersion, kind, metadata and spec"
        )
    return _jsonable(doc, source)


def _jsonable(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """YAML may produce dates and non-string keys; manifests are JSON, so convert or refuse."""
    try:
        return json.loads(json.dumps(doc, default=str))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{source}: document cannot be represented as JSON: {exc}") from exc


def parse_body(raw: bytes, content_type: str | None, *, source: str = "request body") -> Any:
    """Parses an HTTP body as JSON (default) or YAML (``application/yaml``)."""
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{source} is not UTF-8") from exc
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        docs = load_documents(text, source=source)
        if len(docs) != 1:
            raise BadRequest(f"{source} must hold exactly one document, found {len(docs)}")
        return docs[0]
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise BadRequest(f"{source} is nested too deeply") from exc
    except ValueError as exc:
        raise BadRequest(f"{source} is not valid JSON: {exc}") from exc
    _check_depth(value)
    return value


def with_source_dir(doc: dict[str, Any], directory: str) -> dict[str, Any]:
    """``doc`` annotated with the folder it came from (an annotation already there wins)."""
    metadata = doc.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return doc  # the server will say what is wrong with it
    annotations = metadata.get("annotations")
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict) or SOURCE_DIR_ANNOTATION in annotations:
        return doc
    return {**doc, "metadata": {**metadata, "annotations": {**annotations, SOURCE_DIR_ANNOTATION: directory}}}


def read_manifests(source: str, *, stdin_text: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Documents of a file, of every manifest in a folder, or of ``-`` (``stdin_text``), each
    with the name it was read from and annotated with its folder (see SOURCE_DIR_ANNOTATION).

    Raises BadRequest for a missing path, an empty folder or a document that cannot be read.
    """
    import os
    from pathlib import Path

    if source == "-":
        cwd = os.getcwd()
        return [("stdin", with_source_dir(d, cwd)) for d in load_documents(stdin_text or "", source="stdin")]
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES)
        if not files:
            raise BadRequest(f"{path}: no .yaml, .yml or .json files")
    elif path.exists():
        files = [path]
    else:
        raise BadRequest(f"{source}: no such file or directory", field="-f")
    out: list[tuple[str, dict[str, Any]]] = []
    for file in files:
        folder = str(file.resolve().parent)
        out.extend(
            (str(file), with_source_dir(d, folder))
            for d in load_documents(file.read_text(), source=str(file))
        )
    return out
