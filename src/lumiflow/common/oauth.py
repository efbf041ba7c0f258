"""The OAuth 2.0 / OpenID Connect wire protocol, as the server and the CLI both speak it.

Only what lumiflow's sign-in flows need, written against the RFCs rather than a library so
that the server (authorization code + PKCE, RFC 6749 §4.1 and RFC 7636), the CLI (device
authorization grant, RFC 8628) and the SDK (refresh, RFC 6749 §6) share one implementation:
discovery (OpenID Connect Discovery 1.0), token-endpoint requests with their error
responses, PKCE pairs, and reading a JWT's claims *without* verifying it (only ever as a
hint, such as when a token expires; the server verifies every token it trusts).

Nothing here keeps state; callers pass the ``httpx.Client`` to use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from lumiflow.common.errors import IdentityUnavailable, LumiflowError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class OAuthError(LumiflowError):
    """The issuer refused a request (``error`` is its code: ``invalid_grant``, ...)."""

    code = "unauthorized"
    http_status = 401

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(
            f"the identity provider answered {error}" + (f": {description}" if description else "")
        )
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    jwks_uri: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    token_type: str = "Bearer"
    refresh_token: str | None = None
    id_token: str | None = None
    expires_in: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _get_json(http: httpx.Client, url: str) -> dict[str, Any]:
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IdentityUnavailable(f"cannot reach the identity provider at {url}: {exc}") from None
    if response.status_code != 200:
        raise IdentityUnavailable(f"{url} answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise IdentityUnavailable(f"{url} did not answer JSON") from None
    if not isinstance(body, dict):
        raise IdentityUnavailable(f"{url} did not answer a JSON object")
    return body


def discover(http: httpx.Client, issuer: str) -> ProviderMetadata:
    """Reads ``{issuer}/.well-known/openid-configuration``; its ``issuer`` must be exactly
    ``issuer`` (OpenID Connect Discovery §4.3, so that one issuer cannot pose as another)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = _get_json(http, url)
    if doc.get("issuer") != issuer:
        raise IdentityUnavailable(
            f"the discovery document at {url} names issuer {doc.get('issuer')!r}, not {issuer!r}"
        )
    for key in ("jwks_uri", "token_endpoint"):
        if not isinstance(doc.get(key), str):
            raise IdentityUnavailable(f"the discovery document at {url} has no {key}")

    def optional(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) else None

    return ProviderMetadata(
        issuer=issuer,
        jwks_uri=doc["jwks_uri"],
        token_endpoint=doc["token_endpoint"],
        authorization_endpoint=optional("authorization_endpoint"),
        device_authorization_endpoint=optional("device_authorization_endpoint"),
        revocation_endpoint=optional("revocation_endpoint"),
        end_session_endpoint=optional("end_session_endpoint"),
    )


def fetch_jwks(http: httpx.Client, jwks_uri: str) -> list[dict[str, Any]]:
    keys = _get_json(http, jwks_uri).get("keys")
    if not isinstance(keys, list):
        raise IdentityUnavailable(f"{jwks_uri} holds no 'keys' list")
    return [k for k in keys if isinstance(k, dict)]


def _client_auth(client_id: str, client_secret: str | None) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """client_secret_basic for a confidential client, the client_id in the form for a public one."""
    if client_secret:
        return {}, httpx.BasicAuth(client_id, client_secret)
    return {"client_id": client_id}, None


def _post_form(
    http: httpx.Client, endpoint: str, form: dict[str, str], *, client_id: str, client_secret: str | None
) -> dict[str, Any]:
    extra, auth = _client_auth(client_id, client_secret)
    try:
        response = http.post(
            endpoint,
            data={**form, **extra},
            auth=auth or httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise IdentityUnavailable(f"cannot reach the identity provider at {endpoint}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise IdentityUnavailable(f"{endpoint} answered HTTP {response.status_code} without a JSON object")
    if response.status_code >= 400 or "error" in body:
        raise OAuthError(
            str(body.get("error") or f"HTTP {response.status_code}"), str(body.get("error_description") or "")
        )
    return body


def token_request(
    http: httpx.Client,
    endpoint: str,
    form: dict[str, str],
    *,
    client_id: str,
    client_secret: str | None = None,
) -> TokenSet:
    """POSTs a grant to the token endpoint. Raises OAuthError with the issuer's error code."""
    body = _post_form(http, endpoint, form, client_id=client_id, client_secret=client_secret)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise IdentityUnavailable(f"{endpoint} answered no access_token")
    expires = body.get("expires_in")

    def text(key: str) -> str | None:
        value = body.get(key)
        return value if isinstance(value, str) and value else None

    return TokenSet(
        access_token=access,
        token_type=str(body.get("token_type") or "Bearer"),
        refresh_token=text("refresh_token"),
        id_token=text("id_token"),
        expires_in=float(expires) if isinstance(expires, int | float) else None,
    )


def refresh(
    http: httpx.Client, endpoint: str, refresh_token: str, *, client_id: str, client_secret: str | None = None
) -> TokenSet:
    """A new access token (and, when the issuer rotates them, a new refresh token)."""
    tokens = token_request(
        http,
        endpoint,
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        client_id=client_id,
        client_secret=client_secret,
    )
    if tokens.refresh_token is None:
        # RFC 6749 §6: without a new one, the old refresh token stays valid.
        return TokenSet(
            tokens.access_token, tokens.token_type, refresh_token, tokens.id_token, tokens.expires_in
        )
    return tokens


def start_device_authorization(
    http: httpx.Client, endpoint: str, *, client_id: str, scopes: list[str]
) -> DeviceAuthorization:
    body = _post_form(http, endpoint, {"scope": " ".join(scopes)}, client_id=client_id, client_secret=None)
    try:
        return DeviceAuthorization(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            verification_uri=str(body.get("verification_uri") or body["verification_url"]),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=float(body.get("expires_in") or 600),
            # RFC 8628 §3.2: five seconds when the issuer does not say.
            interval=float(body.get("interval") or 5),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IdentityUnavailable(f"{endpoint} answered an incomplete device authorization: {exc}") from None


def poll_device_token(
    http: httpx.Client,
    endpoint: str,
    device: DeviceAuthorization,
    *,
    client_id: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TokenSet:
    """Polls the token endpoint at the issuer's interval until the user has approved
    (RFC 8628 §3.4-3.5): ``authorization_pending`` waits, ``slow_down`` adds five seconds,
    ``access_denied`` and ``expired_token`` raise OAuthError."""
    interval = max(device.interval, 0.1)
    deadline = clock() + device.expires_in
    while True:
        sleep(interval)
        try:
            return token_request(
                http,
                endpoint,
                {"grant_type": DEVICE_GRANT, "device_code": device.device_code},
                client_id=client_id,
            )
        except OAuthError as exc:
            if exc.error == "authorization_pending":
                pass
            elif exc.error == "slow_down":
                interval += 5
            else:
                raise
        if clock() > deadline:
            raise OAuthError("expired_token", "the code was not approved in time")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWT's payload, NOT verified: for hints (expiry, issuer) only; None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def should_refresh(token: str, *, now: float | None = None, margin: float = 30.0) -> bool:
    """Whether a token is (nearly) expired, judged from its unverified ``exp``: within
    ``margin`` seconds of it, or half its lifetime for tokens shorter than twice that."""
    claims = unverified_claims(token) or {}
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return False
    if isinstance(iat, int | float) and exp > iat:
        margin = min(margin, (exp - iat) / 2)
    return (time.time() if now is None else now) >= exp - margin
