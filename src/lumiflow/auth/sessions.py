"""Dashboard sessions: who a browser is, kept on the server.

The browser holds one random, HttpOnly cookie; the store holds a digest of it with the
session's tokens and its CSRF secret, so nothing a script or a proxy log could read lets
anyone act as the user, and signing out (or an expiry) ends the session for good.

Both identity modes make the same kind of session, and every request re-authenticates the
token the session holds through the platform's IdentityProvider:

* embedded: the token pasted into the sign-in form, so a revoked token or a deleted user
  ends the session at the next request;
* OIDC: the access token from the authorization code + PKCE flow (:class:`OIDCSignIn`),
  refreshed with the refresh token shortly before it expires. The groups therefore follow
  the issuer at every refresh, and when the issuer refuses the refresh (the user was
  deleted, the grant revoked) the session ends.

Refreshes of one session are serialised in this process (a refresh token may be single-use,
and replaying a rotated one makes some issuers revoke the whole grant).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from lumiflow.auth.identity import Identity
from lumiflow.auth.oidc import OIDCIdentity
from lumiflow.common.errors import BadRequest, IdentityUnavailable, NotFound, Unauthorized
from lumiflow.common.oauth import OAuthError, TokenSet, pkce_pair, refresh, should_refresh, token_request
from lumiflow.common.timeutil import utcnow
from lumiflow.store.base import ResourceStore

LOGIN_TTL = timedelta(minutes=10)


class SessionEnded(Unauthorized):
    """There is no (longer a) session: the browser must sign in."""


class OIDCSignIn:
    """The dashboard's side of authorization code + PKCE (RFC 6749 §4.1, RFC 7636) with one
    issuer: a confidential client when ``client_secret`` is set, else a public one."""

    def __init__(
        self, identity: OIDCIdentity, *, client_id: str, client_secret: str | None, scopes: list[str]
    ) -> None:
        self.identity = identity
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes

    def authorization_url(self, *, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        endpoint = self.identity.metadata().authorization_endpoint
        if not endpoint:
            raise IdentityUnavailable("the issuer's discovery document has no authorization_endpoint")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def exchange(self, *, code: str, redirect_uri: str, verifier: str) -> TokenSet:
        return token_request(
            self.identity.http,
            self.identity.metadata().token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            client_id=self.client_id,
            client_secret=self.client_secret,
        )

    def refresh(self, refresh_token: str) -> TokenSet:
        return refresh(
            self.identity.http,
            self.identity.metadata().token_endpoint,
            refresh_token,
            client_id=self.client_id,
            client_secret=self.client_secret,
        )

    def check_id_token(self, id_token: str, *, nonce: str) -> None:
        """The ID token must be this issuer's, for this client, and carry our nonce."""
        claims = self.identity.verify(id_token, audience=self.client_id)
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise Unauthorized("the ID token does not carry this sign-in's nonce")

    def revoke(self, token: str) -> None:
        """Best effort (RFC 7009): the session ends here whatever the issuer answers."""
        endpoint = self.identity.metadata().revocation_endpoint
        if not endpoint:
            return
        try:
            token_request(
                self.identity.http,
                endpoint,
                {"token": token, "token_type_hint": "refresh_token"},
                client_id=self.client_id,
                client_secret=self.client_secret,
            )
        except (OAuthError, IdentityUnavailable):
            pass


@dataclass(frozen=True, slots=True)
class ActiveSession:
    key: str
    identity: Identity
    csrf: str
    flash: str | None = None

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, submitted or "")


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionManager:
    """Creates, resolves and ends sessions. Thread-safe."""

    def __init__(
        self,
        *,
        store: ResourceStore,
        authenticate: Callable[[str], Identity],
        signin: OIDCSignIn | None,
        ttl: timedelta,
    ) -> None:
        self.store = store
        self.authenticate = authenticate
        self.signin = signin
        self.ttl = ttl
        self._locks = [threading.Lock() for _ in range(64)]

    # --- creating ------------------------------------------------------------------------

    def _new(self, *, user: str | None, data: dict[str, Any], ttl: timedelta) -> str:
        now = utcnow()
        self.store.delete_expired_sessions(now)
        cookie = secrets.token_urlsafe(32)
        self.store.create_session(_digest(cookie), user=user, data=data, expires_at=now + ttl)
        return cookie

    def start_with_token(self, token: str) -> tuple[str, Identity]:
        """A session holding a bearer token (the embedded sign-in form). Unauthorized if the
        token is not good."""
        identity = self.authenticate(token)
        data = {"kind": "session", "csrf": secrets.token_urlsafe(32), "access_token": token}
        return self._new(user=identity.user, data=data, ttl=self.ttl), identity

    def begin_oidc(self, *, next_url: str, redirect_uri: str) -> tuple[str, str]:
        """Starts a code + PKCE sign-in: (the login cookie, the issuer URL to send the browser to)."""
        if self.signin is None:
            raise BadRequest("single sign-on is not configured (auth.mode is embedded)")
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        url = self.signin.authorization_url(
            redirect_uri=redirect_uri, state=state, nonce=nonce, challenge=challenge
        )
        data = {"kind": "login", "state": state, "nonce": nonce, "verifier": verifier, "next": next_url}
        return self._new(user=None, data=data, ttl=LOGIN_TTL), url

    def complete_oidc(
        self, login_cookie: str | None, *, state: str, code: str, issuer: str | None, redirect_uri: str
    ) -> tuple[str, Identity, str]:
        """Finishes a sign-in at the callback: (session cookie, identity, where to go next).

        The pending sign-in is used once, whatever happens; a state that does not match it,
        an issuer parameter naming another issuer (RFC 9207, against mix-up attacks), or an
        ID token without our nonce refuse the sign-in.
        """
        if self.signin is None:
            raise BadRequest("single sign-on is not configured (auth.mode is embedded)")
        if not login_cookie:
            raise Unauthorized("this sign-in was not started here (or took too long): sign in again")
        key = _digest(login_cookie)
        try:
            pending = self.store.get_session(key)
        except NotFound:
            raise Unauthorized(
                "this sign-in was not started here (or took too long): sign in again"
            ) from None
        self.store.delete_session(key)
        data = pending.data
        if data.get("kind") != "login" or pending.expires_at < utcnow():
            raise Unauthorized("this sign-in took too long: sign in again")
        if not hmac.compare_digest(str(data.get("state", "")), state):
            raise Unauthorized("the sign-in answer does not belong to this sign-in (state mismatch)")
        if issuer is not None and issuer != self.signin.identity.issuer:
            raise Unauthorized(f"the sign-in answer comes from issuer {issuer!r}, not ours")
        try:
            tokens = self.signin.exchange(
                code=code, redirect_uri=redirect_uri, verifier=str(data["verifier"])
            )
        except OAuthError as exc:
            raise Unauthorized(f"the issuer refused the sign-in: {exc.message}") from None
        if tokens.id_token:
            self.signin.check_id_token(tokens.id_token, nonce=str(data["nonce"]))
        identity = self.authenticate(tokens.access_token)
        session = {
            "kind": "session",
            "csrf": secrets.token_urlsafe(32),
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
        }
        cookie = self._new(user=identity.user, data=session, ttl=self.ttl)
        return cookie, identity, str(data.get("next") or "")

    # --- using ---------------------------------------------------------------------------

    def _lock(self, key: str) -> threading.Lock:
        return self._locks[int(key[:8], 16) % len(self._locks)]

    def _refresh(self, key: str, used_token: str) -> str:
        """A fresh access token for the session; another thread's refresh counts."""
        assert self.signin is not None
        with self._lock(key):
            try:
                current = self.store.get_session(key).data
            except NotFound:
                raise SessionEnded("your session ended: sign in again") from None
            if current.get("access_token") != used_token:
                return str(current["access_token"])
            refresh_token = current.get("refresh_token")
            if not refresh_token:
                raise SessionEnded("your sign-in expired: sign in again")
            try:
                tokens = self.signin.refresh(str(refresh_token))
            except OAuthError as exc:
                self.store.delete_session(key)
                raise SessionEnded(f"your sign-in ended ({exc.error}): sign in again") from None
            current = {**current, "access_token": tokens.access_token, "refresh_token": tokens.refresh_token}
            self.store.update_session(key, data=current)
            return tokens.access_token

    def resolve(self, cookie: str | None) -> ActiveSession:
        """The session of a cookie, its token refreshed if needed. Raises SessionEnded."""
        if not cookie or len(cookie) > 256:
            raise SessionEnded("sign in to continue")
        key = _digest(cookie)
        try:
            session = self.store.get_session(key)
        except NotFound:
            raise SessionEnded("sign in to continue") from None
        data = session.data
        if data.get("kind") != "session" or session.expires_at < utcnow():
            self.store.delete_session(key)
            raise SessionEnded("your session expired: sign in again")
        token = str(data.get("access_token") or "")
        refreshable = self.signin is not None and bool(data.get("refresh_token"))
        refreshed = False
        if refreshable and should_refresh(token):
            token, refreshed = self._refresh(key, token), True
        try:
            identity = self.authenticate(token)
        except Unauthorized as exc:
            if not refreshable or refreshed:
                self.store.delete_session(key)
                raise SessionEnded(f"your session ended ({exc.message}): sign in again") from None
            try:
                identity = self.authenticate(self._refresh(key, token))
            except Unauthorized as again:
                self.store.delete_session(key)
                raise SessionEnded(f"your session ended ({again.message}): sign in again") from None
        flash = data.get("flash")
        if flash:
            current = self.store.get_session(key).data
            current.pop("flash", None)
            self.store.update_session(key, data=current)
        return ActiveSession(
            key=key, identity=identity, csrf=str(data["csrf"]), flash=str(flash) if flash else None
        )

    def set_flash(self, session: ActiveSession, message: str) -> None:
        """A message shown once, on the next page of this session."""
        try:
            current = self.store.get_session(session.key).data
        except NotFound:
            return
        self.store.update_session(session.key, data={**current, "flash": message[:2000]})

    def end(self, cookie: str | None) -> None:
        if not cookie or len(cookie) > 256:
            return
        key = _digest(cookie)
        try:
            data = self.store.get_session(key).data
        except NotFound:
            return
        self.store.delete_session(key)
        if self.signin is not None and data.get("refresh_token"):
            self.signin.revoke(str(data["refresh_token"]))
