"""lumiflow: a self-hostable, centralized machine-learning platform.

``import lumiflow`` stays light, because worker processes import ``lumiflow.runtime``
through it: the SDK's :class:`Client` is loaded only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiflow.common.version import __version__

if TYPE_CHECKING:
    from lumiflow.sdk import Client

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from lumiflow.sdk import Client

        return Client
    raise AttributeError(f"module 'lumiflow' has no attribute {name!r}")
