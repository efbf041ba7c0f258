"""auth settings: oidc mode needs its keys, and a bad key is named in the error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lumiflow.common.errors import ValidationFailed
from lumiflow.common.settings import Settings
from tests.helpers import lumi

pytestmark = pytest.mark.timeout(60)

OIDC = {
    "mode": "oidc",
    "issuer": "https://sso.example.org/realms/lab",
    "audience": "lumiflow",
    "client_id": "lumiflow",
}


@pytest.mark.parametrize(
    ("auth", "field", "words"),
    [
        ({"mode": "oidc"}, "auth.issuer", "auth.audience, auth.client_id: needed with auth.mode: oidc"),
        ({**OIDC, "audience": None}, "auth.audience", "needed"),
        ({"mode": "sso"}, "auth.mode", "'embedded' or 'oidc'"),
        ({**OIDC, "issuer": "http://sso.example.org"}, "auth.issuer", "must be an https:// URL"),
        ({**OIDC, "issuer": "https://sso.example.org/?realm=x"}, "auth.issuer", "without query"),
        ({**OIDC, "groups_claim": ""}, "auth.groups_claim", "at least 1 character"),
        ({**OIDC, "scopes": ["openid profile"]}, "auth.scopes", "one word"),
        ({**OIDC, "clock_skew_seconds": 3600}, "auth.clock_skew_seconds", "less than or equal to 300"),
        ({**OIDC, "client-id": "x"}, "auth.client-id", "Extra inputs are not permitted"),
        ({"client_id": "lumiflow"}, "auth.client_id", "only used with auth.mode: oidc"),
        ({"embedded_tokens": True}, "auth.embedded_tokens", "only used with auth.mode: oidc"),
        ({"roles": {"superuser": ["x"]}}, "auth.roles", "allowed: admin, user"),
    ],
)
def test_bad_auth_settings_name_the_key(tmp_path: Path, auth: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        Settings.load(home=tmp_path, overrides={"auth": auth})
    assert info.value.field == field, info.value.message
    assert words in info.value.message and field in info.value.message


def test_good_oidc_settings(tmp_path: Path) -> None:
    auth = Settings.load(home=tmp_path, overrides={"auth": {**OIDC, "embedded_tokens": True}}).auth
    assert auth.own_issuer == "lumiflow" and auth.accepts_own_tokens
    assert auth.device_client_id == "lumiflow"
    local = Settings.load(home=tmp_path, overrides={"auth": {**OIDC, "issuer": "http://127.0.0.1:9000"}}).auth
    assert local.issuer == "http://127.0.0.1:9000", "plain http is fine on loopback (tests, development)"
    assert Settings.load(home=tmp_path).auth.own_issuer == "lumiflow"


def test_lumi_up_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "lumiflow.yaml"
    config.write_text("auth: {mode: oidc, issuer: 'http://sso.example.org', audience: a, client_id: c}\n")
    result = lumi("up", "--config", str(config), home=tmp_path / "home", check=False)
    assert result.returncode != 0
    assert "auth.issuer" in result.stderr + result.stdout
