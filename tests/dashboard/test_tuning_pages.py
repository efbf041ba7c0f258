"""The tuning pages and the job page's metrics over HTTP, without a browser: access exactly as
the API's, CSRF on deleting an experiment, the experiments list paginated and filtered by
profile, and a job with no metrics yet."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ApiHarness
from tests.dashboard.support import Visitor
from tests.jobs import job_manifest, submit
from tests.tuning.experiments import experiment

pytestmark = pytest.mark.timeout(60)

SPACE = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}]


def tiny(name: str, profile: str | None = "admin") -> dict[str, Any]:
    """One quick trial: the pages are the subject here, not the search."""
    doc = experiment(
        name,
        parameters=SPACE,
        command=[sys.executable, "-c", "print('loss=1')", "${trialParameters.x}"],
        parallel=1,
        max_trials=1,
    )
    if profile is None:
        del doc["metadata"]["namespace"]
    return doc


@pytest.fixture
def visitors(api: ApiHarness) -> Iterator[Any]:
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(api.platform))
        return made[-1]

    yield make
    for v in made:
        v.close()


def rows_of(page: str) -> list[str]:
    return [
        row.split('data-experiment="')[1].split('"')[0]
        for row in page.split("<tr")[1:]
        if "data-experiment" in row
    ]


def test_experiment_pages_follow_the_apis_access(api: ApiHarness, visitors: Any) -> None:
    submit(api, tiny("private"))
    submit(api, job_manifest("quiet", "print(1)", run_policy={"suspend": True}))
    bob = visitors()
    bob.sign_in(api.add_user("bob", "biology"))
    for path in (
        "/ui/experiments/admin/private",
        "/ui/experiments/admin/private/_status",
        "/ui/jobs/admin/quiet/_metrics",
    ):
        r = bob.get(path)
        assert r.status_code == 404 and "not found" in r.text, path
    assert "private" not in bob.get("/ui/experiments").text
    r = bob.get("/ui/experiments?profile=admin")
    assert r.status_code == 404 and 'data-experiment="admin/private"' not in r.text, "as the API: not found"
    r = bob.post("/ui/experiments/admin/private/delete", {"csrf": bob.csrf()})
    assert r.status_code == 404
    assert api.request("GET", "/api/v1/profiles/admin/experiments/private").status_code == 200


def test_deleting_an_experiment_needs_the_csrf_token(api: ApiHarness, visitors: Any) -> None:
    submit(api, tiny("doomed"))
    admin, other = visitors(), visitors()
    admin.sign_in(api.admin_token)
    other.sign_in(api.admin_token)
    for token in (None, "", other.csrf()):
        data = {} if token is None else {"csrf": token}
        r = admin.post("/ui/experiments/admin/doomed/delete", data)
        assert r.status_code == 403 and "CSRF" in r.text, token
    assert api.request("GET", "/api/v1/profiles/admin/experiments/doomed").status_code == 200
    page = admin.get("/ui/experiments/admin/doomed").text
    assert 'action="/ui/experiments/admin/doomed/delete"' in page
    r = admin.post("/ui/experiments/admin/doomed/delete", {"csrf": admin.csrf()})
    assert r.status_code == 303 and r.headers["location"] == "/ui/experiments?profile=admin"
    assert "experiment/doomed deleted" in admin.get("/ui/experiments?profile=admin").text


def test_experiments_are_paginated_and_filtered_by_profile(api: ApiHarness, visitors: Any) -> None:
    for i in range(3):
        submit(api, tiny(f"exp-{i}"))
    bob_token = api.add_user("bob", "biology")
    submit(api, tiny("bobs", profile=None), token=bob_token)
    v = visitors()
    v.sign_in(api.admin_token)
    seen: list[str] = []
    url = "/ui/experiments?profile=admin&limit=2"
    for _ in range(3):
        page = v.get(url).text
        seen += rows_of(page)
        if 'id="next-page"' not in page:
            break
        url = page.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert seen == [f"admin/exp-{i}" for i in range(3)]
    assert set(rows_of(v.get("/ui/experiments").text)) == {
        "admin/exp-0",
        "admin/exp-1",
        "admin/exp-2",
        "bob/bobs",
    }
    assert "bob/bobs" not in rows_of(v.get("/ui/experiments?profile=admin").text)
    rows = v.get("/ui/experiments/_rows?profile=bob", headers={"X-Lumiflow-Live": "1"})
    assert rows.status_code == 200 and rows_of(rows.text) == ["bob/bobs"] and "<html" not in rows.text
    assert 'href="/ui/experiments"' in v.get("/ui/").text, "the navigation links the list"


def test_a_job_without_metrics_says_so_and_keeps_refreshing(api: ApiHarness, visitors: Any) -> None:
    submit(api, job_manifest("waiting", "print(1)", run_policy={"suspend": True}))
    v = visitors()
    v.sign_in(api.admin_token)
    page = v.get("/ui/jobs/admin/waiting").text
    assert 'id="no-metrics"' in page and 'data-live="/ui/jobs/admin/waiting/_metrics"' in page
    live = v.get("/ui/jobs/admin/waiting/_metrics", headers={"X-Lumiflow-Live": "1"})
    assert live.status_code == 200 and 'id="no-metrics"' in live.text
    assert "x-lumiflow-final" not in live.headers, "a job that has not ended may still print metrics"
