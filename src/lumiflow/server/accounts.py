"""Users and tokens of the server's own token issuer, for the API and the dashboard alike.

In oidc mode users live in the issuer; the server's own users and tokens exist only as
service accounts, with ``auth.embedded_tokens: true``. Every operation checks the caller's
role first and changes nothing when it refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lumiflow.auth.identity import Identity, IssuedToken
from lumiflow.common.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from lumiflow.resources import Role
from lumiflow.server.platform import Platform
from lumiflow.store.model import Token, User

_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,252}$")
_GROUP = re.compile(r"^[A-Za-z0-9/_][A-Za-z0-9._@:/+-]{0,252}$")
MAX_GROUPS = 64


def check_user_name(value: str) -> str:
    if not _USER.match(value):
        raise ValueError(
            "user names are 1-253 letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return value


def check_groups(value: list[str]) -> list[str]:
    if len(value) > MAX_GROUPS:
        raise ValueError(f"at most {MAX_GROUPS} groups")
    for group in value:
        if not _GROUP.match(group):
            raise ValueError(f"group {group[:80]!r} is not a valid group name")
    return sorted(set(value))


@dataclass(frozen=True)
class Me:
    """What ``whoami`` answers."""

    user: str
    groups: list[str]
    roles: list[str]
    default_profile: str
    profiles: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "groups": self.groups,
            "roles": self.roles,
            "defaultProfile": self.default_profile,
            "profiles": self.profiles,
        }


class AccountService:
    def __init__(self, platform: Platform) -> None:
        self.p = platform

    def _require_own_tokens(self) -> None:
        if not self.p.settings.auth.accepts_own_tokens:
            raise BadRequest(
                "users and their tokens come from the identity provider (auth.mode: oidc); "
                "set auth.embedded_tokens: true for service accounts"
            )

    def me(self, caller: Identity) -> Me:
        profiles = []
        if caller.has_role:
            for name in self.p.profiles.names():
                role = self.p.access.profile_role(caller, self.p.profiles.membership(name))
                if role is not Role.NONE:
                    profiles.append({"name": name, "role": role.value})
        return Me(
            user=caller.user,
            groups=sorted(caller.groups),
            roles=(["admin"] if caller.is_admin else []) + (["user"] if caller.has_role else []),
            default_profile=self.p.personal_profile(caller),
            profiles=profiles,
        )

    def list_users(self, caller: Identity) -> list[User]:
        self.p.access.require_admin(caller)
        return self.p.store.list_users()

    def add_user(
        self, caller: Identity, name: str, groups: list[str], *, ttl_days: float | None = None
    ) -> tuple[User, IssuedToken]:
        self.p.access.require_admin(caller)
        self._require_own_tokens()
        try:
            name = check_user_name(name)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="name") from None
        try:
            groups = check_groups(groups)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field="groups") from None
        user = self.p.store.create_user(name, groups)
        ttl = timedelta(days=ttl_days) if ttl_days else None
        issued = self.p.identity.issue(user.name, user.groups, description="issued by `users add`", ttl=ttl)
        self.p.identity.refresh()
        return user, issued

    def get_user(self, caller: Identity, name: str) -> User:
        if name != caller.user:
            self.p.access.require_admin(caller)
        return self.p.store.get_user(name)

    def delete_user(self, caller: Identity, name: str) -> None:
        self.p.access.require_admin(caller)
        if name == caller.user:
            raise Forbidden("you cannot delete yourself")
        self.p.store.delete_user(name)
        self.p.identity.refresh()

    def list_tokens(self, caller: Identity, user: str | None) -> list[Token]:
        wanted = user or (None if caller.is_admin else caller.user)
        if wanted != caller.user:
            self.p.access.require_admin(caller)
        return self.p.store.list_tokens(user=wanted)

    def issue_token(
        self, caller: Identity, *, user: str | None, description: str, ttl_days: float | None
    ) -> IssuedToken:
        self.p.access.require_role(caller)
        name = user or caller.user
        if name != caller.user:
            self.p.access.require_admin(caller)
        self._require_own_tokens()
        account = self.p.store.get_user(name)
        ttl = timedelta(days=ttl_days) if ttl_days else None
        return self.p.identity.issue(account.name, account.groups, description=description, ttl=ttl)

    def revoke_token(self, caller: Identity, token_id: str) -> Token:
        token = self.p.store.get_token(token_id)
        if token.user != caller.user and not caller.is_admin:
            raise NotFound(f"token {token_id!r} not found")
        revoked = self.p.store.revoke_token(token_id)
        self.p.identity.refresh()
        return revoked

    def sign_in_options(self) -> dict[str, Any]:
        """How clients sign in to this server (public: the CLI reads it before `lumi login`)."""
        auth = self.p.settings.auth
        if auth.mode == "embedded":
            return {"mode": "embedded", "tokens": True}
        return {
            "mode": "oidc",
            "issuer": auth.issuer,
            "clientId": auth.device_client_id,
            "scopes": list(auth.scopes),
            "audience": auth.audience,
            "tokens": auth.embedded_tokens,
        }
