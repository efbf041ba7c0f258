"""The artifact store's backends, one per URL scheme, in a typed registry: adding a scheme is
one module and one entry here, never a change to the store."""

from __future__ import annotations

from lumiflow.artifacts.backends.base import Backend, Meaning
from lumiflow.artifacts.backends.local import LocalBackend
from lumiflow.artifacts.backends.s3 import S3Backend
from lumiflow.artifacts.backends.xrootd import XRootDBackend

BACKENDS: dict[str, type[Backend]] = {
    LocalBackend.scheme: LocalBackend,
    S3Backend.scheme: S3Backend,
    XRootDBackend.scheme: XRootDBackend,
}

__all__ = ["BACKENDS", "Backend", "LocalBackend", "Meaning", "S3Backend", "XRootDBackend"]
