"""Signing in from a terminal or a notebook, and staying signed in.

:func:`device_login` runs the device-authorization grant (RFC 8628) against the OpenID
Connect issuer the server names at ``/api/v1/auth/config``: it shows a URL and a code, the
user approves in any browser, and the issuer hands over an access token and a refresh token.

:class:`RefreshingAuth` is what the SDK sends requests with. It refreshes the access token
silently shortly before it expires (judged from the token's own ``exp``) and, should the
server still answer 401, once more before giving up, then writes the new tokens back to the
config file. Refreshes are serialised across threads and processes (a lock on the config
file), and a process that finds the file already refreshed by another adopts that token
instead of spending the refresh token again: issuers that rotate refresh tokens revoke the
whole sign-in when a used one comes back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from lumiflow.common.errors import IdentityUnavailable, LumiflowError
from lumiflow.common.oauth import (
    DeviceAuthorization,
    OAuthError,
    TokenSet,
    discover,
    poll_device_token,
    refresh,
    should_refresh,
    start_device_authorization,
)
from lumiflow.sdk.config import ClientConfig, locked


class SignInRequired(LumiflowError):
    code = "sign_in_required"
    http_status = 401


@dataclass(frozen=True)
class DeviceLogin:
    tokens: TokenSet
    issuer: str
    token_endpoint: str
    client_id: str


def sign_in_options(url: str, *, http: httpx.Client | None = None) -> dict[str, Any]:
    """How the server at ``url`` wants clients to sign in (``mode``: embedded or oidc)."""
    client = http or httpx.Client(timeout=30.0)
    try:
        response = client.get(url.rstrip("/") + "/api/v1/auth/config")
    except httpx.HTTPError as exc:
        raise LumiflowError(f"cannot reach lumiflow at {url}: {exc}") from None
    finally:
        if http is None:
            client.close()
    if response.status_code == 404:
        return {"mode": "embedded", "tokens": True}  # a server from before single sign-on
    if response.status_code != 200:
        raise LumiflowError(f"{url} answered HTTP {response.status_code} to /api/v1/auth/config")
    body: dict[str, Any] = response.json()
    return body


def device_login(
    options: dict[str, Any],
    *,
    prompt: Callable[[DeviceAuthorization], None],
    http: httpx.Client | None = None,
) -> DeviceLogin:
    """Signs in with the device-authorization grant; ``prompt`` shows the user the URL and
    code. Blocks until the user approves (or refuses, or the code expires: OAuthError)."""
    issuer, client_id = str(options.get("issuer") or ""), str(options.get("clientId") or "")
    if not issuer or not client_id:
        raise LumiflowError("the server's sign-in options name no issuer or client id")
    client = http or httpx.Client(timeout=30.0)
    try:
        metadata = discover(client, issuer)
        if not metadata.device_authorization_endpoint:
            raise IdentityUnavailable(f"the issuer {issuer} does not offer the device authorization grant")
        device = start_device_authorization(
            client,
            metadata.device_authorization_endpoint,
            client_id=client_id,
            scopes=list(options.get("scopes") or ["openid"]),
        )
        prompt(device)
        tokens = poll_device_token(client, metadata.token_endpoint, device, client_id=client_id)
    finally:
        if http is None:
            client.close()
    return DeviceLogin(
        tokens=tokens, issuer=issuer, token_endpoint=metadata.token_endpoint, client_id=client_id
    )


class RefreshingAuth(httpx.Auth):
    """Bearer authentication that keeps an OIDC access token fresh (see module docstring).

    With a plain token (embedded mode, ``LUMIFLOW_TOKEN``, an explicit ``token=``), it only
    sets the header.
    """

    def __init__(self, config: ClientConfig, *, home: str | Path | None, persist: bool = True) -> None:
        self.config = config
        self.home = home
        self.persist = persist
        self._lock = threading.Lock()

    @property
    def token(self) -> str | None:
        return self.config.token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.config.token
        if token and self.config.refreshable and should_refresh(token):
            token = self.refresh(token)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and token and self.config.refreshable:
            request.headers["Authorization"] = f"Bearer {self.refresh(token)}"
            yield request

    def refresh(self, used: str) -> str:
        """A new access token in place of ``used``; raises SignInRequired when the issuer
        refuses (the sign-in ended: the user must run `lumi login` again)."""
        with self._lock:
            if self.config.token != used:
                return str(self.config.token)  # another thread refreshed meanwhile
            with locked(self.home) if self.persist else contextlib.nullcontext():
                if self.persist:
                    on_disk = ClientConfig.load_file(self.home)
                    if on_disk.url == self.config.url and on_disk.token and on_disk.token != used:
                        # Another process refreshed: use its tokens, not our spent refresh token.
                        self._adopt(on_disk.token, on_disk.refresh_token)
                        return on_disk.token
                assert self.config.refresh_token
                assert self.config.token_endpoint
                assert self.config.client_id
                try:
                    with httpx.Client(timeout=30.0) as http:
                        tokens = refresh(
                            http,
                            self.config.token_endpoint,
                            self.config.refresh_token,
                            client_id=self.config.client_id,
                        )
                except OAuthError as exc:
                    raise SignInRequired(
                        f"your sign-in has ended ({exc.error}): run `lumi login {self.config.url}` again"
                    ) from None
                self._adopt(tokens.access_token, tokens.refresh_token)
                if self.persist:
                    on_disk = ClientConfig.load_file(self.home)
                    if on_disk.url == self.config.url:
                        on_disk.token, on_disk.refresh_token = tokens.access_token, tokens.refresh_token
                        on_disk.save(self.home)
                return tokens.access_token

    def _adopt(self, token: str, refresh_token: str | None) -> None:
        self.config.token = token
        if refresh_token:
            self.config.refresh_token = refresh_token
