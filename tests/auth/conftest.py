"""An in-process platform in oidc mode, pointed at the session's real issuer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lumiflow.server.app import create_app
from lumiflow.server.platform import Platform
from tests.conftest import ApiHarness, make_settings
from tests.oidc.issuer import Issuer, oidc_auth


@contextmanager
def oidc_api(home: Path, issuer: Issuer | str, **auth: Any) -> Iterator[ApiHarness]:
    """``admin_token`` is the bootstrap admin's (service-account) token, or "" without one."""
    platform = Platform(make_settings(home, auth=oidc_auth(issuer, **auth)))
    token = platform.bootstrap_admin()
    with TestClient(create_app(platform), raise_server_exceptions=False) as client:
        yield ApiHarness(platform, client, token or "")
