"""The dashboard over HTTP, without a browser: sessions and their cookie, CSRF on every form,
safe ``next=`` redirects, escaping, and access exactly as the API's."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from lumiflow.common.errors import NotFound
from tests.conftest import ApiHarness
from tests.dashboard.support import Visitor, csrf_of
from tests.jobs import job_manifest, submit, wait_phase

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def visitors(api: ApiHarness) -> Iterator[Any]:
    made: list[Visitor] = []

    def make() -> Visitor:
        made.append(Visitor(api.platform))
        return made[-1]

    yield make
    for v in made:
        v.close()


def session_key(visitor: Visitor) -> str:
    cookie = visitor.client.cookies.get("lumiflow_session")
    assert cookie
    return hashlib.sha256(cookie.encode()).hexdigest()


def test_pages_need_a_session_and_the_cookie_is_guarded(api: ApiHarness, visitors: Any) -> None:
    v = visitors()
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    r = v.get("/ui/jobs?profile=admin")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/jobs%3Fprofile%3Dadmin"
    live = v.get("/ui/jobs/_rows", headers={"X-Lumiflow-Live": "1"})
    assert live.status_code == 401, "live updates are told to stop, not redirected"

    wrong = v.sign_in("not-a-token", "/ui/jobs")
    assert wrong.status_code == 401 and "That token does not work" in wrong.text
    assert "lumiflow_session" not in v.client.cookies

    r = v.sign_in(api.admin_token, "/ui/jobs?profile=admin")
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs?profile=admin"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("lumiflow_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/ui"} <= flags
    page = v.get("/ui/jobs?profile=admin")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # The database keeps a digest of the cookie, never the cookie itself.
    stored = api.platform.store.get_session(session_key(v))
    assert stored.user == "admin" and v.client.cookies["lumiflow_session"] not in str(stored)

    old_cookie = v.client.cookies["lumiflow_session"]
    out = v.post("/ui/logout", {"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?signed_out=1"
    assert v.get("/ui/").status_code == 303
    replay = visitors()
    replay.client.cookies.set("lumiflow_session", old_cookie, path="/ui")
    assert replay.get("/ui/").status_code == 303, "a signed-out session cannot be replayed"


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(api: ApiHarness, visitors: Any) -> None:
    submit(api, job_manifest("keep", "print(1)", run_policy={"suspend": True}))
    api.add_user("carol", "physics")
    admin, other = visitors(), visitors()
    admin.sign_in(api.admin_token)
    other.sign_in(api.admin_token)
    foreign = other.csrf()  # a valid token, of another session
    manifest = "apiVersion: lumiflow.dev/v1\nkind: TrainingJob\nmetadata: {name: sneaky}\nspec:\n" + (
        "  replicaSpecs: {Worker: {template: {spec: {containers: [{name: m, command: [python3]}]}}}}\n"
    )
    posts = [
        ("/ui/jobs/admin/keep/delete", {}),
        ("/ui/jobs/admin/keep/suspend", {"suspend": "false"}),
        ("/ui/resources/trainingjobs/admin/keep/delete", {}),
        ("/ui/apply", {"manifest": manifest}),
        ("/ui/admin/users", {"name": "mallory", "groups": "admins"}),
        ("/ui/admin/users/carol/delete", {}),
        ("/ui/logout", {}),
    ]
    for path, form in posts:
        for token in (None, "", foreign, "x" * 43):
            data = dict(form) if token is None else {**form, "csrf": token}
            r = admin.post(path, data)
            assert r.status_code == 403, (path, token, r.status_code, r.text[:300])
            assert "CSRF" in r.text
    job = api.request("GET", "/api/v1/profiles/admin/trainingjobs/keep").json()
    assert job["spec"]["runPolicy"]["suspend"] is True
    assert api.request("GET", "/api/v1/profiles/admin/trainingjobs/sneaky").status_code == 404
    assert sorted(u.name for u in api.platform.store.list_users()) == ["admin", "carol"]
    assert admin.get("/ui/").status_code == 200, "the session survived the refused sign-out"
    # The sign-in form is protected too (its token must match its own cookie).
    fresh = visitors()
    r = fresh.post("/ui/login", {"token": api.admin_token, "csrf": "guess"})
    assert r.status_code == 403 and "lumiflow_session" not in fresh.client.cookies
    # With the right token the same forms work.
    r = admin.post("/ui/jobs/admin/keep/suspend", {"suspend": "false", "csrf": admin.csrf()})
    assert r.status_code == 303
    assert (
        api.request("GET", "/api/v1/profiles/admin/trainingjobs/keep").json()["spec"]["runPolicy"]["suspend"]
        is False
    )
    r = admin.post("/ui/jobs/admin/keep/delete", {"csrf": admin.csrf()})
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs?profile=admin"
    assert "trainingjob/keep deleted" in admin.get("/ui/jobs?profile=admin").text


EVIL_NEXT = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/ui/\t/evil.example",
    "/\t/evil.example",
    "/ui/\r\nLocation: https://evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "https:evil.example",
    "/api/v1/users",
    "evil.example",
]


def test_next_never_leads_off_the_dashboard(api: ApiHarness, visitors: Any) -> None:
    v = visitors()
    for target in EVIL_NEXT:
        v.client.cookies.clear()
        r = v.sign_in(api.admin_token, target)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/", (target, r.headers["location"])
        # Already signed in: the login page sends you on, just as carefully.
        again = v.get("/ui/login", params={"next": target})
        assert again.status_code == 303 and again.headers["location"] == "/ui/", target
    assert visitors().sign_in(api.admin_token, "/ui/profiles").headers["location"] == "/ui/profiles"


def test_html_in_manifests_logs_and_errors_is_shown_not_rendered(api: ApiHarness, visitors: Any) -> None:
    v = visitors()
    v.sign_in(api.admin_token)
    manifest = """
apiVersion: lumiflow.dev/v1
kind: TrainingJob
metadata:
  name: loud
  annotations: {note: "<img src=x onerror=alert(1)>"}
spec:
  replicaSpecs:
    Worker:
      template:
        spec:
          containers:
          - name: main
            command: [python3, -c, "print('<script>alert(2)</script><b>bold</b>')"]
            resources: {requests: {cpu: 100m, memory: 64Mi}}
"""
    r = v.post("/ui/apply", {"csrf": v.csrf("/ui/apply"), "manifest": manifest})
    assert r.status_code == 303, r.text
    wait_phase(api, "loud")
    page = v.get("/ui/jobs/admin/loud").text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    text = v.get("/ui/jobs/admin/loud/log.txt", params={"replica": "worker-0"})
    assert (
        text.headers["content-type"].startswith("text/plain")
        and text.headers["x-content-type-options"] == "nosniff"
    )
    assert "<script>alert(2)</script>" in text.text
    with v.client.stream("GET", "/ui/jobs/admin/loud/_logs", params={"replica": "worker-0"}) as stream:
        events = "".join(stream.iter_text())
    assert 'data: "<script>alert(2)</script><b>bold</b>\\n"' in events and "event: end" in events
    # A name made of HTML: the validation error quotes it, escaped.
    bad = manifest.replace("name: loud", "name: '<b>x</b>'")
    r = v.post("/ui/apply", {"csrf": v.csrf("/ui/apply"), "manifest": bad})
    assert r.status_code == 422
    assert "&lt;b&gt;x&lt;/b&gt;" in r.text and "<b>x</b>" not in r.text
    assert "&lt;img src=x" in r.text, "the manifest is given back, escaped, for correcting"


def test_a_deleted_or_revoked_users_session_ends(api: ApiHarness, visitors: Any) -> None:
    carol, dave = visitors(), visitors()
    carol.sign_in(api.add_user("carol", "physics"))
    dave_token = api.add_user("dave", "physics")
    dave.sign_in(dave_token)
    assert carol.get("/ui/").status_code == 200 and dave.get("/ui/").status_code == 200
    key = session_key(carol)
    assert api.request("DELETE", "/api/v1/users/carol").status_code == 200
    r = carol.get("/ui/jobs")
    assert r.status_code == 303 and r.headers["location"].endswith("&ended=1")
    with pytest.raises(NotFound):
        api.platform.store.get_session(key)
    token_id = api.request("GET", "/api/v1/tokens", params={"user": "dave"}).json()["items"][0]["id"]
    assert api.request("DELETE", f"/api/v1/tokens/{token_id}").status_code == 200
    assert dave.get("/ui/").status_code == 303
    assert "Your session ended" in dave.get("/ui/login?ended=1").text


def test_access_is_the_apis(api: ApiHarness, visitors: Any) -> None:
    submit(api, job_manifest("private", "print(1)", run_policy={"suspend": True}))
    bob = visitors()
    bob.sign_in(api.add_user("bob", "biology"))
    for path in (
        "/ui/jobs/admin/private",
        "/ui/jobs/admin/private/_status",
        "/ui/resources/trainingjobs/admin/private",
    ):
        r = bob.get(path)
        assert r.status_code == 404, path
        assert "not found" in r.text
    assert "private" not in bob.get("/ui/jobs").text
    r = bob.post("/ui/jobs/admin/private/delete", {"csrf": bob.csrf()})
    assert r.status_code == 404
    assert api.request("GET", "/api/v1/profiles/admin/trainingjobs/private").status_code == 200
    assert bob.get("/ui/admin/users").status_code == 403
    assert bob.get("/ui/admin/roles").status_code == 403


def test_adding_a_user_shows_their_token_once(api: ApiHarness, visitors: Any) -> None:
    v = visitors()
    v.sign_in(api.admin_token)
    r = v.post(
        "/ui/admin/users", {"csrf": v.csrf("/ui/admin/users"), "name": "erin", "groups": "physics, ml"}
    )
    assert r.status_code == 201
    token = r.text.split('id="new-token">')[1].split("</pre>")[0]
    me = api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["user"], me["groups"]) == ("erin", ["ml", "physics"])
    assert token not in v.get("/ui/admin/users").text
    r = v.post("/ui/admin/users", {"csrf": v.csrf("/ui/admin/users"), "name": "<i>x</i>", "groups": ""})
    assert r.status_code == 422 and "<i>x</i>" not in r.text
    assert sorted(u.name for u in api.platform.store.list_users()) == ["admin", "erin"]


def test_profiles_show_usage_against_quota_and_members(api: ApiHarness, visitors: Any) -> None:
    profile = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": "calo"},
        "spec": {
            "owner": {"kind": "Group", "name": "physics"},
            "resourceQuotaSpec": {"hard": {"cpu": "2", "memory": "1Gi", "workloads": "3", "pods": "9"}},
            "contributors": [{"kind": "Group", "name": "readers", "role": "view"}],
        },
    }
    assert api.request("POST", "/api/v1/profiles", json=profile).status_code == 201
    submit(
        api, job_manifest("busy", "import time; time.sleep(300)", profile="calo", cpu="500m", memory="256Mi")
    )
    wait_phase(api, "busy", "Running", profile="calo")
    v = visitors()
    v.sign_in(api.add_user("vera", "readers"))
    page = v.get("/ui/profiles").text
    card = page.split('id="profile-calo"')[1].split("</section>")[0]
    assert "your role: view" in card
    rows = {
        row.split('data-quota="')[1].split('"')[0]: row
        for row in card.split("<tr")[1:]
        if "data-quota" in row
    }
    assert '<meter min="0" max="2.0" value="0.5"' in rows["cpu"] and "500m / 2" in rows["cpu"]
    assert "256Mi / 1Gi" in rows["memory"] and "1 / 3" in rows["workloads"]
    assert "no limit" in rows["gpu"] and "Kept but not enforced: pods" in card
    members = card.split('class="grid members"')[1]
    assert "physics" in members and "owner" in members and "readers" in members and "view" in members
    assert 'id="profile-admin"' not in page, "only the profiles she may see"
    assert api.request("DELETE", "/api/v1/profiles/calo/trainingjobs/busy").status_code in (200, 202)


def test_jobs_are_paginated_and_filtered_by_profile(api: ApiHarness, visitors: Any) -> None:
    for i in range(5):
        submit(api, job_manifest(f"job-{i}", "print(1)", run_policy={"suspend": True}))
    bob_token = api.add_user("bob", "biology")
    submit(api, job_manifest("bobs", "print(1)", run_policy={"suspend": True}), token=bob_token)
    v = visitors()
    v.sign_in(api.admin_token)
    seen: list[str] = []
    url = "/ui/jobs?profile=admin&limit=2"
    for _ in range(4):
        page = v.get(url).text
        seen += [
            row.split('data-job="admin/')[1].split('"')[0]
            for row in page.split("<tr")[1:]
            if "data-job" in row
        ]
        if 'id="next-page"' not in page:
            break
        url = page.split('id="next-page"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert seen == [f"job-{i}" for i in range(5)]
    everything = v.get("/ui/jobs").text
    assert 'data-job="bob/bobs"' in everything and 'data-job="admin/job-0"' in everything
    assert 'data-job="bob/bobs"' not in v.get("/ui/jobs?profile=admin").text
    rows = v.get("/ui/jobs/_rows?profile=bob", headers={"X-Lumiflow-Live": "1"})
    assert rows.status_code == 200 and 'data-job="bob/bobs"' in rows.text and "<html" not in rows.text


def test_an_uploaded_file_of_several_manifests_is_applied(api: ApiHarness, visitors: Any) -> None:
    v = visitors()
    v.sign_in(api.admin_token)
    body = (
        "kind: TrainingJob\nspec:\n  runPolicy: {suspend: true}\n"
        "  replicaSpecs: {Worker: {template: {spec: {containers: [{name: m, command: [python3]}]}}}}\n"
    )
    docs = "\n---\n".join(
        f"apiVersion: lumiflow.dev/v1\nmetadata: {{name: {name}}}\n{body}" for name in ("up-1", "up-2")
    )
    r = v.post(
        "/ui/apply",
        {"csrf": v.csrf("/ui/apply"), "profile": "admin"},
        files={"file": ("jobs.yaml", docs.encode(), "application/yaml")},
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs?profile=admin"
    assert "trainingjob/up-1 created; trainingjob/up-2 created" in v.get("/ui/jobs?profile=admin").text
    again = v.post(
        "/ui/apply",
        {"csrf": v.csrf("/ui/apply")},
        files={"file": ("jobs.yaml", docs.encode(), "application/yaml")},
    )
    assert again.status_code == 303
    assert "trainingjob/up-1 unchanged; trainingjob/up-2 unchanged" in v.get("/ui/jobs").text
    empty = v.post("/ui/apply", {"csrf": v.csrf("/ui/apply"), "manifest": "  "})
    assert empty.status_code == 400 and "paste a manifest" in empty.text
