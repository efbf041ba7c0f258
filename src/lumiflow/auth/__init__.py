"""Identity (who is calling) and access (what they may do)."""

from lumiflow.auth.access import AccessPolicy, personal_profile_name
from lumiflow.auth.identity import EmbeddedIdentity, Identity, IdentityProvider, IssuedToken
from lumiflow.auth.oidc import IssuerRouter, KeySet, OIDCIdentity, build_identity
from lumiflow.auth.sessions import ActiveSession, OIDCSignIn, SessionEnded, SessionManager

__all__ = [
    "AccessPolicy",
    "ActiveSession",
    "EmbeddedIdentity",
    "Identity",
    "IdentityProvider",
    "IssuedToken",
    "IssuerRouter",
    "KeySet",
    "OIDCIdentity",
    "OIDCSignIn",
    "SessionEnded",
    "SessionManager",
    "build_identity",
    "personal_profile_name",
]
