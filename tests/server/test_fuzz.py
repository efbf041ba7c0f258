"""Fuzzing the API from its own OpenAPI document (schemathesis strategies driven by
Hypothesis): a signed-in user sends what the schema allows, and beyond; no answer is a 5xx,
every error has the error format, and no answer carries another profile's data.

Schemathesis' own pytest plugin does not load with this pytest, so each operation of the
document is a parametrized test that runs its Hypothesis strategy directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import ApiHarness, _api
from tests.jobs import job_manifest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SECRET = "classified-shower-sim"
EXAMPLES = 20


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    home: Path = tmp_path_factory.mktemp("fuzz") / "home"
    home.mkdir()
    harness = next(_api_iter := _api(home, {}))
    keeper = harness.add_user("secret-keeper", "secret-group")
    r = harness.client.post(
        "/api/v1/apply",
        headers={"Authorization": f"Bearer {keeper}"},
        json=job_manifest(SECRET, "print(1)", run_policy={"suspend": True}),
    )
    assert r.status_code == 201, r.text
    harness.fuzz_token = harness.add_user("fuzzer", "physics")  # type: ignore[attr-defined]
    harness.schema = schemathesis.openapi.from_asgi("/openapi.json", harness.client.app)  # type: ignore[attr-defined]
    yield harness
    for _ in _api_iter:  # closes the client and stops the platform
        pass


def operation_labels() -> list[str]:
    import tempfile

    from lumiflow.common.settings import Settings
    from lumiflow.server.app import create_app
    from lumiflow.server.platform import Platform

    platform = Platform(Settings.load(home=tempfile.mkdtemp()))
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(platform, manage_lifecycle=False))
        return [result.ok().label for result in schema.get_all_operations()]
    finally:
        platform.stop()


@pytest.mark.parametrize("label", operation_labels())
def test_no_server_errors_and_no_leaks(harness: ApiHarness, label: str) -> None:
    operation = harness.schema.find_operation_by_label(label)  # type: ignore[attr-defined]
    token = harness.fuzz_token  # type: ignore[attr-defined]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        # Writes are pinned to the fuzzer's own profile, so they change only its data.
        if case.path_parameters and "profile" in case.path_parameters:
            case.path_parameters["profile"] = "fuzzer"
        response = case.call(headers={**(case.headers or {}), "Authorization": f"Bearer {token}"})
        where = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
        assert SECRET not in response.text, where
        assert "secret-keeper" not in response.text, where
        if response.status_code >= 400 and "json" in response.headers.get("content-type", [""])[0]:
            body = response.json()
            assert {"error", "message"} <= set(body), (where, body)

    check()


def test_the_fuzzer_reached_the_platform(harness: ApiHarness) -> None:
    """Guards the test above against testing nothing: its requests reached the live API."""
    operation = harness.schema.find_operation_by_label("GET /api/v1/whoami")  # type: ignore[attr-defined]
    case = operation.Case()
    response = case.call(headers={"Authorization": f"Bearer {harness.fuzz_token}"})  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.json()["user"] == "fuzzer"
    text = harness.client.get("/metrics").text
    served = sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("lumiflow_http_requests_total")
    )
    assert served > 100
