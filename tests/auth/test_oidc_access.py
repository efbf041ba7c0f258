"""The API in oidc mode: the issuer's groups decide roles and profile access, token by token;
bad tokens change nothing; the server's own tokens work beside single sign-on when asked to."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from lumiflow.common.oauth import OAuthError, unverified_claims
from tests.auth.conftest import oidc_api
from tests.conftest import ApiHarness
from tests.helpers import free_port, wait_until
from tests.jobs import job_manifest
from tests.oidc.issuer import OTHER_RESOURCE, Issuer

pytestmark = pytest.mark.timeout(90)


def call(api: ApiHarness, method: str, path: str, token: str, **kw: Any) -> Any:
    return api.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


def calo_profile() -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Profile",
        "metadata": {"name": "calo"},
        "spec": {
            "owner": {"kind": "Group", "name": "physics"},
            "resourceQuotaSpec": {"hard": {"cpu": "4", "memory": "8Gi"}},
        },
    }


def test_groups_give_roles_and_the_first_request_makes_the_personal_profile(
    oidc_issuer: Issuer, home: Path
) -> None:
    with oidc_api(home, oidc_issuer) as api:
        store = api.platform.store
        assert [o.name for o in store.list("Profile").items] == []
        olga = oidc_issuer.user_tokens("olga").access_token
        alice = oidc_issuer.user_tokens("alice").access_token
        me = call(api, "GET", "/api/v1/whoami", olga).json()
        assert (me["user"], me["roles"]) == ("olga", ["admin", "user"])
        me = call(api, "GET", "/api/v1/whoami", alice).json()
        assert me["roles"] == ["user"] and me["groups"] == ["ml-users", "physics"]
        assert me["defaultProfile"] == "alice"
        personal = store.get("Profile", "", "alice")
        assert personal.spec["owner"] == {"kind": "User", "name": "alice"}
        assert personal.spec["resourceQuotaSpec"]["hard"] == api.platform.settings.profiles.default_quota
        # Roles come from groups by configuration: here only physics may use lumiflow.
    with oidc_api(home / "strict", oidc_issuer, roles={"admin": ["admins"], "user": ["physics"]}) as api:
        bob = oidc_issuer.user_tokens("bob").access_token
        r = call(api, "GET", "/api/v1/trainingjobs", bob)
        assert r.status_code == 403 and "no lumiflow role" in r.json()["message"]
        assert [o.name for o in api.platform.store.list("Profile").items] == []


def test_leaving_a_group_in_the_issuer_ends_access_at_the_next_token(oidc_issuer: Issuer, home: Path) -> None:
    with oidc_api(home, oidc_issuer) as api:
        olga = oidc_issuer.user_tokens("olga").access_token
        assert call(api, "POST", "/api/v1/profiles", olga, json=calo_profile()).status_code == 201
        alice = oidc_issuer.user_tokens("alice")
        job = job_manifest("calo-run", "print(1)", profile="calo", run_policy={"suspend": True})
        assert call(api, "POST", "/api/v1/apply", alice.access_token, json=job).status_code == 201
        path = "/api/v1/profiles/calo/trainingjobs/calo-run"
        # Let the controller settle its own status first: only a write by alice could change it now.
        before = wait_until(
            lambda: (
                (obj := call(api, "GET", path, olga).json())["status"].get("phase") == "Suspended" and obj
            ),
            timeout=15,
            message="the job to settle",
        )

        oidc_issuer.set_groups("alice", ["ml-users"])
        # The token she holds still says physics until it expires: the issuer decides at the next token.
        assert call(api, "GET", path, alice.access_token).status_code == 200
        renewed = oidc_issuer.refresh(alice.refresh_token or "")
        assert unverified_claims(renewed.access_token)["groups"] == ["ml-users"]  # type: ignore[index]
        token = renewed.access_token
        assert call(api, "GET", path, token).status_code == 404
        assert call(api, "GET", "/api/v1/profiles/calo", token).status_code == 404
        changed = {**job, "metadata": {**job["metadata"], "labels": {"x": "y"}}}
        assert call(api, "POST", "/api/v1/apply", token, json=changed).status_code == 404
        assert call(api, "DELETE", path, token).status_code == 404
        assert call(api, "GET", "/api/v1/whoami", token).json()["profiles"] == [
            {"name": "alice", "role": "owner"}
        ]
        after = call(api, "GET", path, olga).json()
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
            "something changed"
        )


def forge(token: str, **claims: Any) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(claims)
    return f"{header}.{base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b'=').decode()}.{signature}"


def test_bad_tokens_get_401_and_change_nothing(oidc_issuer: Issuer, home: Path) -> None:
    with oidc_api(home, oidc_issuer) as api:
        olga = oidc_issuer.user_tokens("olga").access_token
        good = oidc_issuer.user_tokens("alice").access_token
        header = jwt.get_unverified_header(good)
        none_alg = (
            base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": header["kid"]}).encode())
            .rstrip(b"=")
            .decode()
            + "."
            + good.split(".")[1]
            + "."
        )
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        claims = {**unverified_claims(good), "groups": ["admins"]}  # type: ignore[dict-item]
        oidc_issuer.set_token_ttl(1)
        short = oidc_issuer.robot_token()
        oidc_issuer.set_token_ttl(300)
        bad = {
            "forged": forge(good, groups=["admins"]),
            "foreign key": jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]}),
            "alg none": none_alg,
            "wrong audience": oidc_issuer.robot_token(resource=OTHER_RESOURCE),
            "wrong issuer": oidc_issuer.robot_token(second_issuer=True),
        }
        job = job_manifest("nope", "print(1)", profile="alice", run_policy={"suspend": True})
        for what, token in bad.items():
            r = call(api, "POST", "/api/v1/apply", token, json=job)
            assert r.status_code == 401, (what, r.text)
            assert r.json()["error"] == "unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
        # Expired (the server tolerates 30 s of clock skew by default: here one second).
        with oidc_api(home / "strict", oidc_issuer, clock_skew_seconds=1) as strict:
            exp = unverified_claims(short)["exp"]  # type: ignore[index]
            wait_until(
                lambda: call(strict, "GET", "/api/v1/whoami", short).status_code == 401,
                timeout=15,
                interval=0.25,
                message="the short token to expire",
            )
            r = call(strict, "GET", "/api/v1/whoami", short)
            assert "expired" in r.json()["message"] and exp is not None
        assert call(api, "GET", "/api/v1/profiles/alice/trainingjobs/nope", olga).status_code == 404
        assert [o.name for o in api.platform.store.list("TrainingJob").items] == []


def test_a_user_deleted_in_the_issuer_cannot_get_another_token(oidc_issuer: Issuer, home: Path) -> None:
    bob = oidc_issuer.user_tokens("bob")
    oidc_issuer.delete_user("bob")
    with pytest.raises(OAuthError) as info:
        oidc_issuer.refresh(bob.refresh_token or "")
    assert info.value.error == "invalid_grant"


def test_service_account_tokens_work_beside_single_sign_on_when_enabled(
    oidc_issuer: Issuer, home: Path
) -> None:
    with oidc_api(home / "on", oidc_issuer, embedded_tokens=True) as api:
        assert api.admin_token, "the bootstrap admin exists as a service account"
        assert call(api, "GET", "/api/v1/whoami", api.admin_token).json()["roles"] == ["admin", "user"]
        added = call(
            api, "POST", "/api/v1/users", api.admin_token, json={"name": "ci-bot", "groups": ["robots"]}
        )
        assert added.status_code == 201, added.text
        bot = added.json()["token"]
        assert call(api, "GET", "/api/v1/whoami", bot).json()["user"] == "ci-bot"
        assert (
            call(api, "GET", "/api/v1/whoami", oidc_issuer.user_tokens("alice").access_token).status_code
            == 200
        )
        assert call(api, "DELETE", "/api/v1/users/ci-bot", api.admin_token).status_code == 200
        assert call(api, "GET", "/api/v1/whoami", bot).status_code == 401
        options = api.client.get("/api/v1/auth/config").json()
        assert options == {
            "mode": "oidc",
            "issuer": oidc_issuer.url,
            "clientId": "lumiflow-cli",
            "scopes": ["openid", "profile", "groups", "offline_access"],
            "audience": "lumiflow",
            "tokens": True,
        }
    with oidc_api(home / "off", oidc_issuer) as api:
        assert api.admin_token == "", "no bootstrap token without embedded tokens"
        own = api.platform.identity.issue("admin", ["admins"]).token
        r = call(api, "GET", "/api/v1/whoami", own)
        assert r.status_code == 401 and "does not trust" in r.json()["message"]
        olga = oidc_issuer.user_tokens("olga").access_token
        r = call(api, "POST", "/api/v1/users", olga, json={"name": "ci-bot"})
        assert r.status_code == 400 and "embedded_tokens" in r.json()["message"]
        assert api.platform.store.list_users() == []


def test_an_unreachable_issuer_answers_503(home: Path) -> None:
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with oidc_api(home, issuer) as api:
        token = jwt.encode(
            {"iss": issuer, "aud": "lumiflow", "exp": 2**31, "iat": 0, "preferred_username": "x"},
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
        )
        r = call(api, "GET", "/api/v1/whoami", token)
        assert r.status_code == 503 and r.json()["error"] == "identity_unavailable"
