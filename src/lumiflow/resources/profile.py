"""``Profile``: the namespace of a user or a group, with its members and its quota.

Kubeflow's shape (``kubeflow.org/v1``: ``spec.owner``, ``spec.resourceQuotaSpec.hard``) is
accepted as is. lumiflow adds ``contributors`` (groups or users with ``edit`` or ``view``)
and ``cluster`` (the profile's home cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from lumiflow.common.quantity import Limits, QuantityError, parse_count, parse_cpu, parse_memory
from lumiflow.resources.meta import Lenient, ResourceModel, Strict

PERSONAL_LABEL = "lumiflow.dev/personal"

#: Quota keys lumiflow enforces, with the resource each one bounds.
QUOTA_KEYS: dict[str, str] = {
    "cpu": "cpu",
    "requests.cpu": "cpu",
    "memory": "memory",
    "requests.memory": "memory",
    "nvidia.com/gpu": "gpu",
    "requests.nvidia.com/gpu": "gpu",
    "gpu": "gpu",
    "workloads": "workloads",
    "count/workloads": "workloads",
}


class Role(StrEnum):
    """A member's role in a profile, from least to most."""

    NONE = "none"
    VIEW = "view"
    EDIT = "edit"
    OWNER = "owner"

    def allows(self, needed: Role) -> bool:
        order = [Role.NONE, Role.VIEW, Role.EDIT, Role.OWNER]
        return order.index(self) >= order.index(needed)


class Subject(Strict):
    kind: Literal["User", "Group"] = "User"
    name: str = Field(min_length=1, max_length=253)
    apiGroup: str | None = None


class Contributor(Subject):
    role: Literal["edit", "view"] = "edit"


class ResourceQuotaSpec(Lenient):
    hard: dict[str, str] = Field(default_factory=dict)

    @field_validator("hard", mode="before")
    @classmethod
    def _hard(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return value
        out: dict[str, str] = {}
        for key, item in value.items():
            key = str(key)
            target = QUOTA_KEYS.get(key)
            try:
                if target == "cpu":
                    parse_cpu(item)
                elif target == "memory":
                    parse_memory(item)
                elif target in ("gpu", "workloads"):
                    parse_count(item)
            except QuantityError as exc:
                raise ValueError(f"{key}: {exc}") from None
            out[key] = str(item)
        return out

    def limits(self) -> Limits:
        """The bounds lumiflow enforces; keys it does not know are kept but not enforced."""
        values: dict[str, Any] = {}
        for key, item in self.hard.items():
            target = QUOTA_KEYS.get(key)
            if target == "cpu":
                values["cpu"] = parse_cpu(item)
            elif target == "memory":
                values["memory"] = parse_memory(item)
            elif target == "gpu":
                values["gpu"] = parse_count(item)
            elif target == "workloads":
                values["workloads"] = parse_count(item)
        return Limits(**values)

    def unenforced(self) -> list[str]:
        return sorted(k for k in self.hard if k not in QUOTA_KEYS)


class ProfileSpec(Strict):
    owner: Subject
    resourceQuotaSpec: ResourceQuotaSpec = Field(default_factory=ResourceQuotaSpec)
    contributors: list[Contributor] = Field(default_factory=list, max_length=256)
    cluster: str | None = None
    plugins: list[dict[str, Any]] | None = None


class Profile(ResourceModel):
    API_VERSION: ClassVar[str] = "lumiflow.dev/v1"
    KIND: ClassVar[str] = "Profile"

    spec: ProfileSpec
    status: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Membership:
    """Who may do what in one profile, derived from its spec."""

    owner: Subject
    contributors: tuple[Contributor, ...]

    def role_of(self, user: str, groups: frozenset[str]) -> Role:
        def matches(subject: Subject) -> bool:
            return (subject.kind == "User" and subject.name == user) or (
                subject.kind == "Group" and subject.name in groups
            )

        if matches(self.owner):
            return Role.OWNER
        best = Role.NONE
        for c in self.contributors:
            if matches(c):
                role = Role.EDIT if c.role == "edit" else Role.VIEW
                if role.allows(best):
                    best = role
        return best

    @classmethod
    def of(cls, spec: ProfileSpec) -> Membership:
        return cls(owner=spec.owner, contributors=tuple(spec.contributors))
