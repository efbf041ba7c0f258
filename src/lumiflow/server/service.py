"""What the API does with resources, after authentication and before the store.

Every operation checks access first: an object in a profile the caller cannot see answers
404 exactly as if it did not exist. Writes validate through the kinds registry and change
nothing when they fail.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from lumiflow.auth.identity import Identity
from lumiflow.common.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from lumiflow.common.quantity import Resources
from lumiflow.pipelines.checks import PIPELINE_LABEL, checked_pipeline_spec, resolve_run_spec
from lumiflow.resources import KindInfo, Profile, Role, prepare
from lumiflow.resources.workload import ACTIVE_PHASES, WAITING_PHASES, Workload
from lumiflow.server.platform import Platform
from lumiflow.store import StoredObject, parse_selector

MAX_PAGE = 1000
#: How often an update without a resourceVersion is retried when a status write intervenes.
UNCONDITIONAL_TRIES = 5
DELETING = "metadata.deletionTimestamp"


@dataclass(frozen=True)
class Page:
    items: builtins.list[dict[str, Any]]
    continue_token: str | None


class ResourceService:
    def __init__(self, platform: Platform) -> None:
        self.p = platform

    # --- access --------------------------------------------------------------------------

    def role_in(self, identity: Identity, profile: str) -> Role:
        return self.p.access.profile_role(identity, self.p.profiles.membership(profile))

    def require(self, identity: Identity, profile: str, needed: Role) -> Role:
        membership = self.p.profiles.membership(profile)
        if membership is None:
            raise NotFound(f"profile {profile!r} not found")
        return self.p.access.require_profile(identity, profile, membership, needed)

    def visible_profiles(self, identity: Identity) -> builtins.list[str]:
        return [name for name in self.p.profiles.names() if self.role_in(identity, name) is not Role.NONE]

    def default_profile(self, identity: Identity) -> str:
        return self.p.personal_profile(identity)

    # --- reads ---------------------------------------------------------------------------

    def _present(self, obj: StoredObject, usage: dict[str, Resources] | None = None) -> dict[str, Any]:
        manifest = obj.to_manifest()
        if obj.kind == "Profile":
            manifest["status"] = self._profile_status(obj, usage)
        return manifest

    def _usage(self, profiles: builtins.list[str] | None = None) -> dict[str, Resources]:
        used: dict[str, Resources] = {}
        for obj in self.p.store.list("Workload", phases=ACTIVE_PHASES, profiles=profiles).items:
            try:
                request = Workload.parse(obj.to_manifest()).spec.request()
            except ValidationFailed:
                continue
            used[obj.profile] = used.get(obj.profile, Resources()) + request
        return used

    def _profile_status(self, obj: StoredObject, usage: dict[str, Resources] | None) -> dict[str, Any]:
        if usage is None:
            usage = self._usage([obj.name])
        used = usage.get(obj.name, Resources())
        try:
            quota = Profile.parse(obj.to_manifest()).spec.resourceQuotaSpec
            limits, unenforced = quota.limits(), quota.unenforced()
        except ValidationFailed:
            limits, unenforced = None, []
        hard: dict[str, Any] = {}
        if limits is not None:
            for key in ("cpu", "memory", "gpu", "workloads"):
                value = getattr(limits, key)
                if value is not None:
                    hard[key] = value
        status = dict(obj.status)
        status["usage"] = {
            "cpu": used.cpu,
            "memory": used.memory,
            "gpu": used.gpu,
            "workloads": used.workloads,
        }
        status["hard"] = hard
        if unenforced:
            status["unenforced"] = unenforced
        return status

    def get(self, identity: Identity, info: KindInfo, profile: str, name: str) -> dict[str, Any]:
        if info.namespaced:
            self.require(identity, profile, Role.VIEW)
        else:
            self.require(identity, name, Role.VIEW)
        return self._present(self.p.store.get(info.kind, profile if info.namespaced else "", name))

    def metrics(
        self, identity: Identity, info: KindInfo, profile: str, name: str, names: builtins.list[str] | None
    ) -> dict[str, Any]:
        """The metric series of a TrainingJob (or of a Trial's job), read up to now first."""
        self.require(identity, profile, Role.VIEW)
        obj = self.p.store.get(info.kind, profile, name)
        job = obj
        if info.kind != "TrainingJob":
            try:
                job = self.p.store.get("TrainingJob", profile, name)
            except NotFound:
                return {"kind": info.kind, "name": name, "metrics": {}}
            if job.owner_uid != obj.uid:
                return {"kind": info.kind, "name": name, "metrics": {}}
        self.p.metrics.collect(job)
        series: dict[str, builtins.list[dict[str, Any]]] = {}
        for record in self.p.store.list_metrics(job.uid, names=names):
            series.setdefault(record.name, []).append(record.to_dict())
        return {"kind": info.kind, "name": name, "job": job.name, "metrics": series}

    def lineage(self, identity: Identity, profile: str, uri: str, *, downstream: bool) -> dict[str, Any]:
        """What produced the artifact at ``uri`` (or what it went into), within the profile."""
        self.require(identity, profile, Role.VIEW)
        graph = self.p.store.lineage(profile, uri, downstream=downstream)
        if not graph["artifacts"]:
            raise NotFound(f"no artifact {uri!r} in profile {profile!r}", field="uri")
        return {
            "kind": "Lineage",
            "uri": uri,
            "direction": "downstream" if downstream else "upstream",
            **graph,
        }

    def artifacts(self, identity: Identity, profile: str, *, limit: int) -> builtins.list[dict[str, Any]]:
        self.require(identity, profile, Role.VIEW)
        return self.p.store.list_artifacts(profile, limit=limit)

    def list(
        self,
        identity: Identity,
        info: KindInfo,
        *,
        profile: str | None,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> Page:
        self.p.access.require_role(identity)
        selector = parse_selector(label_selector)
        if limit is not None and (limit < 1 or limit > MAX_PAGE):
            raise BadRequest(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if info.namespaced:
            if profile is not None:
                self.require(identity, profile, Role.VIEW)
                result = self.p.store.list(
                    info.kind, profile=profile, selector=selector, limit=limit, continue_token=continue_token
                )
            else:
                profiles = None if identity.is_admin else self.visible_profiles(identity)
                result = self.p.store.list(
                    info.kind,
                    profiles=profiles,
                    selector=selector,
                    limit=limit,
                    continue_token=continue_token,
                )
            return Page([self._present(o) for o in result.items], result.continue_token)
        visible = None if identity.is_admin else set(self.visible_profiles(identity))
        result = self.p.store.list(info.kind, selector=selector, limit=limit, continue_token=continue_token)
        items = [o for o in result.items if visible is None or o.name in visible]
        usage = self._usage([o.name for o in items]) if items else {}
        return Page([self._present(o, usage) for o in items], result.continue_token)

    def clusters(self, identity: Identity) -> builtins.list[dict[str, Any]]:
        """Every cluster with its capacity, what is in use and how many Workloads wait."""
        self.p.access.require_role(identity)
        used: dict[str, Resources] = {}
        queued: dict[str, int] = {}
        for obj in self.p.store.list("Workload", phases=(*ACTIVE_PHASES, *WAITING_PHASES)).items:
            wl = Workload.parse(obj.to_manifest())
            if wl.status.phase.holds_resources() and wl.status.cluster:
                used[wl.status.cluster] = used.get(wl.status.cluster, Resources()) + wl.spec.request()
            elif wl.status.phase.is_waiting():
                target = wl.spec.cluster or self.p.clusters.home_name
                queued[target] = queued.get(target, 0) + 1
        items = []
        for name, backend in self.p.clusters:
            config = self.p.clusters.configs[name]
            cap = backend.capacity()
            u = used.get(name, Resources())
            items.append(
                {
                    "name": name,
                    "type": config.type,
                    "home": config.home,
                    "labels": config.labels,
                    "capacity": {"cpu": cap.total.cpu, "memory": cap.total.memory, "gpu": cap.total.gpu},
                    "used": {"cpu": u.cpu, "memory": u.memory, "gpu": u.gpu, "workloads": u.workloads},
                    "queued": queued.get(name, 0),
                }
            )
        return items

    def events(
        self, identity: Identity, info: KindInfo, profile: str, name: str
    ) -> builtins.list[dict[str, Any]]:
        if info.namespaced:
            self.require(identity, profile, Role.VIEW)
        else:
            self.require(identity, name, Role.VIEW)
        obj = self.p.store.get(info.kind, profile if info.namespaced else "", name)
        return [e.to_dict() for e in self.p.store.list_events(uid=obj.uid)]

    # --- writes --------------------------------------------------------------------------

    def _check_writable(self, info: KindInfo) -> None:
        if not info.user_writable:
            raise Forbidden(
                f"{info.kind} objects are created by lumiflow's controllers and cannot be written"
            )

    def _check_spec(self, identity: Identity, info: KindInfo, obj: StoredObject) -> None:
        if info.kind == "TrainingJob":
            cluster = obj.spec.get("cluster")
            if cluster is not None and cluster not in self.p.clusters.names():
                known = ", ".join(self.p.clusters.names())
                raise ValidationFailed(
                    f"spec.cluster: cluster {cluster!r} does not exist (known: {known})", field="spec.cluster"
                )
        if info.kind in ("Experiment", "PipelineRun"):
            cluster = obj.spec.get("cluster")
            if cluster is not None and cluster not in self.p.clusters.names():
                known = ", ".join(self.p.clusters.names())
                raise ValidationFailed(
                    f"spec.cluster: cluster {cluster!r} does not exist (known: {known})", field="spec.cluster"
                )
        if info.kind == "PipelineVersion":
            obj.spec["pipelineSpec"] = checked_pipeline_spec(
                obj.spec.get("pipelineSpec"), "spec.pipelineSpec"
            )
            obj.labels = {**obj.labels, PIPELINE_LABEL: str(obj.spec.get("pipeline"))}
        if info.kind == "PipelineRun":
            self._resolve_run(obj)
        if info.kind == "RecurringRun" and obj.spec.get("enabled", True):
            # The pipeline, version and parameters must make a run now (a disabled schedule
            # is not checked: disabling one whose pipeline was deleted must work).
            obj.spec["parameters"] = resolve_run_spec(self.p.store, obj.profile, obj.spec)["parameters"]
        if info.kind == "Profile":
            cluster = obj.spec.get("cluster")
            if cluster is not None and cluster not in self.p.clusters.names():
                raise ValidationFailed(
                    f"spec.cluster: cluster {cluster!r} does not exist", field="spec.cluster"
                )

    def _resolve_run(self, obj: StoredObject) -> None:
        """A run names a pipeline (and a version: the latest by default) or carries a spec;
        the spec it will run is copied into it, and its parameters are checked."""
        obj.spec = resolve_run_spec(self.p.store, obj.profile, obj.spec)
        if obj.spec.get("pipeline"):
            obj.labels = {**obj.labels, PIPELINE_LABEL: str(obj.spec["pipeline"])}

    def _prepare(self, identity: Identity, doc: Any, *, profile: str | None, name: str | None = None) -> Any:
        self.p.access.require_role(identity)
        prepared = prepare(self.p.kinds, doc, profile=profile, name=name)
        if prepared.info.namespaced and not prepared.obj.profile:
            raise ValidationFailed("the profile is not known", field="metadata.namespace")
        return prepared

    def _default_profile_for(self, identity: Identity, doc: Any, profile: str | None) -> str | None:
        if profile:
            return profile
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("metadata"), dict)
            and doc["metadata"].get("namespace")
        ):
            return None
        return self.default_profile(identity)

    def create(self, identity: Identity, doc: Any, *, profile: str | None) -> dict[str, Any]:
        prepared = self._prepare(identity, doc, profile=self._default_profile_for(identity, doc, profile))
        info, obj = prepared.info, prepared.obj
        self._check_writable(info)
        self._authorize_write(identity, info, obj)
        self._check_spec(identity, info, obj)
        created = self.p.store.create(obj)
        return self._present(created)

    def _authorize_write(self, identity: Identity, info: KindInfo, obj: StoredObject) -> None:
        if info.kind == "Profile":
            existing = self.p.profiles.membership(obj.name)
            if existing is None:
                self.p.access.require_admin(identity)
            else:
                self.require(identity, obj.name, Role.OWNER)
                if not identity.is_admin and obj.spec.get("resourceQuotaSpec") != self._current_quota(
                    obj.name
                ):
                    raise Forbidden("only an admin can change a profile's quota")
        else:
            self.require(identity, obj.profile, Role.EDIT)

    def _current_quota(self, name: str) -> Any:
        try:
            return self.p.store.get("Profile", "", name).spec.get("resourceQuotaSpec")
        except NotFound:
            return None

    def update(self, identity: Identity, doc: Any, *, profile: str | None, name: str) -> dict[str, Any]:
        prepared = self._prepare(identity, doc, profile=profile, name=name)
        return self._update(identity, prepared, expected_rv=prepared.resource_version)[0]

    def _update(
        self, identity: Identity, prepared: Any, *, expected_rv: int | None
    ) -> tuple[dict[str, Any], bool]:
        info, obj = prepared.info, prepared.obj
        self._check_writable(info)
        self._authorize_write(identity, info, obj)
        if expected_rv is not None:
            return self._update_once(identity, prepared, expected_rv=expected_rv)
        # The client did not ask for optimistic concurrency: its spec replaces the stored
        # one even if a controller wrote the status in between (a few tries, then 409).
        for _ in range(UNCONDITIONAL_TRIES - 1):
            try:
                return self._update_once(identity, prepared, expected_rv=None)
            except Conflict as exc:
                if exc.field == DELETING:
                    raise
        return self._update_once(identity, prepared, expected_rv=None)

    def _update_once(
        self, identity: Identity, prepared: Any, *, expected_rv: int | None
    ) -> tuple[dict[str, Any], bool]:
        info, obj = prepared.info, prepared.obj
        current = self.p.store.get(info.kind, obj.profile, obj.name)
        if current.deletion_timestamp is not None:
            raise Conflict(f"{info.kind} {obj.name!r} is being deleted", field=DELETING)
        if info.check_update is not None:
            try:
                info.check_update(current.spec, obj.spec, current.status)
            except ValueError as exc:
                raise ValidationFailed(
                    f"{exc} cannot be changed after creation (delete and re-create the {info.kind})",
                    field=str(exc),
                ) from None
        self._check_spec(identity, info, obj)
        if (
            current.spec == obj.spec
            and current.labels == obj.labels
            and current.annotations == obj.annotations
        ):
            return self._present(current), False
        updated = self.p.store.update(
            current.copy(spec=obj.spec, labels=obj.labels, annotations=obj.annotations),
            expected_rv=expected_rv if expected_rv is not None else current.resource_version,
        )
        return self._present(updated), True

    def apply(self, identity: Identity, doc: Any, *, profile: str | None) -> tuple[dict[str, Any], str]:
        """Creates or updates; returns the object and what happened (created, configured, unchanged)."""
        prepared = self._prepare(identity, doc, profile=self._default_profile_for(identity, doc, profile))
        info, obj = prepared.info, prepared.obj
        self._check_writable(info)
        try:
            self.p.store.get(info.kind, obj.profile, obj.name)
        except NotFound:
            self._authorize_write(identity, info, obj)
            self._check_spec(identity, info, obj)
            return self._present(self.p.store.create(obj)), "created"
        manifest, changed = self._update(identity, prepared, expected_rv=prepared.resource_version)
        return manifest, "configured" if changed else "unchanged"

    def delete(self, identity: Identity, info: KindInfo, profile: str, name: str) -> dict[str, Any] | None:
        self._check_writable(info)
        if info.kind == "Profile":
            self.require(identity, name, Role.VIEW)
            self.p.access.require_admin(identity)
            for kind in self.p.kinds.kinds.values():
                if kind.namespaced and self.p.store.list(kind.kind, profile=name, limit=1).items:
                    raise Conflict(f"profile {name!r} still holds {kind.plural}; delete them first")
            self.p.store.request_delete("Profile", "", name)
            return None
        self.require(identity, profile, Role.EDIT)
        remaining = self.p.store.request_delete(info.kind, profile, name)
        return self._present(remaining) if remaining is not None else None
