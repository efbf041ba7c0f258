"""Identity (who is calling) and access (what they may do)."""

from lumiflow.auth.access import AccessPolicy, personal_profile_name
from lumiflow.auth.identity import EmbeddedIdentity, Identity, IdentityProvider, IssuedToken

__all__ = [
    "AccessPolicy",
    "EmbeddedIdentity",
    "Identity",
    "IdentityProvider",
    "IssuedToken",
    "personal_profile_name",
]
