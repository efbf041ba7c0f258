"""Tokens and profiles: who may see and do what."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ApiHarness
from tests.jobs import job_manifest, submit, wait_phase

pytestmark = pytest.mark.timeout(30)


def status(api: ApiHarness, method: str, path: str, token: str | None, **kw: object) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return int(api.client.request(method, path, headers=headers, **kw).status_code)  # type: ignore[arg-type]


def test_anonymous_and_bad_tokens_get_401(api: ApiHarness) -> None:
    path = "/api/v1/trainingjobs"
    assert api.client.get(path).status_code == 401
    assert api.client.get(path, headers={"Authorization": "Basic abc"}).status_code == 401
    assert status(api, "GET", path, "not-a-jwt") == 401
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {
        "iss": "lumiflow",
        "sub": "admin",
        "groups": ["admins"],
        "iat": now,
        "exp": now + 60,
        "jti": "x",
    }
    forged = jwt.encode(claims, other_key, algorithm="ES256")
    r = api.client.get(path, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert "signature" in r.json()["message"]
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    r = api.client.get(path, headers={"Authorization": f"Bearer {unsigned}"})
    assert r.status_code == 401
    assert "algorithm" in r.json()["message"]
    hs = jwt.encode(claims, "secret", algorithm="HS256")
    assert status(api, "GET", path, hs) == 401


def test_expired_revoked_and_deleted_users_tokens_stop_working(api: ApiHarness) -> None:
    platform = api.platform
    platform.store.create_user("carol", ["physics"])
    from datetime import timedelta

    expired = platform.identity.issue("carol", ["physics"], ttl=timedelta(seconds=-120))
    r = api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {expired.token}"})
    assert r.status_code == 401
    assert "expired" in r.json()["message"]

    token = api.add_user("dave", "physics")
    assert status(api, "GET", "/api/v1/whoami", token) == 200
    tokens = api.request("GET", "/api/v1/tokens", params={"user": "dave"}).json()["items"]
    assert api.request("DELETE", f"/api/v1/tokens/{tokens[0]['id']}").status_code == 200
    r = api.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert "revoked" in r.json()["message"]

    token2 = api.add_user("erin", "physics")
    assert status(api, "GET", "/api/v1/whoami", token2) == 200
    assert api.request("DELETE", "/api/v1/users/erin").status_code == 200
    assert status(api, "GET", "/api/v1/whoami", token2) == 401


def test_another_profiles_resources_are_invisible_and_untouchable(api: ApiHarness) -> None:
    alice = api.add_user("alice", "physics")
    bob = api.add_user("bob", "physics")
    submit(api, job_manifest("secret", "print('alice only')"), token=alice)
    wait_phase(api, "secret", profile="alice", token=alice)
    base = "/api/v1/profiles/alice/trainingjobs"
    for method, path in [
        ("GET", f"{base}/secret"),
        ("GET", f"{base}/secret/logs"),
        ("GET", f"{base}/secret/events"),
        ("DELETE", f"{base}/secret"),
        ("GET", base),
        ("GET", "/api/v1/profiles/alice"),
        ("GET", "/api/v1/profiles/alice/workloads/secret"),
    ]:
        assert status(api, method, path, bob) == 404, (method, path)
    # Creating into someone else's profile fails the same way, and changes nothing.
    r = api.client.post(
        "/api/v1/apply",
        json=job_manifest("intruder", "print(1)", profile="alice"),
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert r.status_code == 404
    names = [i["metadata"]["name"] for i in api.request("GET", base, token=alice).json()["items"]]
    assert names == ["secret"]
    # Lists across profiles show only what the caller may see.
    assert api.request("GET", "/api/v1/trainingjobs", token=bob).json()["items"] == []
    assert [
        i["metadata"]["name"] for i in api.request("GET", "/api/v1/profiles", token=bob).json()["items"]
    ] == ["bob"]
    # The admin sees everything.
    assert status(api, "GET", f"{base}/secret", api.admin_token) == 200


def test_group_profiles_give_roles_to_groups(api: ApiHarness) -> None:
    owner = api.add_user("olga", "calo-admins")
    editor = api.add_user("eddie", "calo")
    viewer = api.add_user("vera", "readers")
    outsider = api.add_user("otto", "other")
    profile = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": "calo"},
        "spec": {
            "owner": {"kind": "Group", "name": "calo-admins"},
            "resourceQuotaSpec": {"hard": {"cpu": "4", "memory": "8Gi"}},
            "contributors": [
                {"kind": "Group", "name": "calo", "role": "edit"},
                {"kind": "Group", "name": "readers", "role": "view"},
            ],
        },
    }
    assert api.request("POST", "/api/v1/apply", json=profile, token=editor).status_code == 403  # not admin
    assert api.request("POST", "/api/v1/apply", json=profile).status_code == 201
    doc = job_manifest("run1", "print(1)", profile="calo")
    assert api.request("POST", "/api/v1/apply", json=doc, token=editor).status_code == 201
    assert (
        api.request(
            "POST", "/api/v1/apply", json=job_manifest("run2", "print(1)", profile="calo"), token=viewer
        ).status_code
        == 403
    )
    assert status(api, "GET", "/api/v1/profiles/calo/trainingjobs/run1", viewer) == 200
    assert status(api, "GET", "/api/v1/profiles/calo/trainingjobs/run1", outsider) == 404
    assert status(api, "DELETE", "/api/v1/profiles/calo/trainingjobs/run1", viewer) == 403
    # The owner manages members but not the quota.
    current = api.request("GET", "/api/v1/profiles/calo", token=owner).json()
    current["spec"]["contributors"].append({"kind": "User", "name": "otto", "role": "view"})
    assert api.request("PUT", "/api/v1/profiles/calo", json=current, token=owner).status_code == 200
    assert status(api, "GET", "/api/v1/profiles/calo/trainingjobs/run1", outsider) == 200
    current = api.request("GET", "/api/v1/profiles/calo", token=owner).json()
    current["spec"]["resourceQuotaSpec"]["hard"]["cpu"] = "400"
    assert api.request("PUT", "/api/v1/profiles/calo", json=current, token=owner).status_code == 403
    me = api.request("GET", "/api/v1/whoami", token=editor).json()
    assert {"name": "calo", "role": "edit"} in me["profiles"]


def test_personal_profile_is_created_on_first_request_with_the_default_quota(api: ApiHarness) -> None:
    token = api.add_user("Frank.Smith@cern.ch", "physics")
    me = api.request("GET", "/api/v1/whoami", token=token).json()
    assert me["defaultProfile"] == "frank-smith-cern-ch"
    profile = api.request("GET", "/api/v1/profiles/frank-smith-cern-ch", token=token).json()
    assert profile["spec"]["owner"] == {"kind": "User", "name": "Frank.Smith@cern.ch"}
    assert profile["metadata"]["labels"]["lumiflow.dev/personal"] == "true"
    assert profile["status"]["hard"]["workloads"] == 10
    # Without a profile in the manifest or the request, jobs go there.
    created = submit(api, job_manifest("mine", "print(1)", run_policy={"suspend": True}), token=token)
    assert created["metadata"]["namespace"] == "frank-smith-cern-ch"


def test_users_without_a_role_are_refused(api_factory: object) -> None:
    with api_factory(auth={"roles": {"admin": ["admins"], "user": ["physics"]}}) as api:  # type: ignore[operator]
        member = api.add_user("member", "physics")
        stranger = api.add_user("stranger", "marketing")
        assert status(api, "GET", "/api/v1/trainingjobs", member) == 200
        r = api.client.get("/api/v1/trainingjobs", headers={"Authorization": f"Bearer {stranger}"})
        assert r.status_code == 403
        assert "no lumiflow role" in r.json()["message"]


def test_only_admins_manage_users(api: ApiHarness) -> None:
    user = api.add_user("gina", "physics")
    assert status(api, "POST", "/api/v1/users", user, json={"name": "x", "groups": ["admins"]}) == 403
    assert status(api, "GET", "/api/v1/users", user) == 403
    assert (
        status(api, "POST", "/api/v1/users", api.admin_token, json={"name": "bad name!", "groups": []}) == 422
    )
    # A user may issue and revoke their own tokens.
    r = api.client.post(
        "/api/v1/tokens", json={"description": "laptop"}, headers={"Authorization": f"Bearer {user}"}
    )
    assert r.status_code == 201
    new = r.json()
    assert status(api, "GET", "/api/v1/whoami", new["token"]) == 200
    assert status(api, "DELETE", f"/api/v1/tokens/{new['tokenInfo']['id']}", user) == 200
    assert status(api, "GET", "/api/v1/whoami", new["token"]) == 401
