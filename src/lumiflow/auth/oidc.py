"""Single sign-on: tokens of any OpenID Connect issuer, behind the IdentityProvider seam.

The issuer is found through its discovery document, and its signing keys (JWKS) are cached.
A token signed with a key the cache does not know makes the cache refetch the keys once, and
at most once per ``refetch_seconds`` whatever the number of such tokens, so that a key
rotation is picked up at the first new token while a flood of made-up ``kid`` values cannot
turn this server into a load generator against the issuer. The keys are also refreshed every
``cache_seconds``, so a key the issuer withdrew stops being trusted.

A token is accepted when it is signed with RS256 or ES256 (``none``, the HMAC family and
anything else are refused before any key is looked at, which closes the "HS256 signed with
the public key" confusion), by a key whose type fits the algorithm, and when ``iss``,
``aud``, ``exp``, ``nbf`` and ``iat`` hold, with a small clock skew. The user name and groups
come from configurable claims. Verified tokens are cached until they expire, so a request
costs a dictionary lookup after the first one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from lumiflow.auth.identity import Identity, IdentityProvider
from lumiflow.common.errors import IdentityUnavailable, Unauthorized
from lumiflow.common.oauth import ProviderMetadata, discover, fetch_jwks, unverified_claims
from lumiflow.common.settings import AuthSettings

log = logging.getLogger(__name__)

#: The only signature algorithms accepted, and the key type each one needs.
ALGORITHMS: dict[str, tuple[str, str | None]] = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
MAX_TOKEN_BYTES = 16_384


class KeySet:
    """An issuer's signing keys by ``kid``, fetched through ``fetch``. Thread-safe: one
    fetch at a time; callers that arrive during a fetch wait for its result."""

    def __init__(
        self,
        fetch: Callable[[], list[dict[str, Any]]],
        *,
        refetch_seconds: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.refetch_seconds = refetch_seconds
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[dict[str, Any]] | None = None
        self._fetched = float("-inf")
        #: How many times the keys were fetched (for tests and metrics).
        self.fetches = 0

    def _refresh(self) -> None:
        self._fetched = self._clock()
        self.fetches += 1
        keys = self._fetch()
        self._keys = [k for k in keys if k.get("use", "sig") == "sig" and isinstance(k.get("kty"), str)]

    @staticmethod
    def _fits(jwk: dict[str, Any], alg: str) -> bool:
        kty, crv = ALGORITHMS[alg]
        if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
            return False
        return jwk.get("alg") in (None, alg)

    def _find(self, kid: str | None, alg: str) -> dict[str, Any] | None:
        keys = self._keys or []
        if kid is None:
            # Without a kid, only an unambiguous key will do.
            fitting = [k for k in keys if self._fits(k, alg)]
            return fitting[0] if len(fitting) == 1 else None
        for jwk in keys:
            if jwk.get("kid") == kid:
                if not self._fits(jwk, alg):
                    raise Unauthorized(f"token algorithm {alg} does not fit its key {kid!r}")
                return jwk
        return None

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key; Unauthorized when the issuer does not publish it."""
        with self._lock:
            now = self._clock()
            if self._keys is None or now - self._fetched >= self.cache_seconds:
                try:
                    self._refresh()
                except IdentityUnavailable:
                    if self._keys is None:
                        raise
                    log.warning("could not refresh the issuer's keys; using the cached ones")
            found = self._find(kid, alg)
            if found is None and self._clock() - self._fetched >= self.refetch_seconds:
                # A key we have not seen: the issuer may have rotated its keys.
                self._refresh()
                found = self._find(kid, alg)
        if found is None:
            raise Unauthorized(f"token is signed with a key the issuer does not publish (kid {kid!r})")
        try:
            return jwt.PyJWK(found, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the issuer's key {kid!r} is unusable: {exc}") from None


def claim_path(claims: dict[str, Any], path: str) -> Any:
    """``groups`` or a dotted path into nested claims (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


class OIDCIdentity:
    """Verifies access tokens of one OpenID Connect issuer (an :class:`IdentityProvider`)."""

    CACHE_SIZE = 10_000

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        username_claim: str = "preferred_username",
        groups_claim: str = "groups",
        leeway: float = 30.0,
        refetch_seconds: float = 10.0,
        cache_seconds: float = 3600.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.username_claim = username_claim
        self.groups_claim = groups_claim
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self.http = http or httpx.Client(timeout=10.0)
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._metadata_lock = threading.Lock()
        self.keys = KeySet(
            lambda: fetch_jwks(self.http, self.metadata().jwks_uri),
            refetch_seconds=refetch_seconds,
            cache_seconds=cache_seconds,
        )
        self._cache: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._lock = threading.Lock()

    def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched on first use and refreshed every ``cache_seconds``."""
        with self._metadata_lock:
            stale = time.monotonic() - self._metadata_at >= self.cache_seconds
            if self._metadata is None or stale:
                try:
                    self._metadata = discover(self.http, self.issuer)
                    self._metadata_at = time.monotonic()
                except IdentityUnavailable:
                    if self._metadata is None:
                        raise
                    log.warning("could not refresh the discovery document of %s", self.issuer)
            return self._metadata

    def close(self) -> None:
        self.http.close()

    # --- verifying -------------------------------------------------------------------------

    def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The claims of a token this issuer signed for ``audience`` (default: ours).

        Raises Unauthorized with the reason, IdentityUnavailable when the issuer's keys
        cannot be fetched at all.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized("token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is malformed: {exc}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted (allowed: {', '.join(ALGORITHMS)})")
        # Checked before any key lookup, so that foreign tokens never cause a JWKS fetch.
        unverified = unverified_claims(token) or {}
        if unverified.get("iss") != self.issuer:
            raise Unauthorized(f"token was issued by {unverified.get('iss')!r}, not by {self.issuer!r}")
        kid = header.get("kid")
        key = self.keys.key(kid if isinstance(kid, str) else None, str(alg))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                audience=audience or self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(
                f"token is not meant for this server (audience is not {self.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token was issued by someone else") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is not valid: {exc}") from None
        return claims

    def identity_of(self, claims: dict[str, Any]) -> Identity:
        user = claim_path(claims, self.username_claim)
        if not isinstance(user, str) or not user or len(user) > 253:
            raise Unauthorized(f"token has no usable {self.username_claim!r} claim (the user name)")
        groups = claim_path(claims, self.groups_claim)
        if groups is None:
            groups = []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthorized(f"token claim {self.groups_claim!r} must be a list of group names")
        jti = claims.get("jti")
        return Identity(user=user, groups=frozenset(groups), token_id=str(jti) if jti else None)

    def cached(self, bearer: str) -> Identity | None:
        with self._lock:
            entry = self._cache.get(bearer)
        if entry is not None and time.time() < entry[1] + self.leeway:
            return entry[0]
        return None

    def authenticate(self, bearer: str) -> Identity:
        now = time.time()
        with self._lock:
            cached = self._cache.get(bearer)
            if cached is not None:
                identity, expires = cached
                if now < expires + self.leeway:
                    self._cache.move_to_end(bearer)
                    return identity
                del self._cache[bearer]
        claims = self.verify(bearer)
        identity = self.identity_of(claims)
        with self._lock:
            self._cache[bearer] = (identity, float(claims["exp"]))
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return identity


class IssuerRouter:
    """An :class:`IdentityProvider` over several: each token goes to the provider of the
    issuer it names (its unverified ``iss``; that provider then verifies everything).

    This is how the server's own tokens (service accounts) work beside an OIDC issuer's
    without either provider ever seeing the other's tokens.
    """

    def __init__(self, providers: dict[str, IdentityProvider]) -> None:
        self.providers = providers

    def cached(self, bearer: str) -> Identity | None:
        # A provider only caches tokens it verified itself (routed to it by their issuer), so
        # asking each cache is as safe as routing, and saves decoding the token.
        for provider in self.providers.values():
            identity = provider.cached(bearer)
            if identity is not None:
                return identity
        return None

    def authenticate(self, bearer: str) -> Identity:
        if len(bearer) > MAX_TOKEN_BYTES:
            raise Unauthorized("token is too long")
        claims = unverified_claims(bearer)
        if claims is None:
            raise Unauthorized("token is malformed: not a JWT")
        issuer = claims.get("iss")
        provider = self.providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            trusted = ", ".join(sorted(self.providers))
            raise Unauthorized(
                f"token was issued by {issuer!r}, which this server does not trust ({trusted})"
            )
        return provider.authenticate(bearer)


def build_identity(
    auth: AuthSettings, *, embedded: IdentityProvider
) -> tuple[IdentityProvider, OIDCIdentity | None]:
    """The platform's IdentityProvider for ``auth``, and the OIDC provider when there is one.

    Embedded mode: the server's own tokens only. OIDC mode: the issuer's tokens, and, with
    ``embedded_tokens``, the server's own beside them (routed by ``iss``).
    """
    if auth.mode == "embedded":
        return embedded, None
    assert auth.issuer is not None
    assert auth.audience is not None
    oidc = OIDCIdentity(
        issuer=auth.issuer,
        audience=auth.audience,
        username_claim=auth.username_claim,
        groups_claim=auth.groups_claim,
        leeway=auth.clock_skew_seconds,
        refetch_seconds=auth.jwks_refetch_seconds,
        cache_seconds=auth.jwks_cache_seconds,
        http=httpx.Client(timeout=10.0, verify=auth.ca_file or True),
    )
    providers: dict[str, IdentityProvider] = {auth.issuer: oidc}
    if auth.embedded_tokens:
        providers[auth.own_issuer] = embedded
    return IssuerRouter(providers), oidc
