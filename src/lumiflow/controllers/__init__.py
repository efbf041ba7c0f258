"""Controllers: one level-triggered reconciler per kind, driven by work queues."""

from lumiflow.controllers.manager import DONE, Controller, ControllerManager, Result, WorkQueue
from lumiflow.controllers.trainingjob import JobSettings, TrainingJobController
from lumiflow.controllers.workload import WorkloadController

__all__ = [
    "DONE",
    "Controller",
    "ControllerManager",
    "JobSettings",
    "Result",
    "TrainingJobController",
    "WorkQueue",
    "WorkloadController",
]
