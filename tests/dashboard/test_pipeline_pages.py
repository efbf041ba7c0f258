"""The pipeline pages over HTTP, without a browser: access exactly as the API's, terminating a
running run (CSRF, then the run canceled) with its step's live log ending by itself, the runs
list paginated and filtered by pipeline, and what is not there answering 404."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ApiHarness
from tests.dashboard.pipelines_for_pages import napping, run_doc, spec_of
from tests.dashboard.support import Visitor
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(90)

LIVE = {"X-Lumiflow-Live": "1"}


@pytest.fixture
def visitors(api: ApiHarness) -> Iterator[Any]:
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(api.platform))
        return made[-1]

    yield make
    for v in made:
        v.close()


def create(api: ApiHarness, plural: str, doc: dict[str, Any]) -> dict[str, Any]:
    r = api.request("POST", f"/api/v1/profiles/admin/{plural}", json=doc)
    assert r.status_code == 201, r.text
    return dict(r.json())


def run_of(api: ApiHarness, name: str) -> dict[str, Any]:
    return dict(api.request("GET", f"/api/v1/profiles/admin/pipelineruns/{name}").json())


def rows_of(page: str) -> list[str]:
    return [row.split('data-run="')[1].split('"')[0] for row in page.split("<tr")[1:] if "data-run=" in row]


def test_terminating_a_run_and_its_steps_log(api: ApiHarness, visitors: Any) -> None:
    create(api, "pipelineruns", run_doc("sleepy", napping, parameters={"seconds": 60}))
    step = "nap"
    wait_until(
        lambda: (run_of(api, "sleepy")["status"].get("nodes") or {}).get(step, {}).get("workload"),
        timeout=30,
        interval=0.1,
        message="the step to start",
    )
    admin, other = visitors(), visitors()
    admin.sign_in(api.admin_token)
    other.sign_in(api.admin_token)
    page = admin.get("/ui/runs/admin/sleepy").text
    assert 'action="/ui/runs/admin/sleepy/terminate"' in page and 'id="terminate"' in page
    assert 'data-log="/ui/runs/admin/sleepy/_logs?step=nap"' in page  # opened on the running step
    wait_until(
        lambda: "dozing off" in admin.get("/ui/runs/admin/sleepy/log.txt?step=nap").text,
        timeout=30,
        message="the step's first line",
    )
    for token in (None, "", other.csrf()):
        r = admin.post("/ui/runs/admin/sleepy/terminate", {} if token is None else {"csrf": token})
        assert r.status_code == 403 and "CSRF" in r.text, token
    assert not run_of(api, "sleepy")["spec"]["terminate"]

    r = admin.post("/ui/runs/admin/sleepy/terminate", {"csrf": admin.csrf()})
    assert r.status_code == 303 and r.headers["location"] == "/ui/runs/admin/sleepy"
    assert run_of(api, "sleepy")["spec"]["terminate"] is True
    status = wait_until(
        lambda: (s := run_of(api, "sleepy")["status"])["state"] == "CANCELED" and s,
        timeout=30,
        interval=0.2,
        message="the run to be canceled",
    )
    assert status["nodes"][step]["state"] == "CANCELED"
    page = admin.get("/ui/runs/admin/sleepy").text
    assert 'id="terminate"' not in page and "CANCELED" in page
    fragment = admin.get("/ui/runs/admin/sleepy/_status", headers=LIVE)
    assert fragment.headers.get("x-lumiflow-final") == "1" and 'data-node="nap"' in fragment.text
    # The live log of a step that has ended is all of it, then the end.
    events = admin.get("/ui/runs/admin/sleepy/_logs?step=nap", headers=LIVE)
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "dozing off" in events.text and events.text.rstrip().endswith("event: end\ndata: {}")
    # Resuming after the last line sends nothing twice.
    last = [line for line in events.text.splitlines() if line.startswith("id: ")][-1][4:]
    again = admin.get("/ui/runs/admin/sleepy/_logs?step=nap", headers={**LIVE, "Last-Event-ID": last})
    assert "dozing off" not in again.text and "event: end" in again.text


def test_pipeline_pages_follow_the_apis_access(api: ApiHarness, visitors: Any) -> None:
    create(api, "pipelineruns", run_doc("private", napping, parameters={"seconds": 0.1}))
    status = wait_until(
        lambda: (s := run_of(api, "private")["status"]).get("state") == "SUCCEEDED" and s,
        timeout=30,
        interval=0.2,
        message="the run to finish",
    )
    assert status["nodes"]["nap"]["workload"]
    bob = visitors()
    bob.sign_in(api.add_user("bob", "biology"))
    for path in (
        "/ui/runs/admin/private",
        "/ui/runs/admin/private/_status",
        "/ui/runs/admin/private/_step?step=nap",
        "/ui/runs/admin/private/_logs?step=nap",
        "/ui/runs/admin/private/log.txt?step=nap",
        "/ui/artifacts?profile=admin",
        "/ui/artifacts/admin/lineage?uri=file:///x",
        "/ui/runs?profile=admin",
    ):
        r = bob.get(path)
        assert r.status_code == 404 and "not found" in r.text, path
    assert "private" not in bob.get("/ui/runs").text
    r = bob.post("/ui/runs/admin/private/terminate", {"csrf": bob.csrf()})
    assert r.status_code == 404
    # The admin sees it all; what is not there is 404 too.
    admin = visitors()
    admin.sign_in(api.admin_token)
    assert rows_of(admin.get("/ui/runs").text) == ["admin/private"]
    page = admin.get("/ui/runs/admin/private?step=nap").text
    assert 'id="step-title"' in page and "dozing off" not in page  # the log comes by its own request
    assert "dozing off" in admin.get("/ui/runs/admin/private/log.txt?step=nap").text
    for path in (
        "/ui/runs/admin/private/_step?step=nope",
        "/ui/runs/admin/private/_logs?step=nope",
        "/ui/runs/admin/private/log.txt?step=nap&attempt=2",
        "/ui/runs/admin/missing",
        "/ui/artifacts/admin/lineage?uri=file:///nowhere",
    ):
        assert admin.get(path).status_code == 404, path
    assert 'id="no-step"' in admin.get("/ui/runs/admin/private?step=nope").text
    assert admin.get("/ui/runs?pipeline=Not_A_Name").status_code == 400
    assert admin.get("/ui/artifacts/admin/lineage?uri=x&direction=sideways").status_code == 400
    # Terminating a run that has ended changes nothing.
    r = admin.post("/ui/runs/admin/private/terminate", {"csrf": admin.csrf()})
    assert r.status_code == 303 and run_of(api, "private")["spec"]["terminate"] is False


def test_runs_are_paginated_and_filtered_by_pipeline(api: ApiHarness, visitors: Any) -> None:
    # Runs terminated from the start end at once, without a process.
    for i in range(3):
        create(api, "pipelineruns", run_doc(f"run-{i}", napping, terminate=True))
    create(
        api,
        "pipelines",
        {"apiVersion": "lumiflow.dev/v1", "kind": "Pipeline", "metadata": {"name": "naps"}, "spec": {}},
    )
    version = {"pipeline": "naps", "version": 1, "pipelineSpec": spec_of(napping)}
    create(
        api,
        "pipelineversions",
        {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "PipelineVersion",
            "metadata": {"name": "naps-1"},
            "spec": version,
        },
    )
    create(api, "pipelineruns", run_doc("named", pipeline="naps", terminate=True))
    v = visitors()
    v.sign_in(api.admin_token)
    seen: list[str] = []
    url = "/ui/runs?profile=admin&limit=2"
    for _ in range(3):
        page = v.get(url).text
        seen += rows_of(page)
        if 'id="next-page"' not in page:
            break
        url = page.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert sorted(seen) == ["admin/named", "admin/run-0", "admin/run-1", "admin/run-2"]
    page = v.get("/ui/runs?pipeline=naps").text
    assert rows_of(page) == ["admin/named"] and 'naps <span class="muted">v1</span>' in page
    rows = v.get("/ui/runs/_rows?pipeline=naps", headers=LIVE)
    assert rows.status_code == 200 and rows_of(rows.text) == ["admin/named"] and "<html" not in rows.text
    pipelines = v.get("/ui/pipelines").text
    assert 'data-pipeline="admin/naps"' in pipelines and "1 step</span>" in pipelines
    home = v.get("/ui/").text
    assert all(f'href="/ui/{p}"' in home for p in ("runs", "pipelines", "artifacts")), "the navigation"
    wait_until(
        lambda: run_of(api, "named")["status"].get("state") == "CANCELED", timeout=30, message="canceled"
    )
    assert "CANCELED" in v.get("/ui/runs/admin/named").text
