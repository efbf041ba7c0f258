"""What runs inside a replica. Imports only the standard library (and what the job uses).

``lumiflow.runtime.checkpoint`` finds the job's checkpoint directory, saves atomically and
finds the latest checkpoint; ``report``/``report_many`` push metrics to the platform
(:mod:`lumiflow.runtime.report`); also importable as ``lumiflow.report``.
The import-linter contract keeps this package free of platform imports.
"""

from __future__ import annotations

import os

from lumiflow.runtime.report import ReportError, report, report_many

__all__ = ["ReportError", "replica_info", "report", "report_many"]


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
