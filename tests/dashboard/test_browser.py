"""Every dashboard page in a real headless Chromium, with the CLI beside it: a job submitted
with `lumi apply` appears on the page and its phase changes without a reload; signing in
with a token (embedded) and through the real OIDC issuer (single sign-on), including the
CLI's device sign-in approved in the same browser. A screenshot of every page is written to
artifacts/screenshots/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.helpers import lumi
from tests.oidc.cli import read_until, start_login
from tests.oidc.issuer import Issuer, oidc_auth

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

SCRIPT = (
    "import time\\n"
    "for i in range(4):\\n"
    "    print(f'step {i} <b>not bold</b> <script>window.pwned = 1</script>', flush=True)\\n"
    "    time.sleep(0.4)\\n"
)


def job_yaml(name: str, *, suspend: bool = False) -> str:
    return f"""apiVersion: lumiflow.dev/v1
kind: TrainingJob
metadata:
  name: {name}
  annotations: {{note: "<img src=x onerror=window.pwned=2>"}}
spec:
  replicaSpecs:
    Worker:
      replicas: 1
      template:
        spec:
          containers:
          - name: main
            command: [python3, -c, "{SCRIPT}"]
            resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}
  runPolicy: {{suspend: {str(suspend).lower()}}}
"""


def wait(chrome: Any, condition: Any, timeout: float = 30, message: str = "") -> Any:
    # Live updates replace table rows under our feet: a row read as it is swapped out is
    # simply read again at the next poll.
    return WebDriverWait(
        chrome, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message)


def text_of(chrome: Any, element_id: str) -> str:
    return str(chrome.find_element(By.ID, element_id).text)


def phase_of(chrome: Any, job: str) -> str | None:
    rows = chrome.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job}"] [data-phase]')
    return rows[0].text if rows else None


def click(chrome: Any, element_id: str) -> None:
    chrome.find_element(By.ID, element_id).click()


def test_every_page_with_a_token_sign_in(
    live_server: Any, chrome: Any, screenshot: Any, tmp_path: Path
) -> None:
    server = live_server()
    base = f"{server.url}/ui"

    # Signing in: the page asked for first is where the sign-in leads.
    chrome.get(f"{base}/jobs")
    wait(chrome, ec.url_contains("/ui/login?next="))
    screenshot("01-login")
    chrome.find_element(By.ID, "token").send_keys(server.admin_token)
    click(chrome, "sign-in")
    wait(chrome, ec.url_to_be(f"{base}/jobs"))
    assert text_of(chrome, "whoami") == "admin"
    chrome.execute_script("window.notReloaded = true")

    # A job submitted from the CLI appears, and its phase changes, without a reload.
    cli = tmp_path / "cli"
    lumi("login", server.url, "--token", server.admin_token, home=cli)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(job_yaml("from-cli"))
    lumi("apply", "-f", str(manifest), home=cli)
    wait(chrome, lambda d: phase_of(d, "admin/from-cli") is not None, message="the CLI's job on the page")
    wait(
        chrome, lambda d: phase_of(d, "admin/from-cli") == "Succeeded", 60, "the phase to turn Succeeded live"
    )
    assert chrome.execute_script("return window.notReloaded") is True
    screenshot("02-jobs")

    # The job: replicas, conditions, events, and the live log, with HTML shown as text.
    chrome.find_element(By.LINK_TEXT, "from-cli").click()
    wait(chrome, ec.url_to_be(f"{base}/jobs/admin/from-cli"))
    wait(
        chrome,
        lambda d: d.find_element(By.ID, "log").get_attribute("data-done") is not None,
        30,
        "the log's end",
    )
    log = text_of(chrome, "log")
    assert log.count("<b>not bold</b> <script>window.pwned = 1</script>") == 4, log
    assert chrome.find_elements(By.CSS_SELECTOR, "#log *") == [], "log lines must not become elements"
    assert "<img src=x onerror=window.pwned=2>" in text_of(chrome, "annotations")
    assert chrome.execute_script("return window.pwned") is None
    assert "worker-0" in text_of(chrome, "replicas") and "Succeeded" in text_of(chrome, "replicas")
    assert "Succeeded" in text_of(chrome, "conditions") and "Created" in text_of(chrome, "events")
    screenshot("03-job")

    # Applying a manifest from the page, then suspend/resume and delete.
    chrome.get(f"{base}/apply")
    chrome.find_element(By.ID, "manifest").send_keys(job_yaml("from-web", suspend=True))
    screenshot("04-apply")
    click(chrome, "apply")
    wait(chrome, ec.url_to_be(f"{base}/jobs"))
    assert text_of(chrome, "flash") == "trainingjob/from-web created"
    wait(chrome, lambda d: phase_of(d, "admin/from-web") == "Suspended", 30, "the suspended job")
    chrome.get(f"{base}/jobs/admin/from-web")
    click(chrome, "resume")
    wait(chrome, lambda d: "resumed" in d.find_element(By.ID, "flash").text)
    wait(chrome, lambda d: text_of(d, "phase") == "Succeeded", 60, "the resumed job to finish, live")
    click(chrome, "delete")
    wait(chrome, ec.alert_is_present()).accept()
    wait(chrome, ec.url_contains("/ui/jobs?profile=admin"))
    assert text_of(chrome, "flash") == "trainingjob/from-web deleted"

    # Profiles with quota bars and members.
    chrome.get(f"{base}/profiles")
    card = chrome.find_element(By.ID, "profile-admin")
    assert len(card.find_elements(By.TAG_NAME, "meter")) == 4
    assert "owner" in card.find_element(By.CSS_SELECTOR, "table.members").text
    screenshot("05-profiles")

    chrome.get(f"{base}/clusters")
    assert "local" in text_of(chrome, "clusters")
    screenshot("06-clusters")

    # Admin: a new user's token is shown once; groups → roles, read-only.
    chrome.get(f"{base}/admin/users")
    chrome.find_element(By.ID, "new-user").send_keys("zoe")
    chrome.find_element(By.ID, "new-groups").send_keys("physics ml")
    click(chrome, "add")
    token = text_of(chrome, "new-token")
    assert token.count(".") == 2
    screenshot("07-users")
    chrome.get(f"{base}/admin/users")
    assert chrome.find_elements(By.ID, "new-token") == [] and "zoe" in text_of(chrome, "users")
    chrome.get(f"{base}/admin/roles")
    assert "read-only" in text_of(chrome, "read-only") and "admins" in text_of(chrome, "roles")
    screenshot("08-roles")

    # Any other kind, the overview and an error page.
    chrome.get(f"{base}/resources/workloads")
    chrome.find_element(By.LINK_TEXT, "from-cli").click()
    assert "kind: Workload" in text_of(chrome, "manifest")
    screenshot("09-workload")
    chrome.get(f"{base}/")
    assert "admins" in text_of(chrome, "groups")
    screenshot("10-overview")
    chrome.get(f"{base}/jobs/admin/no-such-job")
    assert "not found" in text_of(chrome, "error")
    screenshot("11-not-found")

    click(chrome, "sign-out")
    wait(chrome, ec.url_contains("/ui/login?signed_out=1"))
    assert "signed out" in text_of(chrome, "notice")
    chrome.get(f"{base}/jobs")
    wait(chrome, ec.url_contains("/ui/login?next="))


def test_single_sign_on_and_the_cli_device_sign_in_in_the_browser(
    oidc_issuer: Issuer, live_server: Any, chrome: Any, screenshot: Any, tmp_path: Path
) -> None:
    server = live_server(auth=oidc_auth(oidc_issuer))
    base = f"{server.url}/ui"

    chrome.get(f"{base}/")
    wait(chrome, ec.url_contains("/ui/login"))
    screenshot("20-login-sso")
    click(chrome, "sso")
    wait(chrome, ec.presence_of_element_located((By.ID, "username")))
    assert chrome.current_url.startswith(oidc_issuer.url)
    chrome.find_element(By.ID, "username").send_keys("alice")
    chrome.find_element(By.ID, "password").send_keys("alice-pw")
    screenshot("21-issuer-login")
    click(chrome, "sign-in")
    wait(chrome, ec.url_to_be(f"{base}/"))
    assert text_of(chrome, "whoami") == "alice" and text_of(chrome, "groups") == "ml-users, physics"
    screenshot("22-overview-sso")

    # `lumi login` on alice's machine: the code is approved in this browser, where she is
    # signed in at the issuer already.
    cli = tmp_path / "alice"
    proc, lines = start_login(server.url, cli)
    seen: list[str] = []
    url = read_until(lines, r"(http://\S+/device\?user_code=\S+)", seen).group(1)
    chrome.get(url)
    wait(chrome, ec.presence_of_element_located((By.ID, "confirm")))
    screenshot("23-device-confirm")
    click(chrome, "confirm")
    wait(chrome, lambda d: d.find_elements(By.ID, "device-done") or d.find_elements(By.ID, "username"))
    if chrome.find_elements(By.ID, "username"):  # the issuer asked her to sign in again
        chrome.find_element(By.ID, "username").send_keys("alice")
        chrome.find_element(By.ID, "password").send_keys("alice-pw")
        click(chrome, "sign-in")
        wait(chrome, ec.presence_of_element_located((By.ID, "device-done")))
    assert proc.wait(timeout=60) == 0, "".join(seen)
    read_until(lines, r"logged in to .* as alice", seen)

    manifest = tmp_path / "job.yaml"
    manifest.write_text(job_yaml("alices-run"))
    lumi("apply", "-f", str(manifest), home=cli)
    chrome.get(f"{base}/jobs")
    wait(chrome, lambda d: phase_of(d, "alice/alices-run") == "Succeeded", 60, "alice's CLI job, live")
    screenshot("24-jobs-sso")
