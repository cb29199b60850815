"""The one table from modelport errors to HTTP: a status per error class, a body per protocol.

Each protocol keeps its own error shape, so its clients parse our errors like their own server's:

======== ====================================================
protocol body
======== ====================================================
v2       ``{"error": message}`` (Open Inference Protocol)
v1       ``{"error": message}`` (KServe V1)
mlflow   ``{"error_code": "BAD_REQUEST", "message": message}``
simple   ``{"error": message, "field": name-or-null}``
======== ====================================================

Messages are the errors' own, written for the caller; anything that is not a ``ModelportError``
is logged with its stack trace and answered with a generic 500, never with internals.
"""

from __future__ import annotations

from typing import Any, Literal

from modelport import errors

Protocol = Literal["v2", "v1", "mlflow", "simple"]

#: HTTP status per error class, most specific first; 500 for any other ModelportError
STATUS: list[tuple[type[errors.ModelportError], int]] = [
    (errors.InvalidInputError, 400),
    (errors.InvalidReferenceError, 400),
    (errors.ConfigurationError, 400),
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.RateLimitedError, 429),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.OverloadedError, 503),
    (errors.RequestTimeoutError, 504),
    (errors.UntrustedArtifactError, 500),
    (errors.IntegrityError, 500),
    (errors.ModelLoadError, 500),
    (errors.UnsupportedModelError, 500),
    (errors.PredictionError, 500),
    (errors.StorageError, 503),
]

#: MLflow's error codes by HTTP status (``mlflow.protos.databricks_pb2`` names)
_MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    405: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    413: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "TEMPORARILY_UNAVAILABLE",
}


class PayloadTooLarge(errors.InvalidInputError):
    """The request body is over the configured limit (HTTP 413)."""


class MethodNotAllowed(errors.InvalidInputError):
    """The path exists but not for this method (HTTP 405 with ``Allow``)."""

    def __init__(self, message: str, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


def status_of(exc: BaseException) -> int:
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, MethodNotAllowed):
        return 405
    if isinstance(exc, errors.ModelportError):
        for cls, status in STATUS:
            if isinstance(exc, cls):
                return status
    return 500


def error_body(protocol: Protocol, status: int, message: str,
               field: str | None = None) -> dict[str, Any]:
    if protocol == "mlflow":
        code = _MLFLOW_CODES.get(status, "INTERNAL_ERROR")
        return {"error_code": code, "message": message}
    if protocol == "simple":
        return {"error": message, "field": field}
    return {"error": message}


def headers_of(exc: BaseException) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, errors.AuthenticationError):
        return [(b"www-authenticate", b'Bearer realm="modelport"')]
    if isinstance(exc, MethodNotAllowed):
        return [(b"allow", ", ".join(exc.allow).encode())]
    if isinstance(exc, errors.OverloadedError):
        return [(b"retry-after", str(max(1, round(exc.retry_after))).encode())]
    return []
