"""Who is calling: the identity interface, and the embedded token issuer behind it.

:class:`IdentityProvider` is the seam where single sign-on plugs in: the OIDC provider
(``auth/oidc.py``) implements the same ``authenticate`` and the rest of the platform does
not change.

Embedded mode: the server signs its own JWTs (ES256) with a key generated on first start
and kept in ``$LUMIFLOW_HOME/keys`` (mode 0600). Tokens carry the user's groups and a
``jti``; they can be revoked, and a token of a deleted user stops working at once.
Verified tokens are cached (bounded) so that a request costs a dictionary lookup; the
revocation list and the user list are refreshed on every local change and every few
seconds, so a revocation made by another server process is honoured within that time.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lumiflow.common.errors import NotFound, Unauthorized
from lumiflow.common.timeutil import utcnow
from lumiflow.store.base import ResourceStore
from lumiflow.store.model import Token


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    #: Set by the access policy from the groups.
    is_admin: bool = False
    has_role: bool = True


class IdentityProvider(Protocol):
    def authenticate(self, bearer: str) -> Identity:
        """Returns the caller's identity; raises Unauthorized with the reason. Thread-safe.
        May do I/O (a database read, fetching an issuer's keys)."""
        ...

    def cached(self, bearer: str) -> Identity | None:
        """The identity of a token verified recently, if answering needs no I/O at all;
        None otherwise (then call :meth:`authenticate`). Never raises, never blocks."""
        ...


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    record: Token


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise Unauthorized(f"{path} does not hold an EC private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    return key


class EmbeddedIdentity:
    """Issues and verifies lumiflow's own tokens."""

    REFRESH_SECONDS = 5.0
    CACHE_SIZE = 10_000

    def __init__(self, *, store: ResourceStore, key_path: Path, issuer: str, token_ttl: timedelta) -> None:
        self.store = store
        self.issuer = issuer
        self.token_ttl = token_ttl
        self._key = _load_or_create_key(key_path)
        self._public = self._key.public_key()
        public_der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:16]
        self._cache: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._revoked: set[str] = set()
        self._users: set[str] = set()
        self._refreshed = 0.0
        self.refresh()

    # --- issuing -----------------------------------------------------------------------

    def issue(
        self, user: str, groups: list[str], *, description: str = "", ttl: timedelta | None = None
    ) -> IssuedToken:
        now = utcnow()
        expires = now + (ttl or self.token_ttl)
        token_id = secrets.token_hex(12)
        claims = {
            "iss": self.issuer,
            "sub": user,
            "groups": list(groups),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()) - 5,
            "exp": int(expires.timestamp()),
            "jti": token_id,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
        record = self.store.add_token(
            token_id=token_id, user=user, description=description, issued_at=now, expires_at=expires
        )
        return IssuedToken(token=token, record=record)

    # --- verifying ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Reloads revoked token ids and the user list from the store."""
        revoked = self.store.revoked_token_ids()
        users = {u.name for u in self.store.list_users()}
        with self._lock:
            self._revoked = revoked
            self._users = users
            self._refreshed = time.monotonic()
            stale = [
                k
                for k, (ident, _) in self._cache.items()
                if ident.token_id in revoked or ident.user not in users
            ]
            for key in stale:
                del self._cache[key]

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._refreshed > self.REFRESH_SECONDS:
            try:
                self.refresh()
            except Exception:  # the store is briefly unavailable: keep the last view
                self._refreshed = time.monotonic()

    def cached(self, bearer: str) -> Identity | None:
        if time.monotonic() - self._refreshed > self.REFRESH_SECONDS:
            return None  # the revocation list is due for a reload: that is I/O
        with self._lock:
            entry = self._cache.get(bearer)
            if entry is None:
                return None
            identity, expires = entry
            if (
                time.time() < expires
                and identity.token_id not in self._revoked
                and identity.user in self._users
            ):
                return identity
        return None

    def authenticate(self, bearer: str) -> Identity:
        self._maybe_refresh()
        now = time.time()
        with self._lock:
            cached = self._cache.get(bearer)
            if cached is not None:
                identity, expires = cached
                if now < expires and identity.token_id not in self._revoked and identity.user in self._users:
                    self._cache.move_to_end(bearer)
                    return identity
                del self._cache[bearer]
        identity, expires = self._verify(bearer)
        with self._lock:
            self._cache[bearer] = (identity, expires)
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return identity

    def _verify(self, bearer: str) -> tuple[Identity, float]:
        if len(bearer) > 8192:
            raise Unauthorized("token is too long")
        try:
            header = jwt.get_unverified_header(bearer)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is malformed: {exc}") from None
        if header.get("alg") != "ES256":
            raise Unauthorized(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            claims = jwt.decode(
                bearer,
                self._public,
                algorithms=["ES256"],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "jti", "iss"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("token was issued by someone else") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token is not valid: {exc}") from None
        token_id = str(claims["jti"])
        user = str(claims["sub"])
        groups = claims.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthorized("token groups claim is malformed")
        with self._lock:
            revoked = token_id in self._revoked
            known = user in self._users
        if revoked or not known:
            # Our cache may be a few seconds old: confirm with the store before refusing.
            self.refresh()
            with self._lock:
                revoked = token_id in self._revoked
                known = user in self._users
        if revoked:
            raise Unauthorized("token has been revoked")
        if not known:
            raise Unauthorized(f"user {user!r} no longer exists")
        try:
            self.store.get_token(token_id)
        except NotFound:
            raise Unauthorized("token is not known to this server") from None
        return Identity(user=user, groups=frozenset(groups), token_id=token_id), float(claims["exp"])
