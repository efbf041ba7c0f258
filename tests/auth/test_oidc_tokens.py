"""Verifying OIDC access tokens (auth/oidc.py) against the real issuer of the tests: good
tokens, every kind of bad one, and keys that rotate.

Claims the real issuer never produces (``nbf`` in the future, no user name, groups that are
not a list, a key whose type does not fit the algorithm) are checked with tokens signed here
by a key handed to the verifier's key set directly: same verification code, real crypto, no
HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lumiflow.auth.oidc import KeySet, OIDCIdentity
from lumiflow.common.errors import Unauthorized
from lumiflow.common.oauth import fetch_jwks, unverified_claims
from tests.helpers import wait_until
from tests.oidc.issuer import AUDIENCE, OTHER_RESOURCE, Issuer

pytestmark = pytest.mark.timeout(90)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def assemble(header: dict[str, Any], payload: dict[str, Any], signature: str) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"


def verifier(issuer: Issuer, **kw: Any) -> OIDCIdentity:
    return OIDCIdentity(issuer=issuer.url, audience=AUDIENCE, **kw)


def refused(ident: OIDCIdentity, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        ident.authenticate(token)
    return info.value.message


def test_the_issuers_tokens_give_the_user_and_their_groups(oidc_issuer: Issuer) -> None:
    ident = verifier(oidc_issuer)
    alice = ident.authenticate(oidc_issuer.user_tokens("alice").access_token)
    assert alice.user == "alice"
    assert alice.groups == frozenset({"physics", "ml-users"})
    # A service account's client-credentials token, signed with ES256.
    robot_token = oidc_issuer.robot_token()
    assert segments(robot_token)[0]["alg"] == "ES256"
    robot = ident.authenticate(robot_token)
    assert (robot.user, robot.groups) == ("service-account-robot", frozenset({"robots"}))
    assert ident.keys.fetches == 1, "one fetch of the keys serves every later token"


def test_forged_foreign_and_unsigned_tokens_are_refused(oidc_issuer: Issuer) -> None:
    ident = verifier(oidc_issuer)
    good = oidc_issuer.user_tokens("alice").access_token
    header, payload, signature = segments(good)
    assert ident.authenticate(good).user == "alice"

    # Forged: the payload made an admin, the signature kept.
    forged = assemble(header, {**payload, "groups": ["admins"], "jti": "x"}, signature)
    assert "signature" in refused(ident, forged)
    # Signed by someone else's key under the issuer's key id.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = jwt.encode({**payload, "jti": "y"}, other, algorithm="RS256", headers={"kid": header["kid"]})
    assert "signature" in refused(ident, impostor)
    # alg none, with and without the key id.
    for none_header in ({"alg": "none", "typ": "JWT"}, {"alg": "none", "kid": header["kid"]}):
        assert "algorithm" in refused(ident, assemble(none_header, payload, ""))
    # HS256 "signed" with the issuer's public key (the classic key-confusion attack).
    jwk = next(k for k in fetch_jwks(httpx.Client(), f"{oidc_issuer.url}/jwks") if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = {"alg": "HS256", "kid": header["kid"], "typ": "JWT"}
    signing_input = f"{b64(json.dumps(hs_header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert "algorithm" in refused(ident, f"{signing_input}.{b64(mac)}")
    # Not a JWT at all, and absurdly long.
    assert "malformed" in refused(ident, "not-a-token")
    assert "too long" in refused(ident, "a" * 20_000)


def test_wrong_audience_wrong_issuer_and_expired_tokens_are_refused(oidc_issuer: Issuer) -> None:
    ident = verifier(oidc_issuer, leeway=0)
    # Genuine tokens of the issuer, for another API.
    other_api = oidc_issuer.robot_token(resource=OTHER_RESOURCE)
    assert unverified_claims(other_api)["aud"] == "other-api"  # type: ignore[index]
    assert "not meant for this server" in refused(ident, other_api)
    # Genuine tokens for our audience, from another issuer (the second one of the process).
    foreign = oidc_issuer.robot_token(second_issuer=True)
    assert unverified_claims(foreign)["aud"] == AUDIENCE  # type: ignore[index]
    fetches = ident.keys.fetches
    assert "issued by" in refused(ident, foreign)
    assert ident.keys.fetches == fetches, "a foreign token must not make the server fetch anything"
    # Expired: a one-second token, refused once its time is up (no clock skew allowed here).
    oidc_issuer.set_token_ttl(1)
    short = oidc_issuer.robot_token()
    deadline = unverified_claims(short)["exp"]  # type: ignore[index]

    def expired() -> str | None:
        try:
            verifier(oidc_issuer, leeway=0).authenticate(short)
        except Unauthorized as exc:
            return exc.message
        assert time.time() < deadline + 1, "an expired token was accepted"
        return None

    assert "expired" in wait_until(expired, timeout=15, interval=0.2, message="the token to expire")


def test_an_unknown_key_id_refetches_the_keys_once_and_at_most_once_per_interval(oidc_issuer: Issuer) -> None:
    now = [1000.0]
    ident = verifier(oidc_issuer)
    ident.keys = KeySet(
        lambda: fetch_jwks(ident.http, ident.metadata().jwks_uri),
        refetch_seconds=60,
        cache_seconds=3600,
        clock=lambda: now[0],
    )
    token = oidc_issuer.user_tokens("bob").access_token
    ident.authenticate(token)
    assert ident.keys.fetches == 1
    header, payload, signature = segments(token)
    made_up = iter(
        assemble({**header, "kid": f"made-up-{i}"}, {**payload, "jti": f"z{i}"}, signature)
        for i in range(100)
    )

    def storm(count: int) -> None:
        for _ in range(count):
            assert "does not publish" in refused(ident, next(made_up))

    storm(10)
    assert ident.keys.fetches == 1, "the keys were fetched a moment ago: no refetch yet"
    now[0] += 61
    storm(25)
    assert ident.keys.fetches == 2, "an unknown key id refetches once, whatever the number of tokens"
    now[0] += 30
    storm(10)
    assert ident.keys.fetches == 2
    now[0] += 31
    storm(1)
    assert ident.keys.fetches == 3


def test_a_restarted_issuer_has_new_keys_and_they_are_fetched(oidc_issuer: Issuer) -> None:
    ident = verifier(oidc_issuer, refetch_seconds=0)
    before = oidc_issuer.robot_token()
    assert ident.authenticate(before).user == "service-account-robot"
    old_kid = segments(before)[0]["kid"]
    oidc_issuer.restart()  # oidc-provider generates its keys at start: a key rotation
    after = oidc_issuer.robot_token()
    assert segments(after)[0]["kid"] != old_kid
    assert ident.authenticate(after).user == "service-account-robot"
    assert ident.keys.fetches == 2, "the new key was found by exactly one refetch"
    # A token signed with the withdrawn key verifies no more once its cache entry is gone.
    fresh = verifier(oidc_issuer, refetch_seconds=0)
    assert "does not publish" in refused(fresh, before)


# --- claims the real issuer does not produce ------------------------------------------------


class LocalKeys:
    """A verifier whose key set holds keys made here."""

    ISSUER = "https://issuer.test"

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        self.jwks = [{**rsa_jwk, "kid": "r1", "use": "sig"}, {**ec_jwk, "kid": "e1", "use": "sig"}]
        self.ident = OIDCIdentity(issuer=self.ISSUER, audience=AUDIENCE, leeway=5, http=httpx.Client())
        self.ident.keys = KeySet(lambda: self.jwks, refetch_seconds=60, cache_seconds=3600)

    def token(self, *, alg: str = "RS256", kid: str | None = "r1", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 60,
            "preferred_username": "zoe",
            "groups": ["g"],
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        key = self.rsa if alg == "RS256" else self.ec
        headers = {"kid": kid} if kid else {}
        return jwt.encode(body, key, algorithm=alg, headers=headers)


def test_time_claims_user_name_and_groups_claims_are_checked() -> None:
    local = LocalKeys()
    ident = local.ident
    assert ident.authenticate(local.token()).user == "zoe"
    assert ident.authenticate(local.token(alg="ES256", kid="e1")).groups == frozenset({"g"})
    now = int(time.time())
    assert "not valid yet" in refused(ident, local.token(nbf=now + 120))
    assert "not valid yet" in refused(ident, local.token(iat=now + 120))
    assert ident.authenticate(local.token(nbf=now + 3)).user == "zoe", "small clock skew is tolerated"
    assert "expired" in refused(ident, local.token(exp=now - 120))
    assert ident.authenticate(local.token(exp=now - 2)).user == "zoe", "within the clock skew"
    assert "exp" in refused(ident, local.token(exp=None))
    assert "preferred_username" in refused(ident, local.token(preferred_username=None))
    assert "list of group names" in refused(ident, local.token(groups="admins"))
    assert "list of group names" in refused(ident, local.token(groups=[1, 2]))
    # A key of the wrong type for the algorithm the token names.
    assert "does not fit" in refused(ident, local.token(alg="ES256", kid="r1"))
    # No key id: refused when the algorithm fits several keys' types? Here only one RSA key fits.
    assert ident.authenticate(local.token(kid=None)).user == "zoe"
    local.jwks.append({**local.jwks[0], "kid": "r2"})
    local.ident.keys = KeySet(lambda: local.jwks, refetch_seconds=60, cache_seconds=3600)
    assert "does not publish" in refused(local.ident, local.token(kid=None, jti="other"))


def test_groups_may_come_from_a_nested_claim() -> None:
    local = LocalKeys()
    local.ident.groups_claim = "realm_access.roles"
    identity = local.ident.authenticate(
        local.token(groups=None, realm_access={"roles": ["physics", "admins"]})
    )
    assert identity.groups == frozenset({"physics", "admins"})
