"""Bad input gets a clear 4xx naming the field or the reason, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ApiHarness
from tests.helpers import wait_until
from tests.jobs import job_manifest

pytestmark = pytest.mark.timeout(30)


def stored_jobs(api: ApiHarness) -> list[str]:
    r = api.request("GET", "/api/v1/trainingjobs")
    return [i["metadata"]["name"] for i in r.json()["items"]]


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) >= {"error", "message", "field"}, body
    assert "Traceback" not in body["message"]
    return dict(body)


YAML_HEADERS = {"Content-Type": "application/yaml"}


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("apiVersion: lumiflow.dev/v1\nkind: TrainingJob\nmetadata: {name: x\nspec: {}\n", 400, "line"),
        ("- just\n- a list\n", 400, "mapping"),
        (
            "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
            400,
            "alias",
        ),
        ("[" * 5000 + "]" * 5000, 400, "nested"),
        ("\xff\xfe", 400, ""),
    ],
)
def test_malformed_yaml(api: ApiHarness, body: str, status: int, needle: str) -> None:
    r = api.request(
        "POST",
        "/api/v1/apply",
        content=body.encode("utf-8", "surrogateescape") if "\xff" not in body else b"\xff\xfe",
        headers=YAML_HEADERS,
    )
    assert r.status_code == status, r.text
    assert needle in error_of(r)["message"]
    assert stored_jobs(api) == []


def test_malformed_json(api: ApiHarness) -> None:
    r = api.request(
        "POST", "/api/v1/apply", content=b'{"kind": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in error_of(r)["message"]
    r = api.request("POST", "/api/v1/apply", content=b"[" * 100_000 + b"]" * 100_000)
    assert r.status_code in (400, 413)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(kind="Nope"), "kind"),
        (
            lambda d: d["spec"]["replicaSpecs"]["Worker"].update(replicas=-1),
            "spec.replicaSpecs.Worker.replicas",
        ),
        (lambda d: d["spec"]["replicaSpecs"]["Worker"].update(replica=2), "spec.replicaSpecs.Worker.replica"),
        (
            lambda d: d["spec"]["replicaSpecs"]["Worker"].update(replicas="many"),
            "spec.replicaSpecs.Worker.replicas",
        ),
        (lambda d: d["metadata"].update(name="UPPER_case"), "metadata.name"),
        (lambda d: d["spec"].update(cluster="mars"), "spec.cluster"),
    ],
)
def test_invalid_manifests_name_the_field_and_store_nothing(api: ApiHarness, mutate: Any, field: str) -> None:
    doc = job_manifest("bad", "print(1)")
    mutate(doc)
    r = api.request("POST", "/api/v1/apply", json=doc)
    assert r.status_code == 422, r.text
    assert error_of(r)["field"] == field
    assert stored_jobs(api) == []


def test_a_ten_megabyte_manifest_is_refused(api: ApiHarness) -> None:
    doc = job_manifest("huge", "print(1)")
    doc["metadata"]["annotations"] = {"blob": "x" * (10 * 1024 * 1024)}
    r = api.request(
        "POST",
        "/api/v1/apply",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert "larger than" in error_of(r)["message"]

    # Without Content-Length (chunked), the limit holds too.
    def chunks() -> Any:
        data = json.dumps(doc).encode()
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]

    r = api.request("POST", "/api/v1/apply", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert stored_jobs(api) == []


def test_empty_body(api: ApiHarness) -> None:
    r = api.request("POST", "/api/v1/apply", content=b"")
    assert r.status_code == 400
    assert "empty" in error_of(r)["message"]


def test_query_parameters_are_checked(api: ApiHarness) -> None:
    r = api.request("GET", "/api/v1/trainingjobs", params={"limit": "lots"})
    assert r.status_code == 422
    assert error_of(r)["field"] == "limit"
    r = api.request("GET", "/api/v1/trainingjobs", params={"labelSelector": "a in ()"})
    assert r.status_code == 400
    r = api.request("GET", "/api/v1/trainingjobs", params={"continue": "%%%not-a-token"})
    assert r.status_code == 400
    assert error_of(r)["field"] == "continue"


def test_immutable_fields_and_stale_versions(api: ApiHarness) -> None:
    doc = job_manifest("fixed", "import time; time.sleep(30)")
    created = api.request("POST", "/api/v1/apply", json=doc).json()
    changed = json.loads(json.dumps(doc))
    changed["spec"]["replicaSpecs"]["Worker"]["replicas"] = 3
    r = api.request("POST", "/api/v1/apply", json=changed)
    assert r.status_code == 422
    assert error_of(r)["field"] == "spec.replicaSpecs"
    # A stale resourceVersion on replace is a conflict.
    stale = json.loads(json.dumps(doc))
    stale["metadata"]["resourceVersion"] = "1"
    stale["metadata"]["labels"] = {"x": "y"}
    # Stale once the controller has written the job's status (it races this test's requests).
    wait_until(
        lambda: (
            int(
                api.request("GET", "/api/v1/profiles/admin/trainingjobs/fixed").json()["metadata"][
                    "resourceVersion"
                ]
            )
            > 1
        ),
        timeout=10,
        message="the controller's first status write",
    )
    r = api.request("PUT", "/api/v1/profiles/admin/trainingjobs/fixed", json=stale)
    assert r.status_code == 409
    assert error_of(r)["field"] == "metadata.resourceVersion"
    after = api.request("GET", "/api/v1/profiles/admin/trainingjobs/fixed").json()
    assert "labels" not in after["metadata"]
    assert created["metadata"]["uid"] == after["metadata"]["uid"]
    api.request("DELETE", "/api/v1/profiles/admin/trainingjobs/fixed")


def test_apply_is_idempotent(api: ApiHarness) -> None:
    doc = job_manifest("same", "print(1)", run_policy={"suspend": True})
    first = api.request("POST", "/api/v1/apply", json=doc)
    second = api.request("POST", "/api/v1/apply", json=doc)
    assert (first.status_code, first.headers["x-lumiflow-action"]) == (201, "created")
    assert (second.status_code, second.headers["x-lumiflow-action"]) == (200, "unchanged")
    doc["metadata"]["labels"] = {"team": "calo"}
    third = api.request("POST", "/api/v1/apply", json=doc)
    assert third.headers["x-lumiflow-action"] == "configured"
    assert third.json()["metadata"]["labels"] == {"team": "calo"}


def test_workloads_cannot_be_written_by_users(api: ApiHarness) -> None:
    doc = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Workload",
        "metadata": {"name": "w"},
        "spec": {"replicas": [{"name": "x", "command": ["true"]}]},
    }
    r = api.request("POST", "/api/v1/apply", json=doc)
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


def test_unknown_routes_and_methods_answer_in_the_error_format(api: ApiHarness) -> None:
    assert error_of(api.request("GET", "/api/v1/nothing-here"))["error"] == "not_found"
    r = api.request("PATCH", "/api/v1/profiles/admin/trainingjobs/x")
    assert r.status_code == 405
    error_of(r)


def test_labels_select_and_pages_do_not_repeat(api: ApiHarness) -> None:
    for i in range(7):
        doc = job_manifest(
            f"p{i}", "print(1)", run_policy={"suspend": True}, labels={"team": "a" if i % 2 else "b"}
        )
        assert api.request("POST", "/api/v1/apply", json=doc).status_code == 201
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 2, "labelSelector": "team=a"}
        if token:
            params["continue"] = token
        body = api.request("GET", "/api/v1/profiles/admin/trainingjobs", params=params).json()
        seen += [i["metadata"]["name"] for i in body["items"]]
        token = body["metadata"].get("continue")
        if not token:
            break
    assert seen == ["p1", "p3", "p5"]


def test_status_subresource(api: ApiHarness) -> None:
    doc = job_manifest("st", "print(1)", run_policy={"suspend": True})
    api.request("POST", "/api/v1/apply", json=doc)
    body = api.request("GET", "/api/v1/profiles/admin/trainingjobs/st/status").json()
    assert set(body) == {"apiVersion", "kind", "metadata", "status"}
    assert body["metadata"]["name"] == "st"
    assert api.request("GET", "/api/v1/profiles/admin/trainingjobs/none/status").status_code == 404
