"""Health, metrics, discovery and the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.conftest import ApiHarness
from tests.jobs import job_manifest, submit, wait_phase

pytestmark = pytest.mark.timeout(30)


def test_health_needs_no_token(api: ApiHarness) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_metrics_count_requests_and_workloads(api: ApiHarness) -> None:
    submit(api, job_manifest("m", "print(1)"))
    wait_phase(api, "m", "Succeeded")
    api.request("GET", "/api/v1/profiles/admin/trainingjobs/m")
    text = api.client.get("/metrics").text
    assert 'lumiflow_workloads{phase="Succeeded"} 1.0' in text
    assert "lumiflow_queue_length 0.0" in text
    assert 'route="/api/v1/profiles/{profile}/trainingjobs/{name}"' in text
    assert "lumiflow_http_request_duration_seconds_bucket" in text


def test_openapi_lists_every_kinds_routes(api: ApiHarness) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/v1/apply",
        "/api/v1/profiles",
        "/api/v1/profiles/{profile}/trainingjobs/{name}/logs",
        "/api/v1/profiles/{profile}/workloads/{name}",
        "/api/v1/users",
        "/api/v1/tokens",
    ):
        assert path in paths, path
    # Workloads are read-only through the API.
    assert set(paths["/api/v1/profiles/{profile}/workloads/{name}"]) == {"get"}


def test_kinds_discovery_and_clusters(api: ApiHarness) -> None:
    kinds = {k["kind"]: k for k in api.request("GET", "/api/v1/kinds").json()["items"]}
    assert set(kinds) >= {"Profile", "TrainingJob", "Workload"}
    assert "tj" in kinds["TrainingJob"]["shortNames"]
    assert kinds["Profile"]["namespaced"] is False
    clusters = api.request("GET", "/api/v1/clusters").json()["items"]
    assert [c["name"] for c in clusters] == ["local"]
    assert clusters[0]["home"] is True
    assert clusters[0]["capacity"]["cpu"] > 0
