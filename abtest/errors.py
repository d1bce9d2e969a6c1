"""HTTP-facing errors: one base carrying the status, one subclass per case.

Entry points (Lambda, embedded server) turn any `AbtestError` into the JSON
body `{"error": code, "message": text, "details": [...]}` with its status.
"""

from __future__ import annotations

from typing import Any


class AbtestError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


class BadRequestError(AbtestError):
    status = 400
    code = "bad_request"

    @classmethod
    def field(cls, field: str, message: str) -> BadRequestError:
        """A 400 that names the offending field, in the message and in details."""
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class NotFoundError(AbtestError):
    status = 404
    code = "not_found"


class UnauthorizedError(AbtestError):
    """A data route of a server started with a token, called without it."""

    status = 401
    code = "unauthorized"


class ForbiddenError(AbtestError):
    """An admin route called by nobody the runtime can name (no IAM principal on AWS)."""

    status = 403
    code = "forbidden"


class MethodNotAllowedError(AbtestError):
    status = 405
    code = "method_not_allowed"


class RequestTimeoutError(AbtestError):
    """The client took too long to send its request body."""

    status = 408
    code = "request_timeout"


class ConflictError(AbtestError):
    status = 409
    code = "conflict"


class PayloadTooLargeError(AbtestError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaTypeError(AbtestError):
    status = 415
    code = "unsupported_media_type"


class ModelError(AbtestError):
    """The model variant failed; the message names the variant."""

    status = 502
    code = "model_error"


class ModelHostError(AbtestError):
    """The model host (SageMaker) refused to route traffic to a winner: a request it will
    refuse again (a variant or endpoint it lacks, a permission missing)."""

    status = 502
    code = "model_host_error"


class ModelHostUnavailableError(AbtestError):
    """The model host could not take a change now (throttled, unreachable, the endpoint
    updating): the same request later can succeed."""

    status = 503
    code = "model_host_unavailable"


class StoreUnavailableError(AbtestError):
    """The assignment/metrics store could not be reached (throttled, down, timed out)."""

    status = 503
    code = "store_unavailable"


class EventLogUnavailableError(AbtestError):
    """An event reached neither the event log nor its dead-letter queue (only the log output).

    A conversion answers it (503: the client retries, and it still counts once); an
    invocation answers anyway, since its predictions exist and an operator can recover
    the event from the function's log.
    """

    status = 503
    code = "event_log_unavailable"


class ConfigError(Exception):
    """Bad deployment or runtime configuration: raised at start, never per request."""
