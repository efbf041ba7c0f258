"""The scheduler: admits Workloads against quota and capacity, fairly across profiles."""

from lumiflow.scheduler.core import Candidate, ClusterView, Decision, ProfileView, schedule
from lumiflow.scheduler.loop import Scheduler

__all__ = ["Candidate", "ClusterView", "Decision", "ProfileView", "Scheduler", "schedule"]
