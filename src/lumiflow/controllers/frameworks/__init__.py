"""Kubeflow's training frameworks: one module each, found by the job's ``spec.framework``.

A framework module says what its Kubeflow operator adds to each replica's environment
(``TF_CONFIG``, ``MASTER_ADDR``/``RANK``/``WORLD_SIZE``, the MPI hostfile, ...), how it wraps
the command, and when a job of that framework has succeeded. It knows no backend: addresses
are placeholders the cluster resolves at launch.
"""

from __future__ import annotations

from lumiflow.controllers.frameworks.base import FrameworkLogic, JobContext
from lumiflow.controllers.frameworks.mpi import MPI
from lumiflow.controllers.frameworks.pytorch import PyTorch
from lumiflow.controllers.frameworks.tensorflow import TensorFlow
from lumiflow.controllers.frameworks.xgboost import XGBoost
from lumiflow.resources.frameworks import Framework

_LOGIC: dict[Framework, FrameworkLogic] = {
    Framework.GENERIC: FrameworkLogic(),
    Framework.TENSORFLOW: TensorFlow(),
    Framework.PYTORCH: PyTorch(),
    Framework.XGBOOST: XGBoost(),
    Framework.MPI: MPI(),
}


def logic_for(framework: Framework) -> FrameworkLogic:
    return _LOGIC[framework]


__all__ = ["FrameworkLogic", "JobContext", "logic_for"]
