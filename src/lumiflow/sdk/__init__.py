"""The SDK: ``lumiflow.Client`` over the HTTP API (what the CLI and notebooks use)."""

from lumiflow.sdk.client import ApiError, Applied, Client, Kind
from lumiflow.sdk.config import ClientConfig

__all__ = ["ApiError", "Applied", "Client", "ClientConfig", "Kind"]
