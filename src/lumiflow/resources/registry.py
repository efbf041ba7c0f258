"""The kinds lumiflow serves: names, plurals, short names, schemas and conversions.

A document is turned into a stored object in one place, :func:`prepare`: it finds the kind
(by apiVersion and kind, including Kubeflow's external shapes, which are converted to a
lumiflow kind), validates it, normalises the spec (defaults filled in, so that applying the
same file twice is a no-op) and says which profile it belongs to.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lumiflow.common.errors import NotFound, ValidationFailed
from lumiflow.resources.experiment import Experiment, Trial, render
from lumiflow.resources.experiment import check_update as experiment_check_update
from lumiflow.resources.kubeflow import (
    BATCH_JOB_FIELD_MAP,
    FRAMEWORK_LABEL,
    KUBEFLOW_KINDS,
    convert_batch_job,
)
from lumiflow.resources.meta import ResourceModel
from lumiflow.resources.model import Model, model_labels
from lumiflow.resources.model import check_update as model_check_update
from lumiflow.resources.pipeline import (
    Pipeline,
    PipelineRun,
    PipelineVersion,
    check_run_update,
    check_version_update,
)
from lumiflow.resources.profile import Profile
from lumiflow.resources.recurring import RecurringRun
from lumiflow.resources.trainingjob import TrainingJob
from lumiflow.resources.trainingjob import check_update as trainingjob_check_update
from lumiflow.resources.workload import OWNER_FINALIZER, Workload
from lumiflow.store.model import StoredObject

Converter = Callable[[dict[str, Any]], dict[str, Any]]
#: (stored spec, new spec, stored status): raises ValueError(field) for an immutable field that
#: changed, or a LumiflowError of its own for an update the object's state refuses.
UpdateCheck = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]
#: (field prefix as stored, as the external shape spells it), most specific first.
FieldMap = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class KindAlias:
    """Another name a kind is shown under: the objects of ``kind`` that ``selector`` selects
    (``lumi get tfjobs`` lists the TrainingJobs labelled ``lumiflow.dev/framework=tensorflow``)."""

    kind: str
    api_version: str
    plural: str
    selector: str
    short_names: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "plural": self.plural,
            "singular": self.singular,
            "shortNames": list(self.short_names),
            "labelSelector": self.selector,
        }


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    model: type[ResourceModel]
    api_version: str = "lumiflow.dev/v1"
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    #: Users may create, update and delete it (Workloads are written by controllers only).
    user_writable: bool = True
    #: Finalizers put on every new object, removed by its controller once cleaned up.
    finalizers: tuple[str, ...] = ()
    has_logs: bool = False
    #: Has metric series (``/metrics``): its own (TrainingJob) or its job's (Trial).
    has_metrics: bool = False
    #: Raises ValueError(field) if an update changes an immutable field.
    check_update: UpdateCheck | None = None
    #: Labels the server derives from the spec (set on every write, over the user's).
    derived_labels: Callable[[dict[str, Any]], dict[str, str]] | None = None
    aliases: tuple[KindAlias, ...] = ()
    #: Checks that need other kinds (an Experiment's trial template is a training job):
    #: called with the validated model and the registry; raises ValidationFailed.
    check_spec: Callable[[Any, KindRegistry], None] | None = None

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "apiVersion": self.api_version,
            "plural": self.plural,
            "singular": self.singular,
            "shortNames": list(self.short_names),
            "namespaced": self.namespaced,
            "writable": self.user_writable,
            "logs": self.has_logs,
            "metrics": self.has_metrics,
            "aliases": [a.describe() for a in self.aliases],
        }


@dataclass
class KindRegistry:
    kinds: dict[str, KindInfo] = field(default_factory=dict)
    #: (apiVersion, kind) of a document -> (lumiflow kind, converter)
    external: dict[tuple[str, str], tuple[str, Converter | None]] = field(default_factory=dict)
    #: (apiVersion, kind) -> how error fields of the converted document map back
    field_maps: dict[tuple[str, str], FieldMap] = field(default_factory=dict)

    def add(self, info: KindInfo, *, also_accept: tuple[str, ...] = ()) -> None:
        self.kinds[info.kind] = info
        self.external[(info.api_version, info.kind)] = (info.kind, None)
        for api_version in also_accept:
            self.external[(api_version, info.kind)] = (info.kind, None)

    def add_external(
        self, api_version: str, kind: str, target: str, converter: Converter, *, field_map: FieldMap = ()
    ) -> None:
        self.external[(api_version, kind)] = (target, converter)
        if field_map:
            self.field_maps[(api_version, kind)] = field_map

    def resolve(self, name: str) -> KindInfo:
        """Finds a kind by kind name, plural, singular or short name (any case), or by the
        name of one of its aliases."""
        wanted = name.lower()
        for info in self.kinds.values():
            if wanted in (info.kind.lower(), info.plural, info.singular, *info.short_names):
                return info
        for info in self.kinds.values():
            for alias in info.aliases:
                if wanted in (alias.kind.lower(), alias.plural, alias.singular, *alias.short_names):
                    return info
        known = ", ".join(sorted(i.plural for i in self.kinds.values()))
        raise NotFound(f"unknown kind {name!r} (known: {known})", field="kind")

    def by_plural(self, plural: str) -> KindInfo:
        for info in self.kinds.values():
            if info.plural == plural:
                return info
        raise NotFound(f"unknown resource type {plural!r}")


def _trainingjob_labels(spec: dict[str, Any]) -> dict[str, str]:
    """A framework job is labelled with its framework (what the TFJob, ... aliases select);
    a generic job keeps exactly the labels its user gave."""
    framework = str(spec.get("framework", "generic"))
    return {} if framework == "generic" else {FRAMEWORK_LABEL: framework}


def default_registry() -> KindRegistry:
    reg = KindRegistry()
    reg.add(
        KindInfo(kind="Profile", plural="profiles", model=Profile, short_names=("prof",), namespaced=False),
        also_accept=("kubeflow.org/v1", "kubeflow.org/v1beta1"),
    )
    reg.add(
        KindInfo(
            kind="TrainingJob",
            plural="trainingjobs",
            model=TrainingJob,
            short_names=("tj", "job", "jobs"),
            finalizers=(OWNER_FINALIZER,),
            has_logs=True,
            has_metrics=True,
            check_update=trainingjob_check_update,
            derived_labels=_trainingjob_labels,
            aliases=tuple(
                KindAlias(k.kind, k.api_version, k.plural, k.selector, k.short_names) for k in KUBEFLOW_KINDS
            ),
        )
    )
    for k in KUBEFLOW_KINDS:
        reg.add_external(k.api_version, k.kind, "TrainingJob", k.convert, field_map=k.field_map)
    reg.add_external("batch/v1", "Job", "TrainingJob", convert_batch_job, field_map=BATCH_JOB_FIELD_MAP)
    reg.add(
        KindInfo(
            kind="Experiment",
            plural="experiments",
            model=Experiment,
            short_names=("exp",),
            finalizers=(OWNER_FINALIZER,),
            check_update=experiment_check_update,
            check_spec=check_trial_template,
        ),
        also_accept=("kubeflow.org/v1beta1",),
    )
    reg.add(
        KindInfo(
            kind="Trial",
            plural="trials",
            model=Trial,
            user_writable=False,
            finalizers=(OWNER_FINALIZER,),
            has_logs=True,
            has_metrics=True,
        ),
        also_accept=("kubeflow.org/v1beta1",),
    )
    reg.add(KindInfo(kind="Pipeline", plural="pipelines", model=Pipeline, short_names=("pl",)))
    reg.add(
        KindInfo(
            kind="PipelineVersion",
            plural="pipelineversions",
            model=PipelineVersion,
            short_names=("plv",),
            check_update=check_version_update,
        )
    )
    reg.add(
        KindInfo(
            kind="PipelineRun",
            plural="pipelineruns",
            model=PipelineRun,
            short_names=("run", "runs", "pr"),
            finalizers=(OWNER_FINALIZER,),
            check_update=check_run_update,
        )
    )
    reg.add(
        KindInfo(
            kind="RecurringRun",
            plural="recurringruns",
            model=RecurringRun,
            short_names=("rr", "schedule", "schedules"),
            finalizers=(OWNER_FINALIZER,),
        )
    )
    reg.add(
        KindInfo(
            kind="Model",
            plural="models",
            model=Model,
            short_names=("mv",),
            check_update=model_check_update,
            derived_labels=model_labels,
        )
    )
    reg.add(
        KindInfo(
            kind="Workload",
            plural="workloads",
            model=Workload,
            short_names=("wl",),
            user_writable=False,
            has_logs=True,
        )
    )
    return reg


TRAINING_KINDS = ("TrainingJob",)


def check_trial_template(model: Any, registry: KindRegistry) -> None:
    """The trial template, rendered with a value of each parameter, must be a valid
    training job (TFJob, PyTorchJob, XGBoostJob, MPIJob, batch Job or TrainingJob)."""
    assert isinstance(model, Experiment)
    spec = model.spec
    values = {p.name: p.sample_value() for p in spec.parameters}
    template = spec.trialTemplate
    filled = {tp.name: values.get(tp.reference or tp.name, "x") for tp in template.trialParameters} or values
    doc = render(template.trialSpec, filled)
    where = "spec.trialTemplate.trialSpec"
    if not isinstance(doc, dict):
        raise ValidationFailed("trialSpec must be a manifest", field=where)
    doc = dict(doc)
    meta = dict(doc.get("metadata") or {})
    meta["name"] = "trial-template-check"
    meta.pop("namespace", None)
    doc["metadata"] = meta
    try:
        prepared = prepare(registry, doc, profile="check")
    except ValidationFailed as exc:
        field = f"{where}.{exc.field}" if exc.field else where
        raise ValidationFailed(f"{where}: {exc.message}", field=field) from None
    if prepared.info.kind not in TRAINING_KINDS:
        raise ValidationFailed(
            f"{where}: a trial runs a training job (TFJob, PyTorchJob, XGBoostJob, MPIJob, batch/v1 Job or "
            f"TrainingJob), not a {doc.get('kind')}",
            field=f"{where}.kind",
        )
    primary = template.primaryContainerName
    if primary is not None:
        names = {
            c.get("name")
            for r in prepared.obj.spec.get("replicaSpecs", {}).values()
            for c in r.get("template", {}).get("spec", {}).get("containers", [])
        }
        if primary not in names:
            raise ValidationFailed(
                f"spec.trialTemplate.primaryContainerName: no container named {primary!r} in the trial spec "
                f"(containers: {', '.join(sorted(n for n in names if n))})",
                field="spec.trialTemplate.primaryContainerName",
            )


@dataclass(frozen=True)
class Prepared:
    info: KindInfo
    model: ResourceModel
    obj: StoredObject
    #: The resourceVersion the client sent (for optimistic concurrency on update).
    resource_version: int | None


_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def generate_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def prepare(
    registry: KindRegistry,
    doc: dict[str, Any],
    *,
    profile: str | None = None,
    name: str | None = None,
) -> Prepared:
    """Validates a user's document and turns it into the object to store.

    ``profile`` (from the URL or ``-p``) overrides ``metadata.namespace``; ``name`` (from
    the URL) must match ``metadata.name`` when both are given. Raises ValidationFailed
    naming the field.
    """
    if not isinstance(doc, dict):
        raise ValidationFailed("a manifest must be a mapping with apiVersion, kind, metadata and spec")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise ValidationFailed("apiVersion is required", field="apiVersion")
    if not isinstance(kind, str) or not kind:
        raise ValidationFailed("kind is required", field="kind")
    target = registry.external.get((api_version, kind))
    if target is None:
        known_for_kind = sorted(a for (a, k) in registry.external if k == kind)
        if known_for_kind:
            raise ValidationFailed(
                f"apiVersion {api_version!r} is not served for kind {kind}; use {', '.join(known_for_kind)}",
                field="apiVersion",
            )
        kinds = sorted({k for (_, k) in registry.external})
        raise ValidationFailed(f"unknown kind {kind!r} (known: {', '.join(kinds)})", field="kind")
    target_kind, converter = target
    info = registry.kinds[target_kind]
    doc = dict(doc)
    doc.pop("status", None)
    if converter is not None:
        doc = converter(doc)
    doc["apiVersion"] = info.api_version
    doc["kind"] = info.kind
    if "spec" not in doc:
        raise ValidationFailed("spec is required", field="spec")
    try:
        model = info.model.parse(doc)
    except ValidationFailed as exc:
        field_map = registry.field_maps.get((api_version, kind))
        if field_map:
            raise _as_written(exc, field_map) from None
        raise
    if info.check_spec is not None:
        info.check_spec(model, registry)
    meta = model.metadata
    resolved_name = meta.name
    if name is not None:
        if resolved_name is not None and resolved_name != name:
            raise ValidationFailed(
                f"metadata.name {resolved_name!r} does not match the name in the URL {name!r}",
                field="metadata.name",
            )
        resolved_name = name
    if resolved_name is None:
        if meta.generateName:
            resolved_name = f"{meta.generateName}{generate_suffix()}"
        else:
            raise ValidationFailed(
                "metadata.name (or metadata.generateName) is required", field="metadata.name"
            )
    if info.namespaced:
        resolved_profile = profile or meta.namespace
        if not resolved_profile:
            raise ValidationFailed(
                "the profile is not known: set metadata.namespace or pass -p/--profile",
                field="metadata.namespace",
            )
    else:
        resolved_profile = ""
    spec = model.model_dump(mode="json", exclude_none=True)["spec"]
    labels = dict(meta.labels)
    if info.derived_labels is not None:
        labels.update(info.derived_labels(spec))
    obj = StoredObject(
        kind=info.kind,
        api_version=info.api_version,
        profile=resolved_profile,
        name=resolved_name,
        spec=spec,
        labels=labels,
        annotations=dict(meta.annotations),
        finalizers=list(info.finalizers),
    )
    return Prepared(info=info, model=model, obj=obj, resource_version=meta.resource_version)


def _rename(text: str, field_map: FieldMap) -> str:
    for stored, written in field_map:
        text = re.sub(rf"(?<![A-Za-z.]){re.escape(stored)}(?![A-Za-z])", written, text)
    return text


def _as_written(exc: ValidationFailed, field_map: FieldMap) -> ValidationFailed:
    """The error with fields named as the user's manifest spells them (tfReplicaSpecs...)."""
    field_name = exc.field
    message = exc.message
    for stored, written in field_map:
        if field_name is not None and (field_name == stored or field_name.startswith(stored + ".")):
            field_name = written + field_name[len(stored) :]
            break
    message = _rename(message, field_map)
    # Messages of model-level rules name paths relative to the spec ("replicaSpecs.Worker: ...").
    relative = tuple((a.removeprefix("spec."), b.removeprefix("spec.")) for a, b in field_map)
    message = _rename(message, relative)
    details = exc.details
    if isinstance(details, list):
        details = [
            {**d, "field": _rename(str(d.get("field", "")), field_map)} if isinstance(d, dict) else d
            for d in details
        ]
    return ValidationFailed(message, field=field_name, details=details)
