"""The one table from modelport errors to gRPC status codes, and the message a client sees.

======================================== ====================== =================================
error                                    status                 message
======================================== ====================== =================================
InvalidInputError, InvalidReferenceError INVALID_ARGUMENT       the error's own (names the field)
AuthenticationError                      UNAUTHENTICATED        the error's own
PermissionDeniedError                    PERMISSION_DENIED      the error's own
NotFoundError                            NOT_FOUND              the error's own
ConflictError                            FAILED_PRECONDITION    the error's own
OverloadedError, RateLimitedError        RESOURCE_EXHAUSTED     the error's own (+ retry-after)
RequestTimeoutError                      DEADLINE_EXCEEDED      the error's own
IntegrityError, UntrustedArtifactError,  FAILED_PRECONDITION    the error's own
UnsupportedModelError, ModelLoadError,
ConfigurationError
StorageError                             UNAVAILABLE            the error's own
PredictionError                          INTERNAL               generic, with the request id
any other exception                      INTERNAL               generic, with the request id
======================================== ====================== =================================

Messages of modelport errors are written for the caller and carry no paths. A model's own
exception (``PredictionError``) and anything unexpected may carry internals, so the client gets a
generic message with the request id while the server log keeps the details.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from modelport import errors

#: gRPC status per error class, most specific first
STATUS: list[tuple[type[errors.ModelportError], grpc.StatusCode]] = [
    (errors.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidReferenceError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.ConflictError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RequestTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.IntegrityError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UntrustedArtifactError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnsupportedModelError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ModelLoadError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ConfigurationError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StorageError, grpc.StatusCode.UNAVAILABLE),
    (errors.PredictionError, grpc.StatusCode.INTERNAL),
]

#: errors whose own message is not sent to the client
_PRIVATE: tuple[type[BaseException], ...] = (errors.PredictionError,)


@dataclass(frozen=True)
class GrpcError:
    """What the client receives for an exception: a code, a message and trailing metadata."""

    code: grpc.StatusCode
    message: str
    metadata: tuple[tuple[str, str], ...] = ()
    #: whether the server should log the exception with its stack trace
    unexpected: bool = False


def grpc_error(exc: BaseException, request_id: str) -> GrpcError:
    if not isinstance(exc, errors.ModelportError):
        return GrpcError(grpc.StatusCode.INTERNAL,
                         f"internal error; the server log has the details (request id "
                         f"{request_id})", (("request-id", request_id),), unexpected=True)
    code = next((c for cls, c in STATUS if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)
    metadata: list[tuple[str, str]] = [("request-id", request_id)]
    if isinstance(exc, errors.InvalidInputError) and exc.field is not None:
        metadata.append(("field", exc.field))
    if isinstance(exc, errors.OverloadedError):
        metadata.append(("retry-after", str(max(1, round(exc.retry_after)))))
    if isinstance(exc, _PRIVATE):
        return GrpcError(code, f"the model failed on this request; the server log has the "
                               f"details (request id {request_id})", tuple(metadata),
                         unexpected=True)
    return GrpcError(code, exc.message, tuple(metadata))


__all__ = ["STATUS", "GrpcError", "grpc_error"]
