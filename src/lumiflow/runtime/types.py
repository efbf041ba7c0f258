"""Artifact classes and the annotations a pipeline component declares its inputs and outputs with.

These are Kubeflow Pipelines v2's words (``Input[Dataset]``, ``Output[Model]``,
``InputPath("Dataset")``, ``Metrics.log_metric``) so that a KFP component reads the same here.
The module lives in :mod:`lumiflow.runtime` and imports only the standard library, because the
component runner imports it inside the job that runs the component; the pipeline compiler
(:mod:`lumiflow.pipelines`) imports it on the user's machine to read the annotations.

``Input[T]`` and ``Output[T]`` are ``typing.Annotated[T, marker]`` (KFP does the same), so a type
checker sees the artifact class itself: ``data.path`` and ``metrics.log_metric`` are checked.
``InputPath``/``OutputPath`` are instances used as annotations: the function receives a plain
``str`` path instead of an artifact object (KFP's path-based components).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import unquote, urlparse

__all__ = [
    "ARTIFACT_TYPES",
    "HTML",
    "Artifact",
    "ClassificationMetrics",
    "Dataset",
    "Input",
    "InputPath",
    "Markdown",
    "Metrics",
    "Model",
    "Output",
    "OutputPath",
    "artifact_annotation",
    "artifact_class",
    "component_namespace",
    "path_annotation",
]

Direction = Literal["input", "output"]


def _local_path(uri: str) -> str:
    """The local path of a ``file://`` URI or of a plain path; ``""`` for remote schemes."""
    if not uri:
        return ""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:2] == ":"):  # a path (or C:\...)
        return uri
    return ""


class Artifact:
    """A file or directory a component reads or writes, with its URI and free-form metadata.

    ``path`` is where the component finds (input) or writes (output) the data on its local file
    system; the runner sets it. When only ``uri`` is given and it is local (``file://`` or a plain
    path), ``path`` is derived from it.
    """

    schema_title: ClassVar[str] = "system.Artifact"
    schema_version: ClassVar[str] = "0.0.1"

    def __init__(
        self,
        name: str = "",
        uri: str = "",
        metadata: dict[str, Any] | None = None,
        *,
        path: str = "",
    ) -> None:
        self.name = name
        self.uri = uri
        self.path = path or _local_path(uri)
        self.metadata: dict[str, Any] = dict(metadata) if metadata else {}

    @classmethod
    def type_name(cls) -> str:
        """The short name (``Dataset``) the pipeline spec records as ``artifactType``."""
        return cls.schema_title.split(".", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the runner writes it for the platform."""
        return {
            "type": self.type_name(),
            "name": self.name,
            "uri": self.uri,
            "path": self.path,
            "metadata": self.metadata,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Artifact:
        """The inverse of :meth:`to_dict`; the class is chosen by ``type`` (default Artifact)."""
        cls = artifact_class(str(data.get("type") or "Artifact"))
        return cls(
            name=str(data.get("name") or ""),
            uri=str(data.get("uri") or ""),
            metadata=dict(data.get("metadata") or {}),
            path=str(data.get("path") or ""),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uri={self.uri!r}, path={self.path!r})"


class Dataset(Artifact):
    schema_title: ClassVar[str] = "system.Dataset"


class Model(Artifact):
    schema_title: ClassVar[str] = "system.Model"


class Metrics(Artifact):
    """Scalar metrics of a step: ``metrics.log_metric("accuracy", 0.93)``."""

    schema_title: ClassVar[str] = "system.Metrics"

    def log_metric(self, name: str, value: float) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a metric needs a non-empty name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"metric {name!r}: value must be a number, not {type(value).__name__}")
        self.metadata[name] = float(value)


class ClassificationMetrics(Artifact):
    """ROC curve and confusion matrix, stored in ``metadata`` under KFP's keys."""

    schema_title: ClassVar[str] = "system.ClassificationMetrics"

    def log_roc_data_point(self, fpr: float, tpr: float, threshold: float) -> None:
        points = self.metadata.setdefault("confidenceMetrics", [])
        points.append(
            {"confidenceThreshold": float(threshold), "falsePositiveRate": float(fpr), "recall": float(tpr)}
        )

    def log_roc_curve(self, fpr: Sequence[float], tpr: Sequence[float], threshold: Sequence[float]) -> None:
        if not len(fpr) == len(tpr) == len(threshold):
            raise ValueError("fpr, tpr and threshold must have the same length")
        for f, t, th in zip(fpr, tpr, threshold, strict=True):
            self.log_roc_data_point(f, t, th)

    def set_confusion_matrix_categories(self, categories: Sequence[str]) -> None:
        size = len(categories)
        self.metadata["confusionMatrix"] = {
            "annotationSpecs": [{"displayName": str(c)} for c in categories],
            "rows": [{"row": [0] * size} for _ in range(size)],
        }

    def _matrix(self) -> tuple[list[str], list[dict[str, list[int]]]]:
        matrix = self.metadata.get("confusionMatrix")
        if not matrix:
            raise ValueError("call set_confusion_matrix_categories first")
        return [spec["displayName"] for spec in matrix["annotationSpecs"]], matrix["rows"]

    def log_confusion_matrix_row(self, row_category: str, row: Sequence[int]) -> None:
        categories, rows = self._matrix()
        if len(row) != len(categories):
            raise ValueError(f"row has {len(row)} values, the matrix has {len(categories)} categories")
        rows[categories.index(row_category)]["row"] = [int(v) for v in row]

    def log_confusion_matrix_cell(self, row_category: str, col_category: str, value: int) -> None:
        categories, rows = self._matrix()
        rows[categories.index(row_category)]["row"][categories.index(col_category)] = int(value)

    def log_confusion_matrix(self, categories: Sequence[str], matrix: Sequence[Sequence[int]]) -> None:
        self.set_confusion_matrix_categories(categories)
        if len(matrix) != len(categories):
            raise ValueError(f"matrix has {len(matrix)} rows, there are {len(categories)} categories")
        for category, row in zip(categories, matrix, strict=True):
            self.log_confusion_matrix_row(category, row)


class HTML(Artifact):
    schema_title: ClassVar[str] = "system.HTML"


class Markdown(Artifact):
    schema_title: ClassVar[str] = "system.Markdown"


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.type_name(): cls for cls in (Artifact, Dataset, Model, Metrics, ClassificationMetrics, HTML, Markdown)
}


def artifact_class(name: str | type[Artifact]) -> type[Artifact]:
    """The artifact class named ``Dataset`` or ``system.Dataset`` (or the class itself).

    Raises ``TypeError`` naming the known types for anything else.
    """
    if isinstance(name, type) and issubclass(name, Artifact):
        return name
    if isinstance(name, str):
        short = name.removeprefix("system.")
        if short in ARTIFACT_TYPES:
            return ARTIFACT_TYPES[short]
    raise TypeError(f"unknown artifact type {name!r}: use one of {', '.join(ARTIFACT_TYPES)}")


class _InputMarker:
    def __repr__(self) -> str:
        return "Input"


class _OutputMarker:
    def __repr__(self) -> str:
        return "Output"


_INPUT = _InputMarker()
_OUTPUT = _OutputMarker()

T = TypeVar("T")
Input = Annotated[T, _INPUT]
"""``Input[Dataset]``: the component receives an artifact object to read from."""
Output = Annotated[T, _OUTPUT]
"""``Output[Model]``: the component receives an artifact object whose ``path`` it writes."""


class _PathAnnotation:
    direction: ClassVar[Direction]

    def __init__(self, type: str | type[Artifact]) -> None:
        self.artifact_type = artifact_class(type)

    @property
    def type(self) -> str:
        return self.artifact_type.type_name()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _PathAnnotation)
            and type(other) is type(self)
            and other.artifact_type is self.artifact_type
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.artifact_type))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type!r})"


class InputPath(_PathAnnotation):
    """``InputPath("Dataset")``: the component receives the local path of an input artifact."""

    direction: ClassVar[Direction] = "input"


class OutputPath(_PathAnnotation):
    """``OutputPath("Model")``: the component receives the local path to write an output artifact to."""

    direction: ClassVar[Direction] = "output"


def artifact_annotation(ann: Any) -> tuple[Direction, type[Artifact]] | None:
    """``("input", Dataset)`` for ``Input[Dataset]``, ``("output", Model)`` for ``Output[Model]``.

    A bare artifact class (``data: Dataset``) is an input, as in KFP. Anything else,
    ``InputPath``/``OutputPath`` included (see :func:`path_annotation`), gives ``None``.
    """
    if isinstance(ann, type) and issubclass(ann, Artifact):
        return "input", ann
    if typing.get_origin(ann) is Annotated:
        base, *extras = typing.get_args(ann)
        if isinstance(base, type) and issubclass(base, Artifact):
            for extra in extras:
                if extra is _INPUT:
                    return "input", base
                if extra is _OUTPUT:
                    return "output", base
    return None


def path_annotation(ann: Any) -> tuple[Direction, type[Artifact]] | None:
    """``("input", Dataset)`` for ``InputPath("Dataset")``, ``("output", Model)`` for ``OutputPath("Model")``."""
    if isinstance(ann, _PathAnnotation):
        return ann.direction, ann.artifact_type
    return None


def component_namespace() -> dict[str, Any]:
    """Names to execute a component's recorded source in.

    The source is the function alone (no module imports), so its annotations need the DSL's
    names: ``Input``, ``Dataset``, ... and ``dsl`` itself (for ``dsl.Output[dsl.Model]``), plus
    ``NamedTuple``, ``List``, ``Dict`` and ``Optional``. A runner can avoid evaluating
    annotations at all by compiling with ``__future__.annotations.compiler_flag``.
    """
    names: dict[str, Any] = {name: globals()[name] for name in __all__}
    names.update(
        {
            "dsl": types.SimpleNamespace(**names),
            "NamedTuple": typing.NamedTuple,
            "List": list,
            "Dict": dict,
            "Optional": typing.Optional,
        }
    )
    return names
