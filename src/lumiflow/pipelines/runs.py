"""The PipelineRun controller: a run's steps as Workloads, started as soon as their inputs are
ready (:mod:`lumiflow.pipelines.dag` decides), with caching and lineage.

Each reconcile: (1) look at the steps that run — a finished step's outputs are read from its
result file, its output artifacts stored (digest and size computed) and recorded in lineage
and in the cache; a failed one is retried up to its ``retries``; (2) plan; (3) start what
the plan says: from the cache when the step's key is known (the step finishes without a
process, and says so), else as a one-replica Workload running
``python -m lumiflow.runtime.component task.json`` in a fresh process. All of it is written
in the run's status, so a server restart loses nothing: finished steps are not run again,
running ones are found through their Workloads (which the local cluster re-attaches).

The cache key is the SHA-256 of the component's code, its parameter values and its input
artifacts' digests; off when the run or the step says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumiflow.artifacts.store import ArtifactStore
from lumiflow.common.errors import LumiflowError, NotFound, ValidationFailed
from lumiflow.common.quantity import parse_cpu, parse_memory
from lumiflow.common.timeutil import to_rfc3339, utcnow
from lumiflow.controllers.manager import DONE, Controller, Result
from lumiflow.pipelines.dag import NodeState, Start, plan
from lumiflow.resources.model import MODEL_LABEL
from lumiflow.resources.pipeline import NodeStatus, PipelineRun, PipelineRunStatus, RunState
from lumiflow.resources.registry import KindRegistry, prepare
from lumiflow.resources.workload import (
    OWNER_FINALIZER,
    WORKLOAD_FINALIZER,
    ReplicaResources,
    Workload,
    WorkloadOwner,
    WorkloadPhase,
    WorkloadReplica,
    WorkloadSpec,
)
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import ArtifactRecord, ObjectRef, StoredObject
from lumiflow.store.selectors import parse_selector

log = logging.getLogger(__name__)

RUN_LABEL = "pipelines.lumiflow.dev/run"
#: Rounds of planning in one reconcile while steps finish on the spot (cached ones).
MAX_PLANS_PER_RECONCILE = 1000
NODE_ANNOTATION = "pipelines.lumiflow.dev/node"
_SAFE = re.compile(r"[^a-z0-9-]+")


@dataclass
class PipelineSettings:
    runs_root: Path
    #: Where training jobs keep their checkpoints (a training step's ``checkpoints`` output).
    jobs_root: Path
    default_cpu: float
    default_memory: int
    public_url: str
    python: str = "python3"


def node_slug(node: str) -> str:
    """A file-name-safe, readable, unique form of a node path."""
    digest = hashlib.sha1(node.encode()).hexdigest()[:8]
    readable = _SAFE.sub("-", node.lower()).strip("-")[:40]
    return f"{readable}-{digest}"


def workload_name(run: str, node: str, attempt: int) -> str:
    digest = hashlib.sha1(node.encode()).hexdigest()[:8]
    return f"{run[:44]}-{digest}-{attempt}"


def cache_key(component: dict[str, Any], parameters: dict[str, Any], artifacts: dict[str, str]) -> str:
    body = {
        "code": component.get("sourceSha256")
        or hashlib.sha256(str(component.get("source", "")).encode()).hexdigest(),
        "function": component.get("function"),
        "launch": component.get("launch"),
        "parameters": parameters,
        "artifacts": artifacts,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class PipelineRunController(Controller):
    kind = "PipelineRun"
    owns = ("Workload", "TrainingJob", "Experiment")

    def __init__(
        self,
        store: ResourceStore,
        *,
        settings: PipelineSettings,
        artifacts: ArtifactStore,
        registry: KindRegistry,
    ) -> None:
        super().__init__(store)
        self.settings = settings
        self.artifacts = artifacts
        self.registry = registry

    # --- the loop ------------------------------------------------------------------------------

    def reconcile(self, key: ObjectRef) -> Result:
        try:
            obj = self.store.get(key.kind, key.profile, key.name)
        except NotFound:
            return DONE
        run = PipelineRun.parse(obj.to_manifest())
        if obj.deletion_timestamp is not None:
            return self._finalize(obj)
        status = run.status  # parsed for this reconcile: changed in place
        before = status.model_dump(mode="json", exclude_none=True)
        events: list[tuple[str, str, str]] = []
        now = to_rfc3339(utcnow()) or ""
        if status.state is not None and status.state.is_terminal():
            return DONE
        if status.state is None:
            status.state = RunState.RUNNING
            status.startTime = now
            events.append(("Normal", "Started", "the run started"))
        spec = run.spec.pipelineSpec or {}
        for node_id, node in list(status.nodes.items()):
            if node.state in (RunState.RUNNING, RunState.CANCELING) and node.workload:
                self._sync(obj, run, spec, node_id, node, events, now, terminate=run.spec.terminate)
        params = self._parameters(spec, run.spec.parameters)
        # Plan, settle and start until nothing more finishes on the spot: a step served from
        # the cache (or a model registration) ends inside this reconcile, and what depends on
        # it can start at once rather than at the next wake-up.
        for _ in range(MAX_PLANS_PER_RECONCILE):
            nodes = {k: v.model_dump(mode="json") for k, v in status.nodes.items()}
            the_plan, iterations = plan(spec, params, nodes, cancel=run.spec.terminate)
            for node_id, (state, message) in the_plan.settle.items():
                node = status.nodes.setdefault(node_id, NodeStatus(task=node_id.rsplit("/", 1)[-1]))
                if node.state != state:
                    node.state = RunState(state.value)
                    node.message = message or node.message
                    if state.is_terminal():
                        node.finishTime = now
                        if state in (NodeState.SKIPPED, NodeState.FAILED):
                            events.append(("Normal", f"Step{state.value.title()}", f"{node_id}: {message}"))
                    elif node.startTime is None:
                        node.startTime = now
            for node_id, count in iterations.items():
                status.nodes.setdefault(
                    node_id, NodeStatus(task=node_id.rsplit("/", 1)[-1])
                ).iterations = count
            ended_before = sum(1 for n in status.nodes.values() if n.state.is_terminal())
            for start in the_plan.start:
                self._start(obj, run, spec, start, status, events, now)
            ended_after = sum(1 for n in status.nodes.values() if n.state.is_terminal())
            if ended_after == ended_before or the_plan.state.is_terminal():
                break
        running = any(not n.state.is_terminal() for n in status.nodes.values() if n.workload)
        if the_plan.state.is_terminal() and not running:
            final = RunState(the_plan.state.value)
            if run.spec.terminate and final != RunState.SUCCEEDED:
                final = RunState.CANCELED
            status.state = final
            status.finishTime = now
            status.message = the_plan.message or ("terminated" if final == RunState.CANCELED else "")
            events.append(
                (
                    "Normal" if final == RunState.SUCCEEDED else "Warning",
                    final.value.title(),
                    status.message or final.value,
                )
            )
        elif run.spec.terminate:
            status.state = RunState.CANCELING
        status.phase = status.state.value if status.state else None
        after = status.model_dump(mode="json", exclude_none=True)
        if after != before or events:
            self.store.update_status(
                "PipelineRun",
                obj.profile,
                obj.name,
                after,
                expected_rv=obj.resource_version,
                writer="PipelineRun",
                events=events[:20],
            )
        if status.state is not None and status.state.is_terminal():
            return DONE
        return Result(requeue_after=5.0)

    # --- parameters ----------------------------------------------------------------------------

    @staticmethod
    def _parameters(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, p in (spec.get("parameters") or {}).items():
            if name in given:
                out[name] = given[name]
            elif "default" in (p or {}):
                out[name] = p["default"]
        return out

    # --- starting a step -------------------------------------------------------------------------

    def _start(
        self,
        obj: StoredObject,
        run: PipelineRun,
        spec: dict[str, Any],
        start: Start,
        status: PipelineRunStatus,
        events: list[tuple[str, str, str]],
        now: str,
    ) -> None:
        component = (spec.get("components") or {}).get(start.component) or {}
        node = status.nodes.setdefault(start.node, NodeStatus(task=start.task, component=start.component))
        node.task, node.component = start.task, start.component
        parameters: dict[str, Any] = {}
        artifacts: dict[str, dict[str, Any]] = {}
        for name, decl in (component.get("inputs") or {}).items():
            if decl.get("kind") == "artifact":
                ref = start.inputs.get(name)
                ref = ref.get("artifact") if isinstance(ref, dict) and "artifact" in ref else ref
                if not isinstance(ref, dict) or "uri" not in ref:
                    if decl.get("optional"):
                        continue
                    self._fail(node, f"input artifact {name!r} has no value", now, events, start.node)
                    return
                artifacts[name] = ref
            elif name in start.inputs:
                parameters[name] = start.inputs[name]
            elif "default" in decl:
                parameters[name] = decl["default"]
        node.inputs = {**parameters, **{k: {"artifact": v} for k, v in artifacts.items()}}
        key = cache_key(component, parameters, {k: str(v.get("digest")) for k, v in artifacts.items()})
        node.cacheKey = key
        if run.spec.caching and start.caching:
            hit = self.store.cache_get(obj.profile, key)
            if hit is not None and self._still_there(hit["outputs"]):
                node.state = RunState.SUCCEEDED
                node.cached = True
                node.outputs = hit["outputs"]
                node.startTime = node.finishTime = now
                node.message = f"cached: the same step ran in {hit['source']}"
                events.append(("Normal", "StepCached", f"{start.node}: {node.message}"))
                self._lineage(obj, run, start.node, node, artifacts, state="CACHED")
                return
        if component.get("launch"):
            self._launch_child(obj, component, start, node, parameters, artifacts, events, now)
            return
        self._launch_step(obj, run, component, start, node, parameters, artifacts, now)
        events.append(("Normal", "StepStarted", f"{start.node} started (attempt {node.attempts})"))

    def _still_there(self, outputs: dict[str, Any]) -> bool:
        for value in outputs.values():
            if isinstance(value, dict) and "artifact" in value:
                try:
                    if not self.artifacts.exists(value["artifact"]["uri"]):
                        return False
                except LumiflowError:
                    return False
        return True

    def _step_dir(self, obj: StoredObject, node: str, attempt: int) -> Path:
        return (
            self.settings.runs_root / obj.profile / f"{obj.name}-{obj.uid}" / node_slug(node) / str(attempt)
        )

    def _launch_step(
        self,
        obj: StoredObject,
        run: PipelineRun,
        component: dict[str, Any],
        start: Start,
        node: NodeStatus,
        parameters: dict[str, Any],
        artifacts: dict[str, dict[str, Any]],
        now: str,
    ) -> None:
        node.attempts += 1
        step_dir = self._step_dir(obj, start.node, node.attempts)
        step_dir.mkdir(parents=True, exist_ok=True)
        task_artifacts: dict[str, dict[str, Any]] = {}
        for name, ref in artifacts.items():
            decl = (component.get("inputs") or {}).get(name, {})
            local = self.artifacts.local_path(ref["uri"], profile=obj.profile)
            if local is None:
                local = step_dir / "in" / name
                self.artifacts.get(ref["uri"], local, expected_digest=ref.get("digest"), profile=obj.profile)
            task_artifacts[name] = {
                "direction": "input",
                "type": ref.get("type") or decl.get("artifactType", "Artifact"),
                "mode": decl.get("mode", "object"),
                "uri": ref["uri"],
                "path": str(local),
                "metadata": ref.get("metadata") or {},
            }
        returns = []
        for name, decl in (component.get("outputs") or {}).items():
            if decl.get("kind") == "artifact":
                task_artifacts[name] = {
                    "direction": "output",
                    "type": decl.get("artifactType", "Artifact"),
                    "mode": decl.get("mode", "object"),
                    "uri": self.artifacts.uri_for(obj.profile, "runs", obj.name, node_slug(start.node), name),
                    "path": str(step_dir / "out" / name),
                    "metadata": {},
                }
            else:
                returns.append(name)
        task = {
            "node": start.node,
            "function": component.get("function"),
            "source": component.get("source"),
            "parameters": parameters,
            "artifacts": task_artifacts,
            "returns": returns,
            "result": str(step_dir / "result.json"),
        }
        (step_dir / "task.json").write_text(json.dumps(task))
        resources = start.resources or dict(component.get("resources") or {})
        cpu = parse_cpu(str(resources["cpu"])) if resources.get("cpu") else self.settings.default_cpu
        memory = (
            parse_memory(str(resources["memory"]))
            if resources.get("memory")
            else self.settings.default_memory
        )
        gpu = int(resources.get("gpu") or 0)
        env = {
            "PYTHONUNBUFFERED": "1",
            "LUMIFLOW_URL": self.settings.public_url,
            "LUMIFLOW_PROFILE": obj.profile,
            "LUMIFLOW_PIPELINE_RUN": obj.name,
            "LUMIFLOW_PIPELINE_STEP": start.node,
            "OMP_NUM_THREADS": str(max(1, int(cpu + 0.999))),
            **{str(k): str(v) for k, v in start.env.items()},
        }
        name = workload_name(obj.name, start.node, node.attempts)
        wspec = WorkloadSpec(
            owner=WorkloadOwner(kind="PipelineRun", name=obj.name),
            cluster=run.spec.cluster,
            replicas=[
                WorkloadReplica(
                    name="step-0",
                    command=[
                        self.settings.python,
                        "-m",
                        "lumiflow.runtime.component",
                        str(step_dir / "task.json"),
                    ],
                    env=env,
                    workingDir=str(step_dir),
                    resources=ReplicaResources(cpu=cpu, memory=memory, gpu=gpu),
                )
            ],
        )
        workload = StoredObject(
            kind="Workload",
            api_version=Workload.API_VERSION,
            profile=obj.profile,
            name=name,
            spec=wspec.model_dump(mode="json", exclude_none=True),
            status={"phase": WorkloadPhase.PENDING.value},
            labels={RUN_LABEL: obj.name, "lumiflow.dev/owner-kind": "PipelineRun"},
            annotations={NODE_ANNOTATION: start.node},
            owner_references=[
                {
                    "apiVersion": obj.api_version,
                    "kind": "PipelineRun",
                    "name": obj.name,
                    "uid": obj.uid,
                    "controller": True,
                }
            ],
            finalizers=[WORKLOAD_FINALIZER],
        )
        try:
            self.store.create(workload)
        except LumiflowError as exc:
            if exc.code != "already_exists":
                raise
        node.state = RunState.RUNNING
        node.workload = name
        node.startTime = node.startTime or now
        node.message = None

    def _launch_child(
        self,
        obj: StoredObject,
        component: dict[str, Any],
        start: Start,
        node: NodeStatus,
        parameters: dict[str, Any],
        artifacts: dict[str, dict[str, Any]],
        events: list[tuple[str, str, str]],
        now: str,
    ) -> None:
        """A step that launches a TrainingJob or an Experiment and waits for it (a TrainingJob's
        artifact inputs are given as their local paths), or registers a model version."""
        launch = component["launch"]
        if launch.get("kind") == "Model":
            self._register_model(obj, launch.get("manifest") or {}, start, node, artifacts, events, now)
            return
        values = dict(parameters)
        for name, ref in artifacts.items():
            local = self.artifacts.local_path(ref["uri"], profile=obj.profile)
            if local is None:
                local = self._step_dir(obj, start.node, node.attempts + 1) / "in" / name
                self.artifacts.get(ref["uri"], local, expected_digest=ref.get("digest"), profile=obj.profile)
            values[name] = str(local)
        doc = _substitute(launch.get("manifest") or {}, values)
        node.attempts += 1
        name = workload_name(obj.name, start.node, node.attempts)
        meta = dict(doc.get("metadata") or {})
        meta.pop("namespace", None)
        meta["name"] = meta.get("name") if meta.get("name") and "$" not in str(meta.get("name")) else name
        doc["metadata"] = meta
        try:
            prepared = prepare(self.registry, doc, profile=obj.profile)
        except ValidationFailed as exc:
            self._fail(node, f"the step's manifest is invalid: {exc.message}", now, events, start.node)
            return
        child = prepared.obj
        child.owner_references = [
            {
                "apiVersion": obj.api_version,
                "kind": "PipelineRun",
                "name": obj.name,
                "uid": obj.uid,
                "controller": True,
            }
        ]
        child.labels = {**child.labels, RUN_LABEL: obj.name}
        child.annotations = {**child.annotations, NODE_ANNOTATION: start.node}
        try:
            self.store.create(child)
        except LumiflowError as exc:
            if exc.code != "already_exists":
                self._fail(
                    node, f"cannot create the step's {child.kind}: {exc.message}", now, events, start.node
                )
                return
        node.state = RunState.RUNNING
        node.workload = f"{child.kind}/{child.name}"
        node.startTime = node.startTime or now
        events.append(("Normal", "StepStarted", f"{start.node} launched {child.kind} {child.name}"))

    def _register_model(
        self,
        obj: StoredObject,
        manifest: dict[str, Any],
        start: Start,
        node: NodeStatus,
        artifacts: dict[str, dict[str, Any]],
        events: list[tuple[str, str, str]],
        now: str,
    ) -> None:
        """The next version of a registered model, pointing at the step's ``model`` artifact."""
        ref = artifacts.get("model")
        model = str(manifest.get("name") or "")
        if ref is None or not model:
            self._fail(
                node, "a model registration needs a model artifact and a name", now, events, start.node
            )
            return
        node.attempts += 1
        existing = self.store.list(
            "Model", profile=obj.profile, selector=parse_selector(f"{MODEL_LABEL}={model}")
        )
        number = max((int(m.spec.get("version", 0)) for m in existing.items), default=0) + 1
        name = f"{model}-v{number}"
        doc = {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "Model",
            "metadata": {"name": name, "annotations": {NODE_ANNOTATION: start.node}},
            "spec": {
                "model": model,
                "version": number,
                "artifact": {k: ref[k] for k in ("uri", "digest", "size", "type") if ref.get(k) is not None},
                "stage": manifest.get("stage") or "None",
                "description": manifest.get("description") or None,
                "source": {"pipelineRun": obj.name, "step": start.node},
            },
        }
        try:
            version = prepare(self.registry, doc, profile=obj.profile).obj
            version.labels = {**version.labels, RUN_LABEL: obj.name}
            self.store.create(version)
        except LumiflowError as exc:
            self._fail(node, f"cannot register model {model}: {exc.message}", now, events, start.node)
            return
        node.state = RunState.SUCCEEDED
        node.outputs = {"model_name": model, "version": number}
        node.startTime = node.startTime or now
        node.finishTime = now
        self.store.record_execution(
            obj.profile,
            type="ModelRegistration",
            name=name,
            state="COMPLETE",
            properties={"run": obj.name, "step": start.node, "model": model, "version": number},
            inputs=[("model", _artifact_record("model", ref))],
            contexts=[("PipelineRun", obj.name), ("Model", model)],
        )
        stage = manifest.get("stage") or "None"
        events.append(("Normal", "ModelRegistered", f"{start.node}: registered {name} ({stage})"))

    # --- following a step ------------------------------------------------------------------------

    def _sync(
        self,
        obj: StoredObject,
        run: PipelineRun,
        spec: dict[str, Any],
        node_id: str,
        node: NodeStatus,
        events: list[tuple[str, str, str]],
        now: str,
        *,
        terminate: bool,
    ) -> None:
        assert node.workload is not None
        if "/" in node.workload:
            self._sync_child(obj, node_id, node, events, now, terminate=terminate)
            return
        try:
            wl = self.store.get("Workload", obj.profile, node.workload)
        except NotFound:
            self._fail(node, "the step's workload disappeared", now, events, node_id)
            return
        phase = WorkloadPhase(wl.status.get("phase", "Pending"))
        if terminate and not phase.is_terminal():
            if not wl.spec.get("stopped"):
                self.store.update(wl.copy(spec={**wl.spec, "stopped": True}))
            node.state = RunState.CANCELING
            return
        if not phase.is_terminal():
            return
        component = (spec.get("components") or {}).get(node.component or "", {})
        step_dir = self._step_dir(obj, node_id, node.attempts)
        if phase == WorkloadPhase.SUCCEEDED:
            try:
                self._collect(obj, run, node_id, node, component, step_dir)
            except LumiflowError as exc:
                self._fail(node, f"its outputs could not be stored: {exc.message}", now, events, node_id)
                return
            node.state = RunState.SUCCEEDED
            node.finishTime = now
            events.append(("Normal", "StepSucceeded", f"{node_id} succeeded"))
            return
        if phase == WorkloadPhase.STOPPED or terminate:
            node.state = RunState.CANCELED
            node.finishTime = now
            node.message = "terminated"
            return
        replicas = wl.status.get("replicas") or [{}]
        code = replicas[0].get("exitCode")
        reason = replicas[0].get("message") or wl.status.get("message") or ""
        retries = self._retries(spec, node_id)
        if node.attempts <= retries:
            events.append(
                (
                    "Warning",
                    "StepRetried",
                    f"{node_id} failed (exit {code}); retry {node.attempts} of {retries}",
                )
            )
            node.state = RunState.PENDING
            node.workload = None
            node.message = f"retrying after exit code {code}"
            return
        self._fail(
            node,
            f"the step failed with exit code {code}{': ' + reason if reason else ''}; see its log",
            now,
            events,
            node_id,
        )

    @staticmethod
    def _retries(spec: dict[str, Any], node_id: str) -> int:
        dag = spec.get("root") or {}
        task: dict[str, Any] = {}
        for part in node_id.split("/"):
            name = part.split("[", 1)[0]
            task = (dag.get("tasks") or {}).get(name) or {}
            dag = task.get("dag") or {}
        return int(task.get("retries") or 0)

    def _collect(
        self,
        obj: StoredObject,
        run: PipelineRun,
        node_id: str,
        node: NodeStatus,
        component: dict[str, Any],
        step_dir: Path,
    ) -> None:
        try:
            result = json.loads((step_dir / "result.json").read_text())
        except (OSError, ValueError):
            result = {"parameters": {}, "artifacts": {}}
        outputs: dict[str, Any] = dict(result.get("parameters") or {})
        stored: dict[str, dict[str, Any]] = {}
        for name, decl in (component.get("outputs") or {}).items():
            if decl.get("kind") != "artifact":
                continue
            local = step_dir / "out" / name
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(b"")  # an output the step never wrote is an empty file, as in KFP
            uri = self.artifacts.uri_for(obj.profile, "runs", obj.name, node_slug(node_id), name)
            saved = self.artifacts.put(local, uri, profile=obj.profile)
            metadata = ((result.get("artifacts") or {}).get(name) or {}).get("metadata") or {}
            ref = {
                "uri": saved.uri,
                "digest": saved.digest,
                "size": saved.size,
                "type": decl.get("artifactType", "Artifact"),
                "metadata": metadata,
            }
            stored[name] = ref
            outputs[name] = {"artifact": ref}
        node.outputs = outputs
        inputs = {k: v["artifact"] for k, v in node.inputs.items() if isinstance(v, dict) and "artifact" in v}
        self._lineage(obj, run, node_id, node, inputs, state="COMPLETE")
        if node.cacheKey:
            self.store.cache_put(obj.profile, node.cacheKey, outputs, f"run {obj.name}, step {node_id}")
        if not self.artifacts.local_path(self.artifacts.uri_for(obj.profile, "runs")):
            shutil.rmtree(step_dir / "out", ignore_errors=True)  # uploaded elsewhere: no second copy

    def _sync_child(
        self,
        obj: StoredObject,
        node_id: str,
        node: NodeStatus,
        events: list[tuple[str, str, str]],
        now: str,
        *,
        terminate: bool,
    ) -> None:
        assert node.workload is not None
        kind, name = node.workload.split("/", 1)
        try:
            child = self.store.get(kind, obj.profile, name)
        except NotFound:
            self._fail(node, f"the step's {kind} {name} disappeared", now, events, node_id)
            return
        phase = child.status.get("phase")
        if terminate and phase not in ("Succeeded", "Failed"):
            try:
                self.store.request_delete(kind, obj.profile, name)
            except NotFound:
                pass
            node.state = RunState.CANCELED
            node.finishTime = now
            return
        if phase not in ("Succeeded", "Failed"):
            return
        if phase == "Failed":
            self._fail(
                node, f"{kind} {name} failed: {child.status.get('message') or ''}", now, events, node_id
            )
            return
        outputs: dict[str, Any] = {"phase": phase}
        produced: list[tuple[str, ArtifactRecord]] = []
        if kind == "Experiment":
            best = child.status.get("currentOptimalTrial") or {}
            outputs["best_parameters"] = {a["name"]: a["value"] for a in best.get("parameterAssignments", [])}
            metrics = (best.get("observation") or {}).get("metrics") or []
            outputs["best_value"] = float(metrics[0]["latest"]) if metrics else None
            outputs["best_trial"] = best.get("bestTrialName")
        else:
            outputs["job_name"] = name
            checkpoints = self.settings.jobs_root / obj.profile / f"{name}-{child.uid}" / "checkpoints"
            if checkpoints.is_dir() and any(p.is_file() for p in checkpoints.rglob("*")):
                uri = self.artifacts.uri_for(obj.profile, "runs", obj.name, node_slug(node_id), "checkpoints")
                try:
                    saved = self.artifacts.put(checkpoints, uri, profile=obj.profile)
                except LumiflowError as exc:
                    self._fail(
                        node,
                        f"the job's checkpoints could not be stored: {exc.message}",
                        now,
                        events,
                        node_id,
                    )
                    return
                ref = {
                    "uri": saved.uri,
                    "digest": saved.digest,
                    "size": saved.size,
                    "type": "Model",
                    "metadata": {},
                }
                outputs["checkpoints"] = {"artifact": ref}
                produced.append(("checkpoints", _artifact_record("checkpoints", ref)))
        node.outputs = outputs
        node.state = RunState.SUCCEEDED
        node.finishTime = now
        consumed = [
            (k, _artifact_record(k, v["artifact"]))
            for k, v in node.inputs.items()
            if isinstance(v, dict) and "artifact" in v
        ]
        self.store.record_execution(
            obj.profile,
            type=kind,
            name=name,
            state="COMPLETE",
            properties={"run": obj.name, "step": node_id},
            inputs=consumed,
            outputs=produced,
            contexts=[("PipelineRun", obj.name)],
        )
        events.append(("Normal", "StepSucceeded", f"{node_id}: {kind} {name} succeeded"))

    def _lineage(
        self,
        obj: StoredObject,
        run: PipelineRun,
        node_id: str,
        node: NodeStatus,
        inputs: dict[str, dict[str, Any]],
        *,
        state: str,
    ) -> None:
        outs = [
            (k, _artifact_record(k, v["artifact"]))
            for k, v in node.outputs.items()
            if isinstance(v, dict) and "artifact" in v
        ]
        params = {k: v for k, v in node.inputs.items() if not (isinstance(v, dict) and "artifact" in v)}
        contexts = [("PipelineRun", obj.name)]
        if run.spec.pipeline:
            contexts.append(("Pipeline", run.spec.pipeline))
        self.store.record_execution(
            obj.profile,
            type="PipelineStep",
            name=f"{obj.name}/{node_id}",
            state=state,
            properties={
                "run": obj.name,
                "step": node_id,
                "component": node.component,
                "parameters": params,
                "cacheKey": node.cacheKey,
            },
            inputs=[(k, _artifact_record(k, v)) for k, v in inputs.items()],
            outputs=outs,
            contexts=contexts,
        )

    def _fail(
        self, node: NodeStatus, message: str, now: str, events: list[tuple[str, str, str]], node_id: str
    ) -> None:
        node.state = RunState.FAILED
        node.message = message
        node.finishTime = now
        events.append(("Warning", "StepFailed", f"{node_id}: {message}"))

    def _finalize(self, obj: StoredObject) -> Result:
        remaining = False
        for kind in ("Workload", "TrainingJob", "Experiment"):
            for child in self.store.list(kind, profile=obj.profile, owner_uid=obj.uid).items:
                remaining = True
                if child.deletion_timestamp is None:
                    try:
                        self.store.request_delete(kind, child.profile, child.name)
                    except NotFound:
                        pass
        if remaining:
            return Result(requeue_after=1.0)
        if OWNER_FINALIZER in obj.finalizers:
            self.store.update(obj.copy(finalizers=[f for f in obj.finalizers if f != OWNER_FINALIZER]))
        return DONE


_PLACEHOLDER = re.compile(r"\$\{inputs\.([A-Za-z0-9_-]+)\}")


def _artifact_record(name: str, ref: dict[str, Any]) -> ArtifactRecord:
    return ArtifactRecord(
        uri=ref["uri"],
        type=str(ref.get("type") or "Artifact"),
        name=name,
        digest=ref.get("digest"),
        size=ref.get("size"),
        properties={"metadata": ref.get("metadata") or {}},
    )


def _substitute(value: Any, values: dict[str, Any], *, in_list: bool = False) -> Any:
    """``${inputs.NAME}`` replaced by the step's input; a string that is one placeholder and
    nothing else becomes the value itself (``replicas: ${inputs.n}`` stays a number), except
    in a list (command and args are text)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(1) in values and not in_list:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), value)
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, in_list=True) for v in value]
    return value
