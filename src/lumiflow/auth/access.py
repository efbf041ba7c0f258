"""What a caller may do: roles from groups, and their role in each profile.

Groups map to platform roles by configuration (``auth.roles``): ``admin`` may do
everything; ``user`` may use the profiles they belong to. In a profile, the owner (a user,
or every member of the owner group) and contributors (``edit`` or ``view``) have roles;
anyone else does not see the profile at all: its objects answer 404, as if absent, so that
their names do not leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lumiflow.auth.identity import Identity
from lumiflow.common.errors import Forbidden, NotFound
from lumiflow.resources.profile import Membership, Role


@dataclass(frozen=True)
class AccessPolicy:
    roles: dict[str, list[str]]

    def classify(self, identity: Identity) -> Identity:
        """Sets ``is_admin`` and ``has_role`` from the identity's groups."""
        admin_groups = set(self.roles.get("admin", []))
        user_groups = set(self.roles.get("user", []))
        is_admin = bool(admin_groups & identity.groups) or "*" in admin_groups
        has_role = is_admin or "*" in user_groups or bool(user_groups & identity.groups)
        return replace(identity, is_admin=is_admin, has_role=has_role)

    @staticmethod
    def require_role(identity: Identity) -> None:
        if not identity.has_role:
            raise Forbidden(
                f"user {identity.user!r} has no lumiflow role: none of their groups "
                f"({', '.join(sorted(identity.groups)) or 'none'}) is mapped to a role"
            )

    @staticmethod
    def require_admin(identity: Identity) -> None:
        if not identity.is_admin:
            raise Forbidden("this needs the admin role")

    @staticmethod
    def profile_role(identity: Identity, membership: Membership | None) -> Role:
        if identity.is_admin:
            return Role.OWNER
        if membership is None:
            return Role.NONE
        return membership.role_of(identity.user, identity.groups)

    def require_profile(
        self, identity: Identity, profile: str, membership: Membership | None, needed: Role
    ) -> Role:
        """Raises NotFound if the caller cannot see the profile, Forbidden if they see it
        but their role is below ``needed``."""
        self.require_role(identity)
        role = self.profile_role(identity, membership)
        if role is Role.NONE:
            raise NotFound(f"profile {profile!r} not found")
        if not role.allows(needed):
            raise Forbidden(f"your role in profile {profile!r} is {role.value}; this needs {needed.value}")
        return role


_INVALID = re.compile(r"[^a-z0-9-]+")


def personal_profile_name(user: str) -> str:
    """A DNS-1123 label derived from a user name (``Alice.Smith@cern.ch`` → ``alice-smith-cern-ch``)."""
    name = _INVALID.sub("-", user.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name:
        name = "user"
    if len(name) > 63:
        import hashlib

        digest = hashlib.sha256(user.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name
