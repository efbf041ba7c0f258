"""Artifacts and datasets addressed by URL (``file://``, ``s3://``, ``root://``) through fsspec,
one root per profile, with content digests. See :mod:`lumiflow.artifacts.store`."""

from __future__ import annotations

from lumiflow.artifacts.digests import tree_digest
from lumiflow.artifacts.errors import (
    ArtifactCorrupt,
    ArtifactDenied,
    ArtifactError,
    ArtifactNotFound,
    ArtifactReadOnly,
    ArtifactUnavailable,
    InvalidArtifactURI,
)
from lumiflow.artifacts.store import ArtifactStore, StoredArtifact, default_root

__all__ = [
    "ArtifactCorrupt",
    "ArtifactDenied",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactReadOnly",
    "ArtifactStore",
    "ArtifactUnavailable",
    "InvalidArtifactURI",
    "StoredArtifact",
    "default_root",
    "tree_digest",
]
