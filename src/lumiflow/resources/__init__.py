"""Kinds (the contract): pydantic schemas of every kind, their registry and conversions."""

from lumiflow.resources.meta import Condition, ObjectMeta, ResourceModel
from lumiflow.resources.profile import Membership, Profile, ProfileSpec, Role
from lumiflow.resources.registry import KindInfo, KindRegistry, Prepared, default_registry, prepare
from lumiflow.resources.trainingjob import JobPhase, RestartPolicy, TrainingJob
from lumiflow.resources.workload import Workload, WorkloadPhase

__all__ = [
    "Condition",
    "JobPhase",
    "KindInfo",
    "KindRegistry",
    "Membership",
    "ObjectMeta",
    "Prepared",
    "Profile",
    "ProfileSpec",
    "ResourceModel",
    "RestartPolicy",
    "Role",
    "TrainingJob",
    "Workload",
    "WorkloadPhase",
    "default_registry",
    "prepare",
]
