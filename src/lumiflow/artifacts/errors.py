"""The artifact store's errors: one :class:`ArtifactError` hierarchy under ``LumiflowError``.

Each class also derives from the generic lumiflow error whose HTTP meaning it shares, so that
the API edge maps it without knowing this module (``ArtifactNotFound`` is a ``NotFound``: 404)
and a controller that catches ``TemporaryError`` retries an unreachable backend
(``ArtifactUnavailable``: 503) instead of failing the run. Messages carry the backend's own
words (one line), never a traceback.
"""

from __future__ import annotations

from lumiflow.common.errors import Forbidden, LumiflowError, NotFound, TemporaryError, ValidationFailed


class ArtifactError(LumiflowError):
    """The artifact store or its backend could not do what was asked."""

    code = "artifact_error"
    http_status = 502


class InvalidArtifactURI(ArtifactError, ValidationFailed):
    """A URI or path is malformed, uses an unknown scheme, climbs with ``..``, or lies outside
    the store's root, the caller's profile root and every read-only root. Nothing was done."""

    code = "invalid"
    http_status = 422


class ArtifactNotFound(ArtifactError, NotFound):
    code = "artifact_not_found"
    http_status = 404


class ArtifactCorrupt(ArtifactError):
    """The bytes read do not hash to the digest the caller expected."""

    code = "artifact_corrupt"
    http_status = 502


class ArtifactDenied(ArtifactError, Forbidden):
    """The backend refused the operation (permissions, credentials)."""

    code = "artifact_denied"
    http_status = 403


class ArtifactReadOnly(ArtifactDenied):
    """A write or delete under a read-only root (such as ``/cvmfs``)."""

    code = "artifact_read_only"
    http_status = 403


class ArtifactUnavailable(ArtifactError, TemporaryError):
    """The backend cannot be reached now (connection refused, timed out); worth a retry."""

    code = "artifact_unavailable"
    http_status = 503
