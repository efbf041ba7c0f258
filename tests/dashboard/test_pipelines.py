"""The pipeline pages in a real headless Chromium: a run with a condition (one branch
skipped), a 3-item ParallelFor and a failing step inside an ExitHandler, every step a real
process, watched on its page as its graph updates by itself; then its row in the runs list,
its page (the DAG's boxes in the right states, the failing step's traceback in its log), an
artifact's lineage back to the step that made it, a second run served from the cache, and
HTML in a display name, a parameter and an artifact's metadata shown as text. Screenshots go
to artifacts/screenshots/."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.dashboard.pipelines_for_pages import BAD_NAME, NOTE, demo, run_doc, spec_of
from tests.dashboard.test_browser import click, text_of, wait
from tests.helpers import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

STEPS = {
    "announce": "SUCCEEDED",
    "exit-handler-1/make-lines": "SUCCEEDED",
    "exit-handler-1/count-lines": "SUCCEEDED",
    "exit-handler-1/condition-1/big": "SUCCEEDED",
    "exit-handler-1/condition-2/small": "SKIPPED",
    "exit-handler-1/for-1[0]/square": "SUCCEEDED",
    "exit-handler-1/for-1[1]/square": "SUCCEEDED",
    "exit-handler-1/for-1[2]/square": "SUCCEEDED",
    "exit-handler-1/boom": "FAILED",
}


class Api:
    def __init__(self, server: Any) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def create(self, plural: str, doc: dict[str, Any]) -> None:
        r = self.request("POST", f"/api/v1/profiles/admin/{plural}", json=doc)
        assert r.status_code == 201, r.text

    def finished(self, name: str, timeout: float = 45) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.request("GET", f"/api/v1/profiles/admin/pipelineruns/{name}").json()
            return run if run["status"].get("state") in ("SUCCEEDED", "FAILED", "CANCELED") else None

        return wait_until(done, timeout=timeout, interval=0.2, message=f"run {name} to finish")


def box(chrome: Any, node: str) -> Any:
    return chrome.find_element(By.CSS_SELECTOR, f'svg.run-graph g.node[data-node="{node}"]')


def classes(element: Any) -> set[str]:
    return set((element.get_attribute("class") or "").split())


def test_pipeline_pages(live_server: Any, chrome: Any, screenshot: Any) -> None:
    server = live_server()
    base = f"{server.url}/ui"
    api = Api(server)
    api.create("pipelineruns", run_doc("demo-1", demo))

    # Sign in while the steps run: the run's page, its graph updating by itself.
    chrome.get(f"{base}/runs/admin/demo-1")
    wait(chrome, ec.url_contains("/ui/login?next="))
    chrome.find_element(By.ID, "token").send_keys(server.admin_token)
    click(chrome, "sign-in")
    wait(chrome, ec.url_to_be(f"{base}/runs/admin/demo-1"))
    assert chrome.find_element(By.ID, "status").get_attribute("data-final") is None, "still running"
    assert text_of(chrome, "state") in ("PENDING", "RUNNING")
    wait(
        chrome,
        lambda d: "state-failed" in classes(box(d, "exit-handler-1/boom")),
        45,
        "the failing step's box to turn FAILED without a reload",
    )
    wait(chrome, lambda d: text_of(d, "state") == "FAILED", 15, "the run to end on the page")
    assert chrome.find_element(By.ID, "status").get_attribute("data-final") is not None  # no more polling

    first = api.finished("demo-1")["status"]
    assert first["state"] == "FAILED", first
    assert {k: first["nodes"][k]["state"] for k in STEPS if k in first["nodes"]} == {
        k: v for k, v in STEPS.items() if k != "exit-handler-1/condition-2/small"
    }

    # The same pipeline uploaded as a version, run again by name: what it can, from the cache.
    pipeline = {"description": "the dashboard's <i>demo</i>"}
    api.create(
        "pipelines",
        {"apiVersion": "lumiflow.dev/v1", "kind": "Pipeline", "metadata": {"name": "demo"}, "spec": pipeline},
    )
    version = {"pipeline": "demo", "version": 1, "pipelineSpec": spec_of(demo)}
    api.create(
        "pipelineversions",
        {
            "apiVersion": "lumiflow.dev/v1",
            "kind": "PipelineVersion",
            "metadata": {"name": "demo-v1"},
            "spec": version,
        },
    )
    api.create("pipelineruns", run_doc("demo-2", pipeline="demo"))

    # The list: the second run's row turns FAILED by itself (live rows), every step ended.
    chrome.get(f"{base}/runs")
    row = 'tr[data-run="admin/demo-1"]'
    cells = chrome.find_element(By.CSS_SELECTOR, row)
    assert cells.find_element(By.CSS_SELECTOR, "[data-state]").text == "FAILED"
    assert cells.find_element(By.CSS_SELECTOR, "[data-steps]").text == f"{len(STEPS)} / {len(STEPS)}"
    assert "dashboard-demo" in cells.find_element(By.CSS_SELECTOR, "[data-pipeline]").text

    second = api.finished("demo-2")["status"]
    assert second["state"] == "FAILED"
    wait(
        chrome,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, 'tr[data-run="admin/demo-2"] [data-state]').text == "FAILED"
        ),
        15,
        "the second run's row",
    )
    pipeline_cell = chrome.find_element(By.CSS_SELECTOR, 'tr[data-run="admin/demo-2"] [data-pipeline]').text
    assert pipeline_cell == "demo v1"
    screenshot("40-pipeline-runs")

    # The run's page opens on its failed step: the graph, the steps, the traceback.
    chrome.find_element(By.LINK_TEXT, "demo-1").click()
    wait(chrome, ec.url_to_be(f"{base}/runs/admin/demo-1"))
    assert text_of(chrome, "state") == "FAILED"
    assert "dashboard-demo" in text_of(chrome, "run-pipeline")
    assert NOTE in text_of(chrome, "run-parameters")  # a parameter's HTML is text
    drawn = chrome.find_elements(By.CSS_SELECTOR, "svg.run-graph g.node")
    assert sorted(b.get_attribute("data-node") for b in drawn) == sorted(STEPS)
    for node, state in STEPS.items():
        assert f"state-{state.lower()}" in classes(box(chrome, node)), node
    groups = {
        g.get_attribute("data-node"): g.get_attribute("data-state")
        for g in chrome.find_elements(By.CSS_SELECTOR, "svg.run-graph g.group:not(.kind-iteration)")
    }
    assert groups == {
        "exit-handler-1": "FAILED",
        "exit-handler-1/condition-1": "SUCCEEDED",
        "exit-handler-1/condition-2": "SKIPPED",
        "exit-handler-1/for-1": "SUCCEEDED",
    }
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.run-graph g.kind-iteration")) == 3
    assert chrome.find_elements(By.CSS_SELECTOR, 'svg.run-graph path.edge-exit[data-to="announce"]')
    # The display name with HTML is text in the graph, the table and the step's title.
    assert (
        "<b>boom</b>" in box(chrome, "exit-handler-1/boom").find_element(By.CSS_SELECTOR, ".node-name").text
    )
    assert BAD_NAME in chrome.find_element(By.CSS_SELECTOR, 'tr[data-step="exit-handler-1/boom"]').text
    assert BAD_NAME in text_of(chrome, "step-title")
    assert text_of(chrome, "step-state") == "FAILED" and "exit code 1" in text_of(chrome, "step-message")
    wait(chrome, lambda d: "ValueError: boom at 4" in text_of(d, "log"), 15, "the step's traceback")
    assert "Traceback (most recent call last)" in text_of(chrome, "log")
    wait(chrome, lambda d: "finished" in text_of(d, "log-state"), 10, "the log's end")
    for selector in ("main img", "main script", "main b", "svg b", "svg script"):
        assert chrome.find_elements(By.CSS_SELECTOR, selector) == [], selector
    screenshot("41-pipeline-run")
    chrome.execute_script("document.getElementById('step').scrollIntoView()")
    screenshot("43-pipeline-step-log")

    # A box leads to its step: make-lines' output, its metadata (HTML as text), its lineage.
    chrome.find_element(
        By.CSS_SELECTOR, 'svg.run-graph a.node-link g[data-node="exit-handler-1/make-lines"]'
    ).click()
    wait(chrome, lambda d: "make-lines" in parse_qs(urlsplit(d.current_url).query).get("step", [""])[0])
    assert text_of(chrome, "step-state") == "SUCCEEDED"
    data = first["nodes"]["exit-handler-1/make-lines"]["outputs"]["data"]["artifact"]
    output = chrome.find_element(By.CSS_SELECTOR, '#step-outputs tr[data-name="data"]')
    assert output.find_element(By.CSS_SELECTOR, "[data-uri]").text == data["uri"]
    assert output.find_element(By.CSS_SELECTOR, "[data-digest]").text == data["digest"]
    assert output.find_element(By.CSS_SELECTOR, '[data-metadata="note"]').text == f"note={NOTE}"
    assert chrome.find_elements(By.CSS_SELECTOR, "main img") == []
    output.find_element(By.CSS_SELECTOR, "a.lineage-link").click()
    wait(chrome, ec.url_contains("/ui/artifacts/admin/lineage?"))
    assert text_of(chrome, "artifact-uri") == data["uri"]
    producer = "demo-1/exit-handler-1/make-lines"
    step = chrome.find_element(By.CSS_SELECTOR, "svg.lineage-graph g.execution")
    assert step.find_element(By.TAG_NAME, "title").get_attribute("textContent") == producer
    assert chrome.find_elements(By.CSS_SELECTOR, "svg.lineage-graph g.artifact.focus")
    assert chrome.find_elements(By.CSS_SELECTOR, "svg.lineage-graph path.edge-output")
    row = chrome.find_element(By.CSS_SELECTOR, f'#executions tr[data-execution="{producer}"]')
    assert (
        row.find_element(By.CSS_SELECTOR, "[data-run]").get_attribute("href") == f"{base}/runs/admin/demo-1"
    )
    assert NOTE in text_of(chrome, "artifact-metadata")
    assert chrome.find_elements(By.CSS_SELECTOR, "main img") == []
    screenshot("42-artifact-lineage")
    # Downstream: the steps that read it (count-lines in both runs: the second from the cache).
    click(chrome, "direction-downstream")
    wait(chrome, ec.url_contains("direction=downstream"))
    readers = {
        r.get_attribute("data-execution") for r in chrome.find_elements(By.CSS_SELECTOR, "#executions tr")
    }
    assert "demo-1/exit-handler-1/count-lines" in readers
    assert chrome.find_elements(By.CSS_SELECTOR, "svg.lineage-graph path.edge-input")

    # The second run: its steps came from the cache, and say so.
    chrome.get(f"{base}/runs/admin/demo-2")
    cached = box(chrome, "exit-handler-1/make-lines")
    assert "cached" in classes(cached) and cached.find_elements(By.CSS_SELECTOR, ".badge-cached")
    assert "cached" not in classes(box(chrome, "exit-handler-1/boom"))
    assert (
        chrome.find_element(By.CSS_SELECTOR, 'tr[data-step="exit-handler-1/make-lines"] .badge.cached').text
        == "cached"
    )
    assert text_of(chrome, "run-pipeline") == "demo version 1"

    # The artifacts list and the pipelines list.
    chrome.get(f"{base}/artifacts")
    assert chrome.find_elements(By.CSS_SELECTOR, f'#artifacts tr[data-uri="{data["uri"]}"]')
    chrome.get(f"{base}/pipelines")
    version_row = chrome.find_element(By.CSS_SELECTOR, 'tr[data-pipeline="admin/demo"] li[data-version="1"]')
    assert version_row.find_element(By.CSS_SELECTOR, "[data-steps]").text == "7 steps"
    assert chrome.execute_script("return window.pwned") is None
