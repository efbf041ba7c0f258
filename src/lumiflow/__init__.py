"""lumiflow: a self-hostable, centralized machine-learning platform.

``import lumiflow`` stays light, because worker processes import ``lumiflow.runtime``
through it: the SDK's :class:`Client` is loaded only when first used, and
``lumiflow.report``/``lumiflow.report_many`` (metrics from inside a job) come from
:mod:`lumiflow.runtime`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiflow.common.version import __version__

if TYPE_CHECKING:
    from lumiflow.sdk import Client

__all__ = ["Client", "__version__", "report", "report_many"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from lumiflow.sdk import Client

        return Client
    if name in ("report", "report_many"):
        from lumiflow import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'lumiflow' has no attribute {name!r}")
