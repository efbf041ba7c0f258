"""Dashboard single sign-on (authorization code + PKCE) against the real issuer, over HTTP as
a browser without JavaScript sends it: the session, the personal profile, group changes and
deleted users reaching the dashboard at the next token, and forged sign-in answers."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from lumiflow.common.errors import NotFound
from tests.helpers import wait_until
from tests.oidc.issuer import Issuer, callback_params, oidc_auth

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


def browser() -> httpx.Client:
    return httpx.Client(timeout=30, follow_redirects=False)


def test_single_sign_on_makes_a_session_and_the_personal_profile(
    oidc_issuer: Issuer, live_server: Any
) -> None:
    server = live_server(auth=oidc_auth(oidc_issuer))
    store = server.platform.store
    with pytest.raises(NotFound):
        store.get("Profile", "", "alice")
    with browser() as http:
        first = http.get(f"{server.url}/ui/jobs")
        assert first.status_code == 303
        login = http.get(server.url + first.headers["location"])
        assert 'id="sso"' in login.text and 'id="token-form"' not in login.text, (
            "no token form without service accounts"
        )
        sso = re.search(r'id="sso" href="([^"]+)"', login.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        start = http.get(server.url + sso)
        assert start.status_code == 303
        authorize = start.headers["location"]
        assert authorize.startswith(f"{oidc_issuer.url}/auth?")
        for param in (
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            "client_id=lumiflow",
        ):
            assert param in authorize
        back = oidc_issuer.approve(http, http.get(authorize), user="alice", password="alice-pw")
        done = http.get(back.headers["location"])
        assert done.status_code == 303 and done.headers["location"] == "/ui/jobs", "back where she started"
        assert "lumiflow_login" not in http.cookies, "the pending sign-in is used up"
        home = http.get(f"{server.url}/ui/")
        assert home.status_code == 200 and 'id="whoami"' in home.text and ">alice<" in home.text
        assert "ml-users, physics" in home.text
    profile = store.get("Profile", "", "alice")
    assert profile.spec["owner"] == {"kind": "User", "name": "alice"}, "created at sign-in"


def test_group_changes_and_deletion_in_the_issuer_reach_the_dashboard(
    oidc_issuer: Issuer, live_server: Any
) -> None:
    server = live_server(auth=oidc_auth(oidc_issuer, clock_skew_seconds=0))
    olga = oidc_issuer.user_tokens("olga").access_token
    profile = {
        "apiVersion": "lumiflow.dev/v1",
        "kind": "Profile",
        "metadata": {"name": "calo"},
        "spec": {"owner": {"kind": "Group", "name": "physics"}, "resourceQuotaSpec": {"hard": {"cpu": "2"}}},
    }
    created = httpx.post(
        f"{server.url}/api/v1/profiles", json=profile, headers={"Authorization": f"Bearer {olga}"}
    )
    assert created.status_code == 201, created.text
    oidc_issuer.set_token_ttl(3)  # the dashboard refreshes its short access token as it goes
    with browser() as http:
        signed_in = oidc_issuer.dashboard_sign_in(http, server.url, user="alice", password="alice-pw")
        assert signed_in.status_code == 303
        assert 'id="profile-calo"' in http.get(f"{server.url}/ui/profiles").text
        assert http.get(f"{server.url}/ui/jobs", params={"profile": "calo"}).status_code == 200

        oidc_issuer.set_groups("alice", ["ml-users"])
        wait_until(
            lambda: 'id="profile-calo"' not in http.get(f"{server.url}/ui/profiles").text,
            timeout=30,
            interval=0.25,
            message="the dashboard's next token to drop the physics group",
        )
        assert http.get(f"{server.url}/ui/jobs", params={"profile": "calo"}).status_code == 404

        oidc_issuer.delete_user("alice")

        def signed_out() -> bool:
            r = http.get(f"{server.url}/ui/")
            return r.status_code == 303 and r.headers["location"].endswith("&ended=1")

        wait_until(signed_out, timeout=30, interval=0.25, message="the refused refresh to end the session")
        login = http.get(f"{server.url}/ui/login?ended=1")
        assert "Your session ended" in login.text


def test_forged_or_replayed_sign_in_answers_are_refused(oidc_issuer: Issuer, live_server: Any) -> None:
    server = live_server(auth=oidc_auth(oidc_issuer))
    callback = f"{server.url}/ui/auth/callback"
    with browser() as http:
        # No sign-in was started by this browser.
        r = http.get(callback, params={"code": "x", "state": "y"})
        assert r.status_code == 401 and "not started here" in r.text
        # Started, but the answer carries another state (CSRF on the callback).
        start = http.get(f"{server.url}/ui/login/sso")
        back = oidc_issuer.approve(http, http.get(start.headers["location"]), user="bob", password="bob-pw")
        params = callback_params(back.headers["location"])
        r = http.get(callback, params={**params, "state": "forged"})
        assert r.status_code == 401 and "state mismatch" in r.text
        # The pending sign-in was used up by that attempt: the genuine answer is now refused too.
        r = http.get(callback, params=params)
        assert r.status_code == 401 and "lumiflow_session" not in http.cookies
        # An answer that names another issuer (mix-up attack).
        start = http.get(f"{server.url}/ui/login/sso")
        back = oidc_issuer.approve(http, http.get(start.headers["location"]), user="bob", password="bob-pw")
        params = callback_params(back.headers["location"])
        r = http.get(callback, params={**params, "iss": oidc_issuer.url2})
        assert r.status_code == 401 and "not ours" in r.text
        # The issuer refusing (the user pressed cancel) is shown, not a crash.
        r = http.get(callback, params={"error": "access_denied", "error_description": "<b>no</b>"})
        assert r.status_code == 401 and "access_denied" in r.text and "<b>no</b>" not in r.text
        assert "lumiflow_session" not in http.cookies
