"""The tuning pages in a real headless Chromium: a Katib Experiment of six real trials (tiny
Python processes printing ``loss=``), run to the end through the API, then its list row,
its page (best trial, objective chart, parallel coordinates, trials table), a trial's job
page with its metric chart, and HTML in an annotation and in categorical values shown as
text. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.dashboard.test_browser import click, text_of, wait
from tests.tuning.experiments import experiment, python, trials, wait_experiment, write_script

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

BAD_TAG = "<img src=x onerror=window.pwned=3>"
TAGS = ["<b>plain</b>", BAD_TAG]
#: A quadratic bowl in x and log10(lr), worse by 0.5 with the second tag; three epochs each.
QUADRATIC = f"""
import argparse, math
p = argparse.ArgumentParser()
p.add_argument("--x", type=float, required=True)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--tag", required=True)
a = p.parse_args()
base = (a.x - 1) ** 2 + math.log10(a.lr / 0.01) ** 2 + (0.5 if a.tag == {BAD_TAG!r} else 0.0)
for epoch in range(1, 4):
    print(f"loss={{base + 1.0 / epoch:.6f}}", flush=True)
"""
SPACE = [
    {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "-2", "max": "3"}},
    {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
    },
    {"name": "tag", "parameterType": "categorical", "feasibleSpace": {"list": TAGS}},
]


class Api:
    def __init__(self, server: Any) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)


def objective(trial: dict[str, Any]) -> float:
    (loss,) = [m for m in trial["status"]["observation"]["metrics"] if m["name"] == "loss"]
    return float(loss["min"])


def test_experiment_pages(live_server: Any, chrome: Any, screenshot: Any, tmp_path: Path) -> None:
    server = live_server()
    base = f"{server.url}/ui"
    api = Api(server)
    script = write_script(tmp_path, "quadratic.py", QUADRATIC)
    manifest = experiment(
        "quadratic",
        parameters=SPACE,
        command=python(
            script, "--x=${trialParameters.x}", "--lr=${trialParameters.lr}", "--tag=${trialParameters.tag}"
        ),
        settings={"random_state": "7"},
        parallel=2,
        max_trials=6,
    )
    manifest["metadata"]["annotations"] = {"note": "<script>window.pwned = 4</script>"}
    r = api.request("POST", "/api/v1/apply", json=manifest)
    assert r.status_code == 201, r.text

    # Sign in while the trials run.
    chrome.get(f"{base}/experiments")
    wait(chrome, ec.url_contains("/ui/login?next="))
    chrome.find_element(By.ID, "token").send_keys(server.admin_token)
    click(chrome, "sign-in")
    wait(chrome, ec.url_to_be(f"{base}/experiments"))

    status = wait_experiment(api, "quadratic", timeout=60)["status"]
    assert status["phase"] == "Succeeded" and status["trialsSucceeded"] == 6, status
    done = trials(api, "quadratic")
    lowest = min(done, key=objective)["metadata"]["name"]
    assert status["currentOptimalTrial"]["bestTrialName"] == lowest

    # The list: the row turns Succeeded by itself (live rows), with 6 of 6 trials.
    row = 'tr[data-experiment="admin/quadratic"]'
    wait(
        chrome,
        lambda d: d.find_element(By.CSS_SELECTOR, f"{row} [data-phase]").text == "Succeeded",
        15,
        "the experiment's row to turn Succeeded",
    )
    cells = chrome.find_element(By.CSS_SELECTOR, row)
    assert cells.find_element(By.CSS_SELECTOR, "[data-trials]").text == "6 / 6 (max 6)"
    assert float(cells.find_element(By.CSS_SELECTOR, "[data-best] [data-value]").text) == pytest.approx(
        min(objective(t) for t in done), rel=1e-5
    )
    assert "random" in cells.text
    screenshot("30-experiments")

    # The experiment's page.
    chrome.find_element(By.LINK_TEXT, "quadratic").click()
    wait(chrome, ec.url_to_be(f"{base}/experiments/admin/quadratic"))
    assert text_of(chrome, "phase") == "Succeeded"
    assert "minimize" in text_of(chrome, "objective") and "loss" in text_of(chrome, "objective")
    assert "random" in text_of(chrome, "algorithm") and "random_state=7" in text_of(chrome, "algorithm")
    assert text_of(chrome, "best-trial-name") == lowest
    rows = chrome.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
    assert [r.get_attribute("data-trial") for r in rows] == [f"quadratic-{i:04d}" for i in range(6)]
    assert chrome.find_element(By.CSS_SELECTOR, "#trials tr.best").get_attribute("data-trial") == lowest
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.objective-chart circle.trial")) == 6
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.objective-chart polyline.best-so-far")) == 1
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.parallel-coordinates polyline.trial-line")) == 6
    log_axis = chrome.find_element(By.CSS_SELECTOR, 'svg.parallel-coordinates g.pc-axis[data-axis="lr"]')
    assert log_axis is not None
    # HTML in an annotation and in categorical values is text, in the tables and the SVG alike.
    assert "<script>window.pwned = 4</script>" in text_of(chrome, "annotations")
    tags = {c.text for c in chrome.find_elements(By.CSS_SELECTOR, '#trials td[data-parameter="tag"]')}
    assert tags <= set(TAGS) and tags, tags
    assert BAD_TAG in text_of(chrome, "parameters")
    for selector in ("main img", "main script", "main b", "svg img", "svg b"):
        assert chrome.find_elements(By.CSS_SELECTOR, selector) == [], selector
    assert chrome.execute_script("return window.pwned") is None
    screenshot("31-experiment")
    chrome.execute_script("document.getElementById('objective-charts').scrollIntoView()")
    screenshot("32-experiment-charts")

    # The best trial's job page charts the loss its log printed, and links back.
    click(chrome, "best-trial-name")
    wait(chrome, ec.url_to_be(f"{base}/jobs/admin/{lowest}"))
    series = chrome.find_elements(By.CSS_SELECTOR, "#metrics svg.line-chart polyline.series")
    assert [s.get_attribute("data-name") for s in series] == ["loss"]
    assert len(series[0].get_attribute("points").split()) == 3
    assert chrome.find_elements(By.ID, "no-metrics") == []
    chrome.execute_script("document.getElementById('metrics').scrollIntoView()")
    screenshot("33-job-metrics")
    click(chrome, "experiment-link")
    wait(chrome, ec.url_to_be(f"{base}/experiments/admin/quadratic"))

    # A trial's generic page leads to its job.
    chrome.get(f"{base}/resources/trials/admin/{lowest}")
    assert chrome.find_element(By.ID, "trial-job").get_attribute("href") == f"{base}/jobs/admin/{lowest}"

    # What the pages' live updates fetch carries the same content.
    chrome.get(f"{base}/jobs/admin/{lowest}/_metrics")
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.line-chart polyline.series")) == 1
    chrome.get(f"{base}/experiments/admin/quadratic/_status")
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")) == 6
    assert len(chrome.find_elements(By.CSS_SELECTOR, "svg.objective-chart circle.trial")) == 6
    chrome.get(f"{base}/experiments/_rows?profile=admin")
    assert "quadratic" in chrome.find_element(By.TAG_NAME, "body").text
