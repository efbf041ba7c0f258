"""``lumiflow.Client``: the platform from Python, with the CLI's verbs.

    import lumiflow
    lf = lumiflow.Client()                       # config from `lumi login` / `lumi up`
    lf.apply("job.yaml")                         # create or update, like `lumi apply -f`
    job = lf.wait("trainingjob", "hello")        # until Succeeded or Failed
    for line in lf.logs("trainingjob", "hello", replica="worker-1"):
        print(line, end="")

Every method returns the resources as the API returns them (plain dicts with apiVersion,
kind, metadata, spec, status). Errors raise :class:`ApiError` (a ``LumiflowError`` whose
``code``, ``message`` and ``field`` are the server's).
"""

from __future__ import annotations

import builtins
import dataclasses
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lumiflow.common.documents import load_documents, read_manifests
from lumiflow.common.errors import LumiflowError, NotFound
from lumiflow.sdk.auth import RefreshingAuth
from lumiflow.sdk.config import ClientConfig

TERMINAL = ("Succeeded", "Failed")


class ApiError(LumiflowError):
    """An error answered by the server (or the server could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code
        self.http_status = status or 503


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    writable: bool
    logs: bool
    #: Set when this is another name of ``kind`` (TFJob for TrainingJob): the alias's kind,
    #: its names, and the label selector that picks its objects.
    alias: str | None = None
    alias_names: tuple[str, ...] = ()
    selector: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        if self.alias is not None:
            return self.alias_names
        return (self.kind.lower(), self.plural, self.singular, *self.short_names)

    @property
    def display(self) -> str:
        """The singular a user asked for (``tfjob``), for messages."""
        return self.alias.lower() if self.alias is not None else self.singular

    def selects(self, obj: dict[str, Any]) -> bool:
        if not self.selector:
            return True
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(
            labels.get(key) == value
            for key, _, value in (term.partition("=") for term in self.selector.split(","))
        )


@dataclass(frozen=True)
class Applied:
    action: str  # created | configured | unchanged
    object: dict[str, Any]


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        profile: str | None = None,
        home: str | Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        config = ClientConfig.load(home)
        self.url = (url or config.url).rstrip("/")
        self.profile = profile or config.profile
        if token or self.url != config.url.rstrip("/"):
            # A token given here, or another server than the configured one: nothing to refresh.
            config = ClientConfig(url=self.url, token=token or config.token, profile=self.profile)
        #: Sends the token, refreshing a signed-in user's access token when it expires.
        self.auth = RefreshingAuth(config, home=home)
        self._http = httpx.Client(
            base_url=self.url, headers={"User-Agent": "lumiflow-sdk"}, auth=self.auth, timeout=timeout
        )
        self._kinds: builtins.list[Kind] | None = None
        self.users = _Users(self)
        self.tokens = _Tokens(self)
        self.profiles = _Profiles(self)

    @property
    def token(self) -> str | None:
        return self.auth.token

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transport -----------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"cannot reach lumiflow at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return ApiError(
            response.status_code,
            str(body.get("error") or "error"),
            str(body.get("message") or response.reason_phrase or f"HTTP {response.status_code}"),
            body.get("field"),
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    # --- discovery -----------------------------------------------------------------------

    def kinds(self) -> builtins.list[Kind]:
        """The server's kinds, then their aliases (Kubeflow's TFJob, PyTorchJob, ... are
        TrainingJobs selected by their framework label)."""
        if self._kinds is None:
            items = self._json("GET", "/api/v1/kinds")["items"]
            kinds: builtins.list[Kind] = []
            aliases: builtins.list[Kind] = []
            for i in items:
                base = Kind(
                    i["kind"],
                    i["plural"],
                    i["singular"],
                    tuple(i["shortNames"]),
                    i["namespaced"],
                    i["writable"],
                    i["logs"],
                )
                kinds.append(base)
                for a in i.get("aliases") or []:
                    names = (a["kind"].lower(), a["plural"], a["singular"], *a.get("shortNames", []))
                    aliases.append(
                        dataclasses.replace(
                            base, alias=a["kind"], alias_names=names, selector=a.get("labelSelector")
                        )
                    )
            self._kinds = kinds + aliases
        return self._kinds

    def kind(self, name: str | Kind) -> Kind:
        if isinstance(name, Kind):
            return name
        wanted = name.lower()
        for k in self.kinds():
            if wanted in k.names:
                return k
        known = ", ".join(sorted({k.names[1] for k in self.kinds()}))
        raise NotFound(f"unknown kind {name!r} (known: {known})", field="kind")

    def _path(self, kind: Kind, profile: str | None, name: str | None = None) -> str:
        if kind.namespaced:
            profile = profile or self.profile or self.whoami()["defaultProfile"]
            base = f"/api/v1/profiles/{profile}/{kind.plural}"
        else:
            base = f"/api/v1/{kind.plural}"
        return f"{base}/{name}" if name else base

    # --- verbs ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/healthz")
        return result

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/api/v1/whoami")
        return result

    def clusters(self) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = self._json("GET", "/api/v1/clusters")["items"]
        return items

    def apply(
        self, source: str | Path | dict[str, Any] | Iterable[dict[str, Any]], *, profile: str | None = None
    ) -> builtins.list[Applied]:
        """Creates or updates every document of ``source`` (a path, YAML text, a manifest or several)."""
        results = []
        for doc in _documents(source):
            params = {"profile": profile or self.profile} if (profile or self.profile) else {}
            response = self._request("POST", "/api/v1/apply", json=doc, params=params)
            results.append(Applied(response.headers.get("x-lumiflow-action", "configured"), response.json()))
        return results

    def create(self, manifest: dict[str, Any], *, profile: str | None = None) -> dict[str, Any]:
        kind = self.kind(str(manifest.get("kind", "")))
        namespace = (manifest.get("metadata") or {}).get("namespace")
        result: dict[str, Any] = self._json("POST", self._path(kind, profile or namespace), json=manifest)
        return result

    def get(self, kind: str | Kind, name: str, *, profile: str | None = None) -> dict[str, Any]:
        """One object; through an alias (``tfjob``) only one the alias selects."""
        k = self.kind(kind)
        result: dict[str, Any] = self._json("GET", self._path(k, profile, name))
        if not k.selects(result):
            raise ApiError(
                404, "not_found", f"{k.display} {name!r} not found: it is a {k.kind} outside {k.selector}"
            )
        return result

    def list(
        self,
        kind: str | Kind,
        *,
        profile: str | None = None,
        all_profiles: bool = False,
        label_selector: str | None = None,
        page_size: int = 500,
    ) -> builtins.list[dict[str, Any]]:
        k = self.kind(kind)
        if k.selector:
            label_selector = f"{label_selector},{k.selector}" if label_selector else k.selector
        path = f"/api/v1/{k.plural}" if (all_profiles or not k.namespaced) else self._path(k, profile)
        items: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if label_selector:
                params["labelSelector"] = label_selector
            if token:
                params["continue"] = token
            body = self._json("GET", path, params=params)
            items.extend(body["items"])
            token = body.get("metadata", {}).get("continue")
            if not token:
                return items

    def update(self, manifest: dict[str, Any], *, profile: str | None = None) -> dict[str, Any]:
        kind = self.kind(str(manifest.get("kind", "")))
        meta = manifest.get("metadata") or {}
        result: dict[str, Any] = self._json(
            "PUT", self._path(kind, profile or meta.get("namespace"), meta.get("name")), json=manifest
        )
        return result

    def delete(
        self,
        kind: str | Kind,
        name: str,
        *,
        profile: str | None = None,
        wait: bool = False,
        timeout: float = 120.0,
    ) -> None:
        k = self.kind(kind)
        if k.selector:
            self.get(k, name, profile=profile)  # `delete tfjob x` never deletes a PyTorchJob x
        path = self._path(k, profile, name)
        self._request("DELETE", path)
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    self._request("GET", path)
                except ApiError as exc:
                    if exc.status == 404:
                        return
                    raise
                time.sleep(0.2)
            raise ApiError(0, "timeout", f"{k.singular} {name} still exists after {timeout:g}s")

    def events(
        self, kind: str | Kind, name: str, *, profile: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = self._json(
            "GET", self._path(self.kind(kind), profile, name) + "/events"
        )["items"]
        return items

    def logs(
        self,
        kind: str | Kind,
        name: str,
        *,
        profile: str | None = None,
        replica: str | None = None,
        follow: bool = False,
        attempt: int | None = None,
    ) -> Iterator[str]:
        """Yields the replica's log as text, as it arrives when ``follow``."""
        k = self.kind(kind)
        params: dict[str, Any] = {"follow": str(follow).lower()}
        if replica:
            params["replica"] = replica
        if attempt is not None:
            params["attempt"] = attempt
        path = self._path(k, profile, name) + "/logs"
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                yield from response.iter_text()
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"log stream interrupted: {exc}") from None

    def metrics(
        self, kind: str | Kind, name: str, *, profile: str | None = None, names: Iterable[str] = ()
    ) -> dict[str, builtins.list[dict[str, Any]]]:
        """The metric series of a training job or a trial: ``{"loss": [{"step", "value", "timestamp"}]}``."""
        k = self.kind(kind)
        params = [("name", n) for n in names]
        body = self._json("GET", self._path(k, profile, name) + "/metrics", params=params)
        series: dict[str, builtins.list[dict[str, Any]]] = body.get("metrics", {})
        return series

    # --- pipelines -------------------------------------------------------------------------

    def upload_pipeline(
        self,
        spec: dict[str, Any],
        *,
        name: str,
        description: str | None = None,
        profile: str | None = None,
    ) -> dict[str, Any]:
        """Stores a compiled pipeline spec as the next version of pipeline ``name`` (made if
        new); returns the PipelineVersion."""
        try:
            self.get("pipeline", name, profile=profile)
        except ApiError as exc:
            if exc.status != 404:
                raise
            doc: dict[str, Any] = {
                "apiVersion": "lumiflow.dev/v1",
                "kind": "Pipeline",
                "metadata": {"name": name},
                "spec": {},
            }
            if description:
                doc["spec"]["description"] = description
            self.create(doc, profile=profile)
        versions = self.list(
            "pipelineversions", profile=profile, label_selector=f"pipelines.lumiflow.dev/pipeline={name}"
        )
        number = max((int(v["spec"].get("version", 0)) for v in versions), default=0) + 1
        version: dict[str, Any] = {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "PipelineVersion",
            "metadata": {"name": f"{name[:56]}-v{number}"},
            "spec": {"pipeline": name, "version": number, "pipelineSpec": spec},
        }
        if description:
            version["spec"]["description"] = description
        return self.create(version, profile=profile)

    def create_run(
        self,
        pipeline: str | None = None,
        *,
        spec: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
        version: int | None = None,
        name: str | None = None,
        caching: bool = True,
        profile: str | None = None,
    ) -> dict[str, Any]:
        """Starts a run of an uploaded pipeline (its latest version by default) or of a spec."""
        meta: dict[str, Any] = {"name": name} if name else {"generateName": f"{(pipeline or 'run')[:50]}-"}
        body: dict[str, Any] = {"parameters": dict(parameters or {}), "caching": caching}
        if pipeline:
            body["pipeline"] = pipeline
        if version is not None:
            body["version"] = version
        if spec is not None:
            body["pipelineSpec"] = spec
        doc = {"apiVersion": "lumiflow.dev/v1", "kind": "PipelineRun", "metadata": meta, "spec": body}
        return self.create(doc, profile=profile)

    def terminate_run(self, name: str, *, profile: str | None = None) -> dict[str, Any]:
        """Asks the run to stop; retries when the controller wrote the run meanwhile (409)."""
        for attempt in range(20):
            run = self.get("pipelinerun", name, profile=profile)
            run["spec"]["terminate"] = True
            try:
                return self.update(run, profile=profile)
            except ApiError as exc:
                if exc.status != 409 or attempt == 19:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    def retry_run(self, name: str, *, profile: str | None = None) -> dict[str, Any]:
        """A new run of the same spec and parameters; the steps that succeeded come from the cache."""
        run = self.get("pipelinerun", name, profile=profile)
        spec = run["spec"]
        return self.create_run(
            spec.get("pipeline"),
            spec=spec.get("pipelineSpec") if not spec.get("pipeline") else None,
            version=spec.get("version"),
            parameters=spec.get("parameters"),
            profile=profile or run["metadata"].get("namespace"),
        )

    def create_recurring_run(
        self,
        pipeline: str,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        timezone: str = "UTC",
        parameters: dict[str, Any] | None = None,
        version: int | None = None,
        name: str | None = None,
        max_concurrency: int = 1,
        no_catchup: bool = False,
        caching: bool = True,
        start_time: str | None = None,
        end_time: str | None = None,
        enabled: bool = True,
        profile: str | None = None,
    ) -> dict[str, Any]:
        """Schedules runs of an uploaded pipeline: on a ``cron`` expression or every
        ``interval_seconds`` (give one); returns the RecurringRun."""
        trigger: dict[str, Any] = {}
        if cron is not None:
            trigger["cron"] = {"expression": cron, "timezone": timezone}
        if interval_seconds is not None:
            trigger["interval"] = {"seconds": interval_seconds}
        body: dict[str, Any] = {
            "pipeline": pipeline,
            "parameters": dict(parameters or {}),
            "caching": caching,
            "trigger": trigger,
            "maxConcurrency": max_concurrency,
            "noCatchup": no_catchup,
            "enabled": enabled,
        }
        if version is not None:
            body["version"] = version
        if start_time is not None:
            body["startTime"] = start_time
        if end_time is not None:
            body["endTime"] = end_time
        meta: dict[str, Any] = {"name": name} if name else {"generateName": f"{pipeline[:50]}-"}
        doc = {"apiVersion": "lumiflow.dev/v1", "kind": "RecurringRun", "metadata": meta, "spec": body}
        return self.create(doc, profile=profile)

    def recurring_runs(self, *, profile: str | None = None) -> builtins.list[dict[str, Any]]:
        """The recurring runs of the profile, by name."""
        return self.list("recurringruns", profile=profile)

    def enable_recurring_run(self, name: str, *, profile: str | None = None) -> dict[str, Any]:
        """Starts triggering again (the triggers missed while disabled do not run)."""
        return self._set_enabled(name, True, profile=profile)

    def disable_recurring_run(self, name: str, *, profile: str | None = None) -> dict[str, Any]:
        """Stops triggering; the RecurringRun and its runs stay."""
        return self._set_enabled(name, False, profile=profile)

    def _set_enabled(self, name: str, enabled: bool, *, profile: str | None) -> dict[str, Any]:
        # The controller writes the status often: read, change and write again on a conflict.
        for attempt in range(5):
            obj = self.get("recurringrun", name, profile=profile)
            if obj["spec"].get("enabled", True) == enabled:
                return obj
            obj["spec"]["enabled"] = enabled
            try:
                return self.update(obj, profile=profile)
            except ApiError as exc:
                if exc.status != 409 or exc.field == "metadata.deletionTimestamp" or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def lineage(self, uri: str, *, downstream: bool = False, profile: str | None = None) -> dict[str, Any]:
        profile = profile or self.profile or self.whoami()["defaultProfile"]
        params = {"uri": uri, "direction": "downstream" if downstream else "upstream"}
        result: dict[str, Any] = self._json("GET", f"/api/v1/profiles/{profile}/lineage", params=params)
        return result

    def trials(self, experiment: str, *, profile: str | None = None) -> builtins.list[dict[str, Any]]:
        """The trials of an experiment, by number."""
        items = self.list(
            "trials", profile=profile, label_selector=f"katib.kubeflow.org/experiment={experiment}"
        )
        return sorted(items, key=lambda t: int(t.get("spec", {}).get("number", 0)))

    def wait(
        self,
        kind: str | Kind,
        name: str,
        *,
        profile: str | None = None,
        phases: Iterable[str] = TERMINAL,
        timeout: float = 3600.0,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Polls until ``status.phase`` is one of ``phases``; returns the object."""
        wanted = set(phases)
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(kind, name, profile=profile)
            if obj.get("status", {}).get("phase") in wanted:
                return obj
            if time.monotonic() > deadline:
                raise ApiError(
                    0, "timeout", f"{kind} {name} did not reach {sorted(wanted)} within {timeout:g}s"
                )
            time.sleep(interval)


class _Users:
    def __init__(self, client: Client) -> None:
        self._c = client

    def add(self, name: str, groups: Iterable[str] = (), *, ttl_days: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "groups": list(groups)}
        if ttl_days:
            body["ttlDays"] = ttl_days
        result: dict[str, Any] = self._c._json("POST", "/api/v1/users", json=body)
        return result

    def list(self) -> builtins.list[dict[str, Any]]:
        items: builtins.list[dict[str, Any]] = self._c._json("GET", "/api/v1/users")["items"]
        return items

    def delete(self, name: str) -> None:
        self._c._request("DELETE", f"/api/v1/users/{name}")


class _Tokens:
    def __init__(self, client: Client) -> None:
        self._c = client

    def create(
        self, *, user: str | None = None, description: str = "", ttl_days: float | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"description": description}
        if user:
            body["user"] = user
        if ttl_days:
            body["ttlDays"] = ttl_days
        result: dict[str, Any] = self._c._json("POST", "/api/v1/tokens", json=body)
        return result

    def list(self, *, user: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"user": user} if user else {}
        items: builtins.list[dict[str, Any]] = self._c._json("GET", "/api/v1/tokens", params=params)["items"]
        return items

    def revoke(self, token_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._c._json("DELETE", f"/api/v1/tokens/{token_id}")
        return result


class _Profiles:
    def __init__(self, client: Client) -> None:
        self._c = client

    @staticmethod
    def manifest(
        name: str,
        *,
        owner_group: str | None = None,
        owner_user: str | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        gpu: str | int | None = None,
        max_workloads: int | None = None,
        contributors: Iterable[tuple[str, str, str]] = (),
        cluster: str | None = None,
    ) -> dict[str, Any]:
        if bool(owner_group) == bool(owner_user):
            raise ValueError("give exactly one of owner_group and owner_user")
        hard: dict[str, str] = {}
        if cpu is not None:
            hard["cpu"] = str(cpu)
        if memory is not None:
            hard["memory"] = str(memory)
        if gpu is not None:
            hard["nvidia.com/gpu"] = str(gpu)
        if max_workloads is not None:
            hard["workloads"] = str(max_workloads)
        spec: dict[str, Any] = {
            "owner": {"kind": "Group", "name": owner_group}
            if owner_group
            else {"kind": "User", "name": owner_user},
            "resourceQuotaSpec": {"hard": hard},
            "contributors": [{"kind": kind, "name": who, "role": role} for kind, who, role in contributors],
        }
        if cluster:
            spec["cluster"] = cluster
        return {"apiVersion": "lumiflow.dev/v1", "kind": "Profile", "metadata": {"name": name}, "spec": spec}

    def create(self, name: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._c._json("POST", "/api/v1/profiles", json=self.manifest(name, **kwargs))
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._c._json("GET", f"/api/v1/profiles/{name}")
        return result

    def replace(self, profile: dict[str, Any]) -> dict[str, Any]:
        name = profile["metadata"]["name"]
        result: dict[str, Any] = self._c._json("PUT", f"/api/v1/profiles/{name}", json=profile)
        return result


def _documents(
    source: str | Path | dict[str, Any] | Iterable[dict[str, Any]],
) -> builtins.list[dict[str, Any]]:
    if isinstance(source, dict):
        return [source]
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and Path(source).exists()):
        return [doc for _name, doc in read_manifests(str(source))]
    if isinstance(source, str):
        return load_documents(source)
    return list(source)
