"""Every error lumiflow raises derives from :class:`LumiflowError`.

An error carries a stable machine-readable ``code``, a message meant for a person, and,
where user input was at fault, the ``field`` (a dotted path such as
``spec.replicaSpecs.Worker.replicas``). The HTTP edge maps ``http_status`` and turns the
error into ``{"error": code, "message": ..., "field": ...}`` in one place; nothing else in
the code base formats error bodies.

Controllers distinguish :class:`TemporaryError` (retry after ``delay`` seconds) from
:class:`PermanentError` (record it in status and stop), so a reconcile loop neither spins
nor gives up on something transient.
"""

from __future__ import annotations

from typing import Any


class LumiflowError(Exception):
    """Base of all lumiflow errors."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message, "field": self.field}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(LumiflowError):
    code = "bad_request"
    http_status = 400


class ValidationFailed(LumiflowError):
    """User input does not match a kind's schema or rules."""

    code = "invalid"
    http_status = 422


class Unauthorized(LumiflowError):
    code = "unauthorized"
    http_status = 401


class Forbidden(LumiflowError):
    code = "forbidden"
    http_status = 403


class NotFound(LumiflowError):
    code = "not_found"
    http_status = 404


class AlreadyExists(LumiflowError):
    code = "already_exists"
    http_status = 409


class Conflict(LumiflowError):
    """An optimistic-concurrency check failed: the object changed since it was read."""

    code = "conflict"
    http_status = 409


class PayloadTooLarge(LumiflowError):
    code = "too_large"
    http_status = 413


class SchemaOutdated(LumiflowError):
    """The database schema is older than this version of lumiflow needs."""

    code = "schema_outdated"
    http_status = 503


class StoreUnavailable(LumiflowError):
    code = "store_unavailable"
    http_status = 503


class IdentityUnavailable(LumiflowError):
    """The identity provider (an OIDC issuer) cannot be reached or answered nonsense."""

    code = "identity_unavailable"
    http_status = 503


class TemporaryError(LumiflowError):
    """A controller should retry after ``delay`` seconds."""

    code = "temporary"
    http_status = 503

    def __init__(self, message: str, *, delay: float = 1.0, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.delay = delay


class PermanentError(LumiflowError):
    """Retrying cannot help; the controller records the reason in status."""

    code = "permanent"
    http_status = 422


class ClusterError(LumiflowError):
    """A cluster backend could not do what was asked."""

    code = "cluster_error"
    http_status = 502
