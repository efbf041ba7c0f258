"""`lumi login` with the device-authorization grant against the real issuer, and the SDK
staying signed in by refreshing its access token; `lumi login` in embedded mode as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lumiflow.common.oauth import unverified_claims
from lumiflow.sdk import Client, ClientConfig
from lumiflow.sdk.auth import SignInRequired
from tests.helpers import lumi, wait_until
from tests.oidc.cli import read_until, start_login
from tests.oidc.issuer import Issuer, oidc_auth

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_device_login_refresh_and_sign_in_ending(
    oidc_issuer: Issuer, live_server: Any, tmp_path: Path
) -> None:
    server = live_server(auth=oidc_auth(oidc_issuer))
    home = tmp_path / "alice"
    oidc_issuer.set_token_ttl(4)  # short-lived access tokens: the SDK must refresh them

    proc, lines = start_login(server.url, home)
    seen: list[str] = []
    url = read_until(lines, r"(http://\S+/device\?user_code=\S+)", seen).group(1)
    code = read_until(lines, r"code: (\S+)", seen).group(1)
    assert code in url
    oidc_issuer.device_approve(url, user="alice", password="alice-pw")
    assert proc.wait(timeout=60) == 0, "".join(seen) + (proc.stdout.read() if proc.stdout else "")
    read_until(lines, r"logged in to .* as alice", seen)

    path = ClientConfig.path(home)
    assert path.stat().st_mode & 0o777 == 0o600
    saved = ClientConfig.load_file(home)
    assert saved.refresh_token and saved.client_id == "lumiflow-cli" and saved.issuer == oidc_issuer.url
    assert unverified_claims(saved.token or "")["preferred_username"] == "alice"  # type: ignore[index]
    first = saved.token

    # The SDK refreshes before the access token expires, silently, and saves the new tokens.
    client = Client(home=home)
    assert client.whoami()["user"] == "alice"
    wait_until(
        lambda: client.whoami() and ClientConfig.load_file(home).token != first,
        timeout=30,
        interval=0.25,
        message="the SDK to refresh the access token",
    )
    refreshed = ClientConfig.load_file(home)
    assert refreshed.refresh_token != saved.refresh_token, "the rotated refresh token was saved"
    assert client.token == refreshed.token
    # Another process (a fresh client) adopts the refreshed tokens from the file.
    assert Client(home=home).whoami()["user"] == "alice"

    # A token the server refuses (401) is refreshed once and the request retried.
    broken = ClientConfig.load_file(home)
    broken.token = (broken.token or "")[:-8] + "AAAAAAAA"
    broken.save(home)
    assert Client(home=home).whoami()["groups"] == ["ml-users", "physics"]
    assert ClientConfig.load_file(home).token != broken.token

    # Once the issuer refuses (the user is gone), the SDK says to sign in again.
    oidc_issuer.delete_user("alice")
    broken = ClientConfig.load_file(home)
    broken.token = (broken.token or "")[:-8] + "AAAAAAAA"
    broken.save(home)
    with pytest.raises(SignInRequired, match="lumi login"):
        Client(home=home).whoami()
    result = lumi("whoami", home=home, check=False)
    assert result.returncode == 1 and "lumi login" in result.stderr + result.stdout


def test_login_asks_for_a_token_in_embedded_mode(live_server: Any, tmp_path: Path) -> None:
    server = live_server()
    home = tmp_path / "cli"
    result = lumi("login", server.url, home=home, input=f"{server.admin_token}\n")
    assert "logged in to" in result.stdout and "as admin" in result.stdout
    saved = ClientConfig.load_file(home)
    assert saved.token == server.admin_token and saved.refresh_token is None
    bad = lumi("login", server.url, "--token", "nonsense", home=tmp_path / "other", check=False)
    assert bad.returncode == 1 and not ClientConfig.path(tmp_path / "other").exists()
