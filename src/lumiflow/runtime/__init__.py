"""What runs inside a replica. Imports only the standard library (and what the job uses).

``lumiflow.runtime.checkpoint`` finds the job's checkpoint directory, saves atomically and
finds the latest checkpoint; ``report``/``report_many`` push metrics to the platform
(:mod:`lumiflow.runtime.reporting`); also importable as ``lumiflow.report``.
The import-linter contract keeps this package free of platform imports.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ReportError", "replica_info", "report", "report_many"]


def __getattr__(name: str) -> Any:
    # Metric reporting pulls in http.client (and ssl, email): loaded when first used, so that
    # a pipeline step, which rarely reports, starts ~25 ms sooner.
    if name in ("ReportError", "report", "report_many"):
        import importlib

        module = importlib.import_module("lumiflow.runtime.reporting")
        return getattr(module, name)
    raise AttributeError(f"module 'lumiflow.runtime' has no attribute {name!r}")


def replica_info() -> dict[str, str]:
    """The replica's identity as lumiflow's controller set it (empty outside lumiflow)."""
    keys = (
        "LUMIFLOW_JOB_NAME",
        "LUMIFLOW_PROFILE",
        "LUMIFLOW_REPLICA_TYPE",
        "LUMIFLOW_REPLICA_INDEX",
        "LUMIFLOW_REPLICA_NAME",
        "LUMIFLOW_ATTEMPT",
        "LUMIFLOW_URL",
    )
    return {k[len("LUMIFLOW_") :].lower(): os.environ[k] for k in keys if k in os.environ}
