"""The authorization matrix: every API route × {anonymous, other user, viewer, editor,
owner, admin} answers the expected status.

The routes come from the application's own route table, and every one of them must have a
rule below: a new route without a rule fails ``test_every_route_has_a_rule``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lumiflow import dsl
from lumiflow.pipelines import compiler
from tests.conftest import ApiHarness
from tests.jobs import job_manifest

pytestmark = pytest.mark.timeout(120)

ROLES = ("anonymous", "other", "viewer", "editor", "owner", "admin")
PROFILE = "team"

# What each kind of rule answers, by role.
PUBLIC = dict.fromkeys(ROLES, "ok")
SIGNED_IN = {"anonymous": 401, **dict.fromkeys(ROLES[1:], "ok")}
ADMIN_ONLY = {"anonymous": 401, "other": 403, "viewer": 403, "editor": 403, "owner": 403, "admin": "ok"}
PROFILE_READ = {"anonymous": 401, "other": 404, "viewer": "ok", "editor": "ok", "owner": "ok", "admin": "ok"}
PROFILE_WRITE = {"anonymous": 401, "other": 404, "viewer": 403, "editor": "ok", "owner": "ok", "admin": "ok"}
PROFILE_OWNER = {"anonymous": 401, "other": 404, "viewer": 403, "editor": 403, "owner": "ok", "admin": "ok"}
# Profiles are created and deleted by admins only; a non-member does not see the profile.
PROFILE_ADMIN = {"anonymous": 401, "other": 404, "viewer": 403, "editor": 403, "owner": 403, "admin": "ok"}
CREATE_PROFILE = ADMIN_ONLY


@dataclass
class World:
    api: ApiHarness
    tokens: dict[str, str | None]
    counter: itertools.count  # type: ignore[type-arg]

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def as_admin(self, method: str, path: str, **kw: Any) -> Any:
        r = self.api.request(method, path, **kw)
        assert r.status_code < 300, (method, path, r.text)
        return r


def job(world: World, name: str) -> dict[str, Any]:
    return job_manifest(name, "print(1)", profile=PROFILE, run_policy={"suspend": True})


def existing_job(world: World) -> str:
    name = world.fresh("j")
    world.as_admin("POST", "/api/v1/apply", json=job(world, name))
    return name


def profile_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {"owner": {"kind": "Group", "name": "team-owners"}},
    }


Call = Callable[[World, str], tuple[str, str, dict[str, Any]]]


def fill(path: str, **values: str) -> str:
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path


def _get_named(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    kind_plural = path.split("/")[5]
    if kind_plural == "workloads" or path.endswith("/logs"):  # something that has run
        name = world.fresh("w")
        world.as_admin("POST", "/api/v1/apply", json=job_manifest(name, "print(1)", profile=PROFILE))
        from tests.helpers import wait_until

        wait_until(
            lambda: (
                world.api.request("GET", f"/api/v1/profiles/{PROFILE}/workloads/{name}").status_code == 200
            ),
            timeout=20,
            message="the workload to exist",
        )
    else:
        name = existing_job(world)
    return "GET", fill(path, profile=PROFILE, name=name), {}


def _create_in_profile(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", fill(path, profile=PROFILE), {"json": job(world, world.fresh("c"))}


def _put_job(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    name = existing_job(world)
    doc = job(world, name)
    doc["metadata"]["labels"] = {"changed": "yes"}
    return "PUT", fill(path, profile=PROFILE, name=name), {"json": doc}


def _delete_job(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "DELETE", fill(path, profile=PROFILE, name=existing_job(world)), {}


def _apply(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", path, {"json": job(world, world.fresh("a"))}


def _profile_get(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "GET", fill(path, name=PROFILE), {}


def _profile_put(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    current = world.as_admin("GET", f"/api/v1/profiles/{PROFILE}").json()
    current["metadata"].pop("resourceVersion", None)
    return "PUT", fill(path, name=PROFILE), {"json": current}


def _profile_create(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", path, {"json": profile_doc(world.fresh("p"))}


def _profile_delete(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    # An empty profile the same groups belong to, so that each role sees the same thing.
    name = world.fresh("empty")
    doc = profile_doc(name)
    doc["spec"]["contributors"] = [
        {"kind": "Group", "name": "team-editors", "role": "edit"},
        {"kind": "Group", "name": "team-viewers", "role": "view"},
    ]
    world.as_admin("POST", "/api/v1/profiles", json=doc)
    return "DELETE", fill(path, name=name), {}


def _plain(method: str) -> Call:
    return lambda world, path: (method, path, {})


def _add_user(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", path, {"json": {"name": world.fresh("u"), "groups": ["x"]}}


def _user_named(method: str) -> Call:
    def call(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
        name = world.fresh("u")
        world.as_admin("POST", "/api/v1/users", json={"name": name, "groups": ["x"]})
        return method, fill(path, name=name), {}

    return call


def _create_token(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", path, {"json": {"description": "matrix"}}


def _revoke_own_or_admin(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    # A token of the admin: only the admin may revoke it; others are told it does not exist.
    issued = world.as_admin("POST", "/api/v1/tokens", json={"description": "to revoke"}).json()
    return "DELETE", fill(path, token_id=issued["tokenInfo"]["id"]), {}


def experiment_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": PROFILE},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 1,
            "maxTrialCount": 1,
            "parameters": [{"name": "x", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}}],
            "trialTemplate": {
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": job_manifest("t", "print('loss=${trialParameters.x}')"),
            },
        },
    }


def existing_experiment(world: World) -> str:
    name = world.fresh("e")
    world.as_admin("POST", "/api/v1/apply", json=experiment_doc(name))
    return name


def existing_trial(world: World) -> str:
    """A trial whose job has run (so that it has a log and metrics)."""
    from tests.helpers import wait_until

    trial = f"{existing_experiment(world)}-0000"
    wait_until(
        lambda: world.api.request("GET", f"/api/v1/profiles/{PROFILE}/workloads/{trial}").status_code == 200,
        timeout=20,
        message="the trial's workload to exist",
    )
    return trial


def _named(method: str, make: Callable[[World], str]) -> Call:
    return lambda world, path: (method, fill(path, profile=PROFILE, name=make(world)), {})


def _create_experiment(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    return "POST", fill(path, profile=PROFILE), {"json": experiment_doc(world.fresh("ce"))}


def _put_experiment(world: World, path: str) -> tuple[str, str, dict[str, Any]]:
    name = existing_experiment(world)
    doc = experiment_doc(name)
    doc["spec"]["maxTrialCount"] = 2
    return "PUT", fill(path, profile=PROFILE, name=name), {"json": doc}


def tiny_pipeline_spec() -> dict[str, Any]:
    @dsl.component
    def write(data: dsl.Output[dsl.Dataset]) -> None:
        with open(data.path, "w") as fh:
            fh.write("x")

    @dsl.pipeline(name="tiny")
    def tiny() -> None:
        write()

    return compiler.compile(tiny).model_dump(mode="json", exclude_none=True)


def pipeline_doc(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"description": "matrix"}
    if kind == "PipelineVersion":
        spec = {"pipeline": "p", "version": 1, "pipelineSpec": tiny_pipeline_spec()}
    elif kind == "PipelineRun":
        spec = {"pipelineSpec": tiny_pipeline_spec()}
    elif kind == "Model":
        spec = {
            "model": "m",
            "version": 1,
            "artifact": {"uri": "file:///tmp/lumiflow-matrix-model", "type": "Model"},
            "stage": "Staging",
        }
    elif kind == "RecurringRun":
        # Disabled: the matrix is about access (a disabled schedule needs no uploaded pipeline
        # and starts nothing); schedules are tested in tests/pipelines/test_recurring.py.
        spec = {"pipeline": "p", "trigger": {"interval": {"seconds": 3600}}, "enabled": False}
    return {
        "apiVersion": "lumiflow.dev/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": PROFILE},
        "spec": spec,
    }


def existing_of(kind: str) -> Callable[[World], str]:
    def make(world: World) -> str:
        name = world.fresh(kind.lower()[:3])
        world.as_admin("POST", "/api/v1/apply", json=pipeline_doc(kind, name))
        return name

    return make


def produced_artifact(world: World) -> str:
    """The URI of an artifact a finished run wrote in the profile."""
    from tests.helpers import wait_until

    name = existing_of("PipelineRun")(world)

    def uri() -> str | None:
        run = world.api.request("GET", f"/api/v1/profiles/{PROFILE}/pipelineruns/{name}").json()
        for node in (run.get("status") or {}).get("nodes", {}).values():
            ref = (node.get("outputs") or {}).get("data")
            if ref:
                return str(ref["artifact"]["uri"])
        return None

    return wait_until(uri, timeout=30, message="the run's artifact")


#: A job's replicas push metrics with their own credential; no user token is one.
REPORT_ONLY = dict.fromkeys(ROLES, 401)

OTHERS_TOKEN = {"anonymous": 401, "other": 404, "viewer": 404, "editor": 404, "owner": 404, "admin": "ok"}

#: (method, route template) -> (how to call it, expected status by role)
RULES: dict[tuple[str, str], tuple[Call, dict[str, Any]]] = {
    ("GET", "/healthz"): (_plain("GET"), PUBLIC),
    ("GET", "/api/v1/version"): (_plain("GET"), PUBLIC),
    ("GET", "/metrics"): (_plain("GET"), PUBLIC),
    ("GET", "/openapi.json"): (_plain("GET"), PUBLIC),
    ("GET", "/docs"): (_plain("GET"), PUBLIC),
    ("GET", "/docs/oauth2-redirect"): (_plain("GET"), PUBLIC),
    # How to sign in (read by `lumi login` before it has a token), and / -> the dashboard
    # (which is mounted at /ui with its own session checks: tests/dashboard).
    ("GET", "/api/v1/auth/config"): (_plain("GET"), PUBLIC),
    ("GET", "/"): (_plain("GET"), PUBLIC),
    ("GET", "/api/v1/kinds"): (_plain("GET"), SIGNED_IN),
    ("GET", "/api/v1/clusters"): (_plain("GET"), SIGNED_IN),
    ("GET", "/api/v1/whoami"): (_plain("GET"), SIGNED_IN),
    ("GET", "/api/v1/users"): (_plain("GET"), ADMIN_ONLY),
    ("POST", "/api/v1/users"): (_add_user, ADMIN_ONLY),
    ("GET", "/api/v1/users/{name}"): (_user_named("GET"), ADMIN_ONLY),
    ("DELETE", "/api/v1/users/{name}"): (_user_named("DELETE"), ADMIN_ONLY),
    ("GET", "/api/v1/tokens"): (_plain("GET"), SIGNED_IN),
    ("POST", "/api/v1/tokens"): (_create_token, SIGNED_IN),
    ("DELETE", "/api/v1/tokens/{token_id}"): (_revoke_own_or_admin, OTHERS_TOKEN),
    ("POST", "/api/v1/apply"): (_apply, PROFILE_WRITE),
    ("GET", "/api/v1/profiles"): (_plain("GET"), SIGNED_IN),
    ("POST", "/api/v1/profiles"): (_profile_create, CREATE_PROFILE),
    ("GET", "/api/v1/profiles/{name}"): (_profile_get, PROFILE_READ),
    ("PUT", "/api/v1/profiles/{name}"): (_profile_put, PROFILE_OWNER),
    ("DELETE", "/api/v1/profiles/{name}"): (_profile_delete, PROFILE_ADMIN),
    ("GET", "/api/v1/profiles/{name}/events"): (_profile_get, PROFILE_READ),
    ("POST", "/api/v1/report"): (
        lambda w, p: ("POST", p, {"json": {"metrics": [{"name": "loss", "value": 1}]}}),
        REPORT_ONLY,
    ),
}
for plural, writable in (("trainingjobs", True), ("workloads", False)):
    base = f"/api/v1/profiles/{{profile}}/{plural}"
    RULES[("GET", f"/api/v1/{plural}")] = (_plain("GET"), SIGNED_IN)
    RULES[("GET", base)] = (lambda w, p: ("GET", fill(p, profile=PROFILE), {}), PROFILE_READ)
    for suffix in ("", "/status", "/events", "/logs", *(("/metrics",) if writable else ())):
        RULES[("GET", f"{base}/{{name}}{suffix}")] = (
            (lambda w, p, _s=suffix: _get_named(w, p)),
            PROFILE_READ,
        )
    if writable:
        RULES[("POST", base)] = (_create_in_profile, PROFILE_WRITE)
        RULES[("PUT", f"{base}/{{name}}")] = (_put_job, PROFILE_WRITE)
        RULES[("DELETE", f"{base}/{{name}}")] = (_delete_job, PROFILE_WRITE)


EXPERIMENTS = "/api/v1/profiles/{profile}/experiments"
TRIALS = "/api/v1/profiles/{profile}/trials"
RULES[("GET", "/api/v1/experiments")] = (_plain("GET"), SIGNED_IN)
RULES[("GET", "/api/v1/trials")] = (_plain("GET"), SIGNED_IN)
RULES[("GET", EXPERIMENTS)] = (lambda w, p: ("GET", fill(p, profile=PROFILE), {}), PROFILE_READ)
RULES[("GET", TRIALS)] = (lambda w, p: ("GET", fill(p, profile=PROFILE), {}), PROFILE_READ)
for suffix in ("", "/status", "/events"):
    RULES[("GET", f"{EXPERIMENTS}/{{name}}{suffix}")] = (_named("GET", existing_experiment), PROFILE_READ)
for suffix in ("", "/status", "/events", "/logs", "/metrics"):
    RULES[("GET", f"{TRIALS}/{{name}}{suffix}")] = (_named("GET", existing_trial), PROFILE_READ)
RULES[("POST", EXPERIMENTS)] = (_create_experiment, PROFILE_WRITE)
RULES[("PUT", f"{EXPERIMENTS}/{{name}}")] = (_put_experiment, PROFILE_WRITE)
RULES[("DELETE", f"{EXPERIMENTS}/{{name}}")] = (_named("DELETE", existing_experiment), PROFILE_WRITE)


for kind, plural in (
    ("Pipeline", "pipelines"),
    ("PipelineVersion", "pipelineversions"),
    ("PipelineRun", "pipelineruns"),
    ("RecurringRun", "recurringruns"),
    ("Model", "models"),
):
    base = f"/api/v1/profiles/{{profile}}/{plural}"
    RULES[("GET", f"/api/v1/{plural}")] = (_plain("GET"), SIGNED_IN)
    RULES[("GET", base)] = (lambda w, p: ("GET", fill(p, profile=PROFILE), {}), PROFILE_READ)
    for suffix in ("", "/status", "/events"):
        RULES[("GET", f"{base}/{{name}}{suffix}")] = (_named("GET", existing_of(kind)), PROFILE_READ)
    RULES[("POST", base)] = (
        (lambda w, p, _k=kind: ("POST", fill(p, profile=PROFILE), {"json": pipeline_doc(_k, w.fresh("cp"))})),
        PROFILE_WRITE,
    )
    RULES[("PUT", f"{base}/{{name}}")] = (
        (
            lambda w, p, _k=kind: (
                "PUT",
                fill(p, profile=PROFILE, name=(n := existing_of(_k)(w))),
                {"json": pipeline_doc(_k, n)},
            )
        ),
        PROFILE_WRITE,
    )
    RULES[("DELETE", f"{base}/{{name}}")] = (_named("DELETE", existing_of(kind)), PROFILE_WRITE)
RULES[("GET", "/api/v1/profiles/{profile}/lineage")] = (
    lambda w, p: ("GET", fill(p, profile=PROFILE), {"params": {"uri": produced_artifact(w)}}),
    PROFILE_READ,
)
RULES[("GET", "/api/v1/profiles/{profile}/artifacts")] = (
    lambda w, p: ("GET", fill(p, profile=PROFILE), {}),
    PROFILE_READ,
)


def _flatten(route_list: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in route_list:
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            context = getattr(route, "include_context", None)
            found += _flatten(included.routes, prefix + (getattr(context, "prefix", "") or ""))
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        for method in sorted((getattr(route, "methods", None) or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, prefix + path))
    return found


def routes(api: ApiHarness) -> list[tuple[str, str]]:
    return _flatten(list(api.client.app.routes))  # type: ignore[attr-defined]


@pytest.fixture
def world(api: ApiHarness) -> World:
    tokens: dict[str, str | None] = {
        "anonymous": None,
        "other": api.add_user("olivia", "elsewhere"),
        "viewer": api.add_user("victor", "team-viewers"),
        "editor": api.add_user("edith", "team-editors"),
        "owner": api.add_user("oscar", "team-owners"),
        "admin": api.admin_token,
    }
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Profile",
        "metadata": {"name": PROFILE},
        "spec": {
            "owner": {"kind": "Group", "name": "team-owners"},
            "resourceQuotaSpec": {"hard": {"cpu": "8", "memory": "8Gi"}},
            "contributors": [
                {"kind": "Group", "name": "team-editors", "role": "edit"},
                {"kind": "Group", "name": "team-viewers", "role": "view"},
            ],
        },
    }
    assert api.request("POST", "/api/v1/profiles", json=doc).status_code == 201
    # Every signed-in user has made a first request (their personal profile exists).
    for token in tokens.values():
        if token:
            api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    return World(api, tokens, itertools.count())


def test_every_route_has_a_rule(api: ApiHarness) -> None:
    missing = [r for r in routes(api) if r not in RULES]
    assert not missing, f"routes without an authorization rule: {missing}"
    stale = [r for r in RULES if r not in routes(api)]
    assert not stale, f"rules for routes that no longer exist: {stale}"


def test_the_matrix(world: World) -> None:
    failures = []
    for (method, template), (call, expected) in sorted(RULES.items()):
        for role in ROLES:
            verb, path, kwargs = call(world, template)
            assert verb == method
            token = world.tokens[role]
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = world.api.client.request(method, path, headers=headers, **kwargs)
            want = expected[role]
            ok = response.status_code < 300 if want == "ok" else response.status_code == want
            if not ok:
                failures.append(
                    f"{method} {template} as {role}: {response.status_code}, expected {want} "
                    f"({response.text[:120]})"
                )
            if response.status_code >= 500:
                failures.append(f"{method} {template} as {role}: server error")
    assert not failures, "\n".join(failures)
