"""Kubeflow's job kinds and Kubernetes' ``batch/v1`` Job, accepted as they are.

Each external shape is converted to a ``TrainingJob`` before validation: a TFJob's
``tfReplicaSpecs`` become ``replicaSpecs`` with ``framework: tensorflow``, and so on; fields
only one framework has (``successPolicy``, ``nprocPerNode``, ``elasticPolicy``,
``slotsPerWorker``, ...) keep their names. The source kind and apiVersion are recorded in
annotations, the server labels the job with its framework, and discovery lists each
Kubeflow kind as an alias of TrainingJob selected by that label, so that ``lumi get tfjob
mnist`` and ``lumi get trainingjob mnist`` show the same object.

A batch/v1 Job (Katib's trial template) is one replica (``worker-0``) of a generic job;
``backoffLimit``, ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished`` and ``suspend`` move
to ``runPolicy`` with Kubernetes' meaning. Errors name the field as the user wrote it
(``spec.tfReplicaSpecs.Worker...``), not as it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lumiflow.common.errors import ValidationFailed
from lumiflow.resources.frameworks import Framework

#: Label the server puts on every TrainingJob: its framework (what aliases select by).
FRAMEWORK_LABEL = "lumiflow.dev/framework"
SOURCE_KIND = "lumiflow.dev/source-kind"
SOURCE_API_VERSION = "lumiflow.dev/source-api-version"

#: Spec fields of lumiflow's own that a converted manifest may carry as well.
LUMIFLOW_FIELDS = ("cluster", "priority")


@dataclass(frozen=True)
class KubeflowKind:
    kind: str
    api_version: str
    plural: str
    framework: Framework
    replica_key: str
    short_names: tuple[str, ...] = ()

    @property
    def selector(self) -> str:
        return f"{FRAMEWORK_LABEL}={self.framework.value}"

    @property
    def fields(self) -> tuple[str, ...]:
        return ("runPolicy", self.replica_key, *self.framework.rules.spec_fields, *LUMIFLOW_FIELDS)

    @property
    def field_map(self) -> tuple[tuple[str, str], ...]:
        return (("spec.replicaSpecs", f"spec.{self.replica_key}"),)

    def convert(self, doc: dict[str, Any]) -> dict[str, Any]:
        spec = _spec(doc)
        for key in spec:
            if key not in self.fields:
                raise ValidationFailed(
                    f"spec.{key}: unknown field of a {self.kind} (allowed: {', '.join(self.fields)})",
                    field=f"spec.{key}",
                )
        if self.replica_key not in spec:
            raise ValidationFailed(
                f"spec.{self.replica_key}: required field is missing", field=f"spec.{self.replica_key}"
            )
        out: dict[str, Any] = {"framework": self.framework.value}
        for key, value in spec.items():
            out["replicaSpecs" if key == self.replica_key else key] = value
        return {**doc, "metadata": _annotated(doc, self.kind, self.api_version), "spec": out}


KUBEFLOW_KINDS: tuple[KubeflowKind, ...] = (
    KubeflowKind("TFJob", "kubeflow.org/v1", "tfjobs", Framework.TENSORFLOW, "tfReplicaSpecs"),
    KubeflowKind("PyTorchJob", "kubeflow.org/v1", "pytorchjobs", Framework.PYTORCH, "pytorchReplicaSpecs"),
    KubeflowKind("XGBoostJob", "kubeflow.org/v1", "xgboostjobs", Framework.XGBOOST, "xgbReplicaSpecs"),
    KubeflowKind("MPIJob", "kubeflow.org/v2beta1", "mpijobs", Framework.MPI, "mpiReplicaSpecs", ("mpij",)),
)


def _spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec")
    if spec is None:
        raise ValidationFailed("spec is required", field="spec")
    if not isinstance(spec, dict):
        raise ValidationFailed("spec: must be a mapping", field="spec")
    return spec


def _annotated(doc: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    meta = doc.get("metadata")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ValidationFailed("metadata: must be a mapping", field="metadata")
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ValidationFailed("metadata.annotations: must be a mapping", field="metadata.annotations")
    return {**meta, "annotations": {**annotations, SOURCE_KIND: kind, SOURCE_API_VERSION: api_version}}


# --- batch/v1 Job -------------------------------------------------------------------------

#: Job fields moved to runPolicy (same meaning in Kubernetes' Job and Kubeflow's RunPolicy).
_JOB_RUN_POLICY = ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "suspend")
#: Job fields that mean nothing more for a single pod run once: accepted and left out.
_JOB_IGNORED = ("completionMode", "selector", "manualSelector", "podReplacementPolicy")
#: Job fields whose meaning lumiflow does not implement: refused rather than ignored.
_JOB_REFUSED = ("podFailurePolicy", "backoffLimitPerIndex", "maxFailedIndexes", "successPolicy", "managedBy")
BATCH_JOB_REPLICA = "Worker"
BATCH_JOB_FIELD_MAP: tuple[tuple[str, str], ...] = (
    (f"spec.replicaSpecs.{BATCH_JOB_REPLICA}.restartPolicy", "spec.template.spec.restartPolicy"),
    (f"spec.replicaSpecs.{BATCH_JOB_REPLICA}.template", "spec.template"),
    (f"spec.replicaSpecs.{BATCH_JOB_REPLICA}", "spec.template"),
    ("spec.replicaSpecs", "spec.template"),
    *((f"spec.runPolicy.{key}", f"spec.{key}") for key in _JOB_RUN_POLICY),
)


def convert_batch_job(doc: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(doc)
    allowed = (
        "template",
        "parallelism",
        "completions",
        *_JOB_RUN_POLICY,
        *_JOB_IGNORED,
        *_JOB_REFUSED,
        *LUMIFLOW_FIELDS,
    )
    for key in spec:
        if key not in allowed:
            raise ValidationFailed(
                f"spec.{key}: unknown field of a batch/v1 Job (allowed: {', '.join(allowed)})",
                field=f"spec.{key}",
            )
        if key in _JOB_REFUSED:
            raise ValidationFailed(
                f"spec.{key}: not supported by lumiflow: a Job here is a single replica run with "
                "backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished and suspend",
                field=f"spec.{key}",
            )
    for key in ("completions", "parallelism"):
        value = spec.get(key)
        if value is not None and value != 1:
            raise ValidationFailed(
                f"spec.{key}: {value!r} is not supported: a Job runs as one replica here "
                "(use a TrainingJob with several replicas, or several Jobs)",
                field=f"spec.{key}",
            )
    template = spec.get("template")
    if template is None:
        raise ValidationFailed("spec.template: required field is missing", field="spec.template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise ValidationFailed("spec.template: must be a pod template with a spec", field="spec.template")
    restart = template["spec"].get("restartPolicy", "Never")
    if restart not in ("Never", "OnFailure"):
        raise ValidationFailed(
            f"spec.template.spec.restartPolicy: {restart!r} is not valid for a Job (OnFailure or Never)",
            field="spec.template.spec.restartPolicy",
        )
    replica = {"replicas": 1, "restartPolicy": restart, "template": template}
    run_policy = {key: spec[key] for key in _JOB_RUN_POLICY if key in spec}
    out: dict[str, Any] = {
        "framework": Framework.GENERIC.value,
        "replicaSpecs": {BATCH_JOB_REPLICA: replica},
        "runPolicy": run_policy,
    }
    for key in LUMIFLOW_FIELDS:
        if key in spec:
            out[key] = spec[key]
    return {**doc, "metadata": _annotated(doc, "Job", "batch/v1"), "spec": out}


__all__ = [
    "BATCH_JOB_FIELD_MAP",
    "FRAMEWORK_LABEL",
    "KUBEFLOW_KINDS",
    "SOURCE_API_VERSION",
    "SOURCE_KIND",
    "KubeflowKind",
    "convert_batch_job",
]
